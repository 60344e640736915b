"""Evaluate a run on its validation split and package it as a bundled model (``--model NAME``).

Usage:
    .venv/bin/python benchmarks/bundle_model.py RUN_DIR --name fer2013 [--data CSV_OR_FOLDER]
        [--command "the command that trained RUN_DIR"]

The validation split is FER2013's PublicTest for a FER2013 run and FER+'s Valid folder (also
``PublicTest`` in ferkit) for a FER+ run; ``--data`` defaults to the shared copy of the data
the run was trained on (its card's class list tells which). Measures accuracy, macro-F1,
per-class recall (and for FER+ the distance to the annotators' votes) for each test-time
augmentation in
``--ttas`` (default none and flip: a bundled model serves real-time uses, and shift costs ten
forward passes per face), keeps the cheapest one unless a costlier one is at least
``--tta-min-gain`` more accurate (default 0.2 points: flip doubles the work of every face, so
it has to buy more than a few faces of a 3,500-face split; selection on PublicTest, the
validation split), and writes ``src/ferkit/pretrained/NAME.safetensors`` + ``NAME.json``
whose card records the data, recipe, command, commit, seed and the measured figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ferkit.data import load_fer2013
from ferkit.data.ferplus import FERPLUS_CLASS_NAMES
from ferkit.evaluation import classification_metrics, vote_metrics
from ferkit.evaluation.modelcard import FERPLUS_DATA, responsible_use_fields
from ferkit.inference import Predictor
from ferkit.models import model_cost
from ferkit.models.checkpoint import resolve_checkpoint
from ferkit.pretrained import BUNDLED_MODELS, FOLDER
from ferkit.utils.io import read_json, write_json

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
FER2013_DATA = SHARED / "fer2013-train-publictest.csv.gz"
FERPLUS_FOLDER = SHARED / "ferplus"


#: Forward passes a face costs under each test-time augmentation (ferkit.models.runtime.tta_views).
TTA_COST = {"none": 1, "flip": 2, "shift": 10}


def choose_tta(results: dict, min_gain: float) -> str:
    """The cheapest TTA, unless a costlier one is at least ``min_gain`` more accurate."""
    chosen = min(results, key=lambda name: TTA_COST[name])
    for name in sorted(results, key=lambda name: TTA_COST[name]):
        if results[name]["accuracy"] >= results[chosen]["accuracy"] + min_gain:
            chosen = name
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder to package")
    parser.add_argument("--name", required=True, choices=sorted(BUNDLED_MODELS))
    parser.add_argument("--data", help="default: the shared FER2013 CSV or FER+ folder")
    parser.add_argument("--command", default="", help="the training command, for the card")
    parser.add_argument(
        "--git-commit", help="commit the run was trained with, if the card lacks it"
    )
    parser.add_argument(
        "--notes", default="", help="where and how it was trained (machine, minutes), for the card"
    )
    parser.add_argument(
        "--ttas",
        nargs="+",
        default=["none", "flip"],
        help="TTAs to choose from (default: none flip; shift costs 10 forward passes a face)",
    )
    parser.add_argument(
        "--tta-min-gain",
        type=float,
        default=0.002,
        help="accuracy (0-1) a costlier TTA must add to be chosen (default 0.002)",
    )
    arguments = parser.parse_args()
    class_names = Predictor.from_run(arguments.run, device="cpu").class_names
    ferplus = tuple(class_names) == FERPLUS_CLASS_NAMES
    data = arguments.data or str(FERPLUS_FOLDER if ferplus else FER2013_DATA)
    dataset = load_fer2013(data)
    public = dataset.subset(dataset.usage == "PublicTest")
    split_name = "FER+ Valid" if ferplus else "PublicTest"
    results = {}
    for tta in arguments.ttas:
        predictor = Predictor.from_run(arguments.run, device="cpu", tta=tta)
        probabilities = predictor.predict_proba(public.images)
        metrics = classification_metrics(
            public.labels, probabilities.argmax(axis=1), predictor.class_names
        )
        if public.votes is not None:
            metrics["votes"] = vote_metrics(public.votes, probabilities)
        results[tta] = metrics
        recall = {name: round(row["recall"], 4) for name, row in metrics["per_class"].items()}
        print(f"{split_name}, TTA {tta:<5}: accuracy {metrics['accuracy']:.2%}  "
              f"macro-F1 {metrics['macro_f1']:.3f}  recall {recall}")  # fmt: skip
    best_tta = choose_tta(results, arguments.tta_min_gain)
    best = results[best_tta]
    stem = resolve_checkpoint(arguments.run)
    card = read_json(stem.with_suffix(".json"))
    card["tta"] = best_tta
    card["bundled_name"] = arguments.name
    card["cost"] = model_cost(Predictor.from_run(arguments.run, device="cpu").model)
    card["evaluation"] = {
        "data": f"{split_name} ({len(public):,} faces, majority votes)"
        if ferplus
        else f"FER2013 PublicTest ({len(public):,} faces), from {Path(data).name}",
        "tta_selected_on": f"{split_name} (the validation split): the cheapest TTA unless a "
        f"costlier one adds at least {arguments.tta_min_gain:.1%} accuracy",
        "accuracy": best["accuracy"],
        "macro_f1": best["macro_f1"],
        "per_class_recall": {name: row["recall"] for name, row in best["per_class"].items()},
        "accuracy_by_tta": {name: metrics["accuracy"] for name, metrics in results.items()},
        "confusion_matrix": best["confusion_matrix"],
    }
    if "votes" in best:
        card["evaluation"]["votes"] = best["votes"]
    if arguments.git_commit:
        card.setdefault("training", {})["git_commit"] = arguments.git_commit
    card["recipe"] = {"command": arguments.command, "config": card["training"].get("config")}
    # What the model is for and not for, and FER2013's known limits (ferkit info shows them).
    card.update(responsible_use_fields(FERPLUS_DATA if ferplus else None))
    if arguments.notes:
        card["recipe"]["notes"] = arguments.notes
    shutil.copyfile(stem.with_suffix(".safetensors"), FOLDER / f"{arguments.name}.safetensors")
    write_json(FOLDER / f"{arguments.name}.json", card)
    size = (FOLDER / f"{arguments.name}.safetensors").stat().st_size / 1e6
    print(f"bundled {arguments.run} as {arguments.name!r} ({size:.1f} MB of weights), TTA "
          f"{best_tta}: {split_name} accuracy {best['accuracy']:.2%}")  # fmt: skip
    print(json.dumps(card["evaluation"]["accuracy_by_tta"]))


if __name__ == "__main__":
    main()
