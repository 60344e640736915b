"""Score models trained on FER2013 and on FER+ on the same faces, under both label sets.

Usage:
    .venv/bin/python benchmarks/compare_label_sets.py --models fer2013 ferplus [small ...]

For each model: accuracy and macro-F1 against the FER+ Valid majority votes on the 7 classes
both label sets share (FER+'s Contempt faces set aside), the distance of its probabilities
from the annotators' vote distributions, and accuracy against FER2013 PublicTest's single
labels (the same photos, FER2013's labels). A model with a class the faces cannot have
(FER+'s Contempt on the 7-class faces) is scored as it would answer a user: an answer outside
the 7 classes counts as wrong ("as used"); "restricted" takes the best of the 7 instead.
This is the evidence for which bundled model ``--model default`` should be.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ferkit.data import load_fer2013
from ferkit.evaluation import (
    align_labels,
    classification_metrics,
    restrict_to_classes,
    vote_metrics,
)
from ferkit.inference import Predictor

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def score(predictor: Predictor, dataset) -> dict:
    """Accuracy as used and restricted to the dataset's classes, plus vote metrics."""
    dataset, set_aside = restrict_to_classes(dataset, predictor.class_names)
    labels = align_labels(dataset, predictor.class_names)
    probabilities = predictor.predict_proba(dataset.images)
    as_used = classification_metrics(labels, probabilities.argmax(axis=1), predictor.class_names)
    names = [name.lower() for name in predictor.class_names]
    present = [names.index(name.lower()) for name in dataset.class_names]
    restricted = np.array(present)[probabilities[:, present].argmax(axis=1)]
    result = {
        "faces": len(dataset),
        "set_aside": set_aside,
        "accuracy_as_used": as_used["accuracy"],
        "macro_f1_as_used": as_used["macro_f1"],
        "accuracy_restricted": float(np.mean(restricted == labels)),
    }
    if dataset.votes is not None:
        kept = probabilities[:, present]
        kept = kept / kept.sum(axis=1, keepdims=True)
        result["votes"] = vote_metrics(dataset.votes, kept)  # columns in the data's order
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="anything --model takes")
    parser.add_argument("--ferplus", default=str(SHARED / "ferplus" / "FER2013Valid"))
    parser.add_argument("--fer2013", default=str(SHARED / "fer2013-train-publictest.csv.gz"))
    arguments = parser.parse_args()
    ferplus = load_fer2013(arguments.ferplus)
    ferplus_seven, contempt = restrict_to_classes(
        ferplus, [name for name in ferplus.class_names if name != "Contempt"]
    )
    fer2013 = load_fer2013(arguments.fer2013)
    public = fer2013.subset(fer2013.usage == "PublicTest")
    print(f"FER+ Valid: {len(ferplus_seven)} faces on 7 classes (set aside: {contempt}); "
          f"FER2013 PublicTest: {len(public)} faces")  # fmt: skip
    header = ("model", "FER+ 7 as used", "restricted", "macro-F1", "KL", "TV", "FER2013 Public")
    print(" | ".join(header))
    for location in arguments.models:
        predictor = Predictor.from_run(location, device="cpu")
        on_ferplus = score(predictor, ferplus_seven)
        on_fer2013 = score(predictor, public)
        votes = on_ferplus["votes"]
        print(f"{location} | {on_ferplus['accuracy_as_used']:.2%} | "
              f"{on_ferplus['accuracy_restricted']:.2%} | {on_ferplus['macro_f1_as_used']:.3f} | "
              f"{votes['kl_divergence']:.3f} | {votes['total_variation']:.3f} | "
              f"{on_fer2013['accuracy_as_used']:.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
