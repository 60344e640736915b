"""Evaluate a FER2013 run on PublicTest and package it as a bundled model (``--model NAME``).

Usage:
    .venv/bin/python benchmarks/bundle_model.py RUN_DIR --name default [--data CSV]
        [--command "the command that trained RUN_DIR"]

Measures PublicTest accuracy, macro-F1 and per-class recall for each test-time augmentation in
``--ttas`` (default none and flip: a bundled model serves real-time uses, and shift costs ten
forward passes per face), keeps the best as the model's default TTA (selection on PublicTest,
the validation split), and writes ``src/ferkit/pretrained/NAME.safetensors`` + ``NAME.json``
whose card records the data, recipe, command, commit, seed and the measured figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ferkit.checkpoint import resolve_checkpoint
from ferkit.data import load_fer2013
from ferkit.evaluation import classification_metrics
from ferkit.inference import Predictor
from ferkit.io import read_json, write_json
from ferkit.modelcard import responsible_use_fields
from ferkit.models import model_cost
from ferkit.pretrained import BUNDLED_MODELS, FOLDER

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder to package")
    parser.add_argument("--name", required=True, choices=sorted(BUNDLED_MODELS))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
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
    arguments = parser.parse_args()
    dataset = load_fer2013(arguments.data)
    public = dataset.subset(dataset.usage == "PublicTest")
    results = {}
    for tta in arguments.ttas:
        predictor = Predictor.from_run(arguments.run, device="cpu", tta=tta)
        predictions = predictor.predict_proba(public.images).argmax(axis=1)
        metrics = classification_metrics(public.labels, predictions, predictor.class_names)
        results[tta] = metrics
        recall = {name: round(row["recall"], 4) for name, row in metrics["per_class"].items()}
        print(f"PublicTest, TTA {tta:<5}: accuracy {metrics['accuracy']:.2%}  "
              f"macro-F1 {metrics['macro_f1']:.3f}  recall {recall}")  # fmt: skip
    best_tta = max(results, key=lambda name: results[name]["accuracy"])
    best = results[best_tta]
    stem = resolve_checkpoint(arguments.run)
    card = read_json(stem.with_suffix(".json"))
    card["tta"] = best_tta
    card["bundled_name"] = arguments.name
    card["cost"] = model_cost(Predictor.from_run(arguments.run, device="cpu").model)
    card["evaluation"] = {
        "data": "FER2013 PublicTest (3,589 faces), from ../shared/data/"
        "fer2013-train-publictest.csv.gz",
        "tta_selected_on": "PublicTest (the validation split)",
        "accuracy": best["accuracy"],
        "macro_f1": best["macro_f1"],
        "per_class_recall": {name: row["recall"] for name, row in best["per_class"].items()},
        "accuracy_by_tta": {name: metrics["accuracy"] for name, metrics in results.items()},
        "confusion_matrix": best["confusion_matrix"],
    }
    if arguments.git_commit:
        card.setdefault("training", {})["git_commit"] = arguments.git_commit
    card["recipe"] = {"command": arguments.command, "config": card["training"].get("config")}
    # What the model is for and not for, and FER2013's known limits (ferkit info shows them).
    card.update(responsible_use_fields())
    if arguments.notes:
        card["recipe"]["notes"] = arguments.notes
    shutil.copyfile(stem.with_suffix(".safetensors"), FOLDER / f"{arguments.name}.safetensors")
    write_json(FOLDER / f"{arguments.name}.json", card)
    size = (FOLDER / f"{arguments.name}.safetensors").stat().st_size / 1e6
    print(f"bundled {arguments.run} as {arguments.name!r} ({size:.1f} MB of weights), TTA "
          f"{best_tta}: PublicTest accuracy {best['accuracy']:.2%}")  # fmt: skip
    print(json.dumps(card["evaluation"]["accuracy_by_tta"]))


if __name__ == "__main__":
    main()
