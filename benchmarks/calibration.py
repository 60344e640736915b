"""Calibration and abstention of the bundled models on their validation split (docs/accuracy.md).

Usage:
    .venv/bin/python benchmarks/calibration.py [--models NAME ...] [--out DIR] [--update-cards]

Run it after ``ferkit calibrate NAME DATA --split PublicTest`` has stored each bundled model's
temperature. The validation split is FER2013 PublicTest for the FER2013 models and FER+ Valid
for the FER+ models (ferkit calls both ``PublicTest``). For every bundled model it computes,
from one forward pass over that split:

- ECE (15 bins), NLL and Brier before and after the card's temperature (fitted and measured on
  the same faces: optimistic);
- a 2-fold cross-fit: PublicTest split in two stratified halves (seeded), the card's
  calibration method (temperature, vector or Dirichlet scaling) fitted on one half and
  measured on the other, both ways, metrics pooled over the held-out faces (an honest estimate
  of what scaling buys on unseen faces);
- with ``--compare-methods``, the same cross-fit for every method over 10 seeded splits (mean
  and spread of ECE, NLL and accuracy): how a model's method is chosen (lowest held-out NLL);
- the ECE noise floor: the mean ECE of labels drawn from the calibrated probabilities
  themselves (a perfectly calibrated model with these confidences), over 200 draws: with
  3,589 faces even a perfect model does not score 0;
- the risk-coverage points (accuracy on the most confident 50/80/90/100 %) and the coverage
  and accuracy of ``--min-confidence`` 0.4/0.5/0.6/0.7, with calibrated probabilities.

Writes ``OUT/calibration_bundled.json``, ``OUT/risk_coverage_bundled.png`` and
``OUT/reliability_NAME.png``; ``--update-cards`` also stores the abstention table, the
cross-fit result and the responsible-use fields (:mod:`ferkit.evaluation.modelcard`) in the bundled
cards (weights untouched).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import numpy as np

from ferkit.data.ferplus import FERPLUS_CLASS_NAMES
from ferkit.data.split import stratified_folds
from ferkit.evaluation import align_labels, load_split
from ferkit.evaluation.modelcard import FERPLUS_DATA, describe_map, responsible_use_fields
from ferkit.inference import Predictor
from ferkit.inference.abstention import risk_coverage, threshold_table
from ferkit.inference.calibration import (
    AffineCalibration,
    calibrated_probabilities,
    calibration_metrics,
    calibration_of,
    expected_calibration_error,
    fit_calibration,
    scores_from_probabilities,
    softmax,
)
from ferkit.plots import reliability_figure, risk_coverage_figure, save_figure
from ferkit.pretrained import ALIASES, FOLDER, available_bundled_models
from ferkit.utils.choices import CALIBRATION_METHODS
from ferkit.utils.io import read_json, write_json

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
FER2013_DATA = SHARED / "fer2013-train-publictest.csv.gz"
FERPLUS_DATA_FOLDER = SHARED / "ferplus"
KEYS = ("ece", "nll", "brier")


def summary(probabilities, labels) -> dict:
    metrics = calibration_metrics(probabilities, labels)
    return {key: round(metrics[key], 4) for key in KEYS}


def held_out_probabilities(scores, labels, method: str, seed: int = 0) -> np.ndarray:
    """Fit on one half, apply to the other, both ways: every face calibrated unseen."""
    calibrated = np.zeros_like(scores)
    for fitting, held_out in stratified_folds(labels, 2, seed):
        calibration = fit_calibration(scores[fitting], labels[fitting], method)
        calibrated[held_out] = calibrated_probabilities(scores[held_out], calibration)
    return calibrated


def cross_fit(scores: np.ndarray, labels: np.ndarray, method: str, seed: int = 0) -> dict:
    """Metrics over all held-out faces of one 2-fold cross-fit."""
    calibrated = held_out_probabilities(scores, labels, method, seed)
    accuracy = round(float((calibrated.argmax(1) == labels).mean()), 4)
    return {"method": method, "after": summary(calibrated, labels) | {"accuracy": accuracy}}


def compare_methods(scores: np.ndarray, labels: np.ndarray, seeds: int = 10) -> dict:
    """Every calibration method's held-out ECE, NLL and accuracy over ``seeds`` cross-fits."""
    table = {}
    for method in ("none",) + CALIBRATION_METHODS:
        rows = []
        for seed in range(seeds):
            calibrated = softmax(scores) if method == "none" else (
                held_out_probabilities(scores, labels, method, seed))  # fmt: skip
            metrics = calibration_metrics(calibrated, labels)
            rows.append((metrics["ece"], metrics["nll"], (calibrated.argmax(1) == labels).mean()))
        rows = np.array(rows)
        table[method] = {
            f"{key}_{statistic}": round(float(function(rows[:, column])), 4)
            for column, key in enumerate(("ece", "nll", "accuracy"))
            for statistic, function in (("mean", np.mean), ("std", np.std))
        }
        print(f"  {method:12s}", table[method], flush=True)
    return table


def noise_floor(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE when the labels are drawn from the probabilities (perfect calibration)."""
    rng = np.random.default_rng(seed)
    cumulative = probabilities.cumsum(axis=1)
    values = []
    for _ in range(draws):
        labels = (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1)
        labels = labels.clip(0, probabilities.shape[1] - 1)
        values.append(expected_calibration_error(probabilities, labels))
    return float(np.mean(values))


def measure(name: str, dataset, compare: bool = False) -> tuple[dict, dict]:
    predictor = Predictor.from_run(name, device="cpu", backend="torch")
    labels = align_labels(dataset, predictor.class_names)
    scores = scores_from_probabilities(predictor.predict_proba(dataset.images, calibrated=False))
    calibration = calibration_of(predictor.card)
    method = calibration.method if isinstance(calibration, AffineCalibration) else "temperature"
    before, after = softmax(scores), calibrated_probabilities(scores, calibration)
    coverage = risk_coverage(after, labels)
    result = {
        "calibration": describe_map(predictor.card.get("calibration") or {}),
        "same_split": {"before": summary(before, labels), "after": summary(after, labels)},
        "cross_fit": cross_fit(scores, labels, method) | {"before": summary(before, labels)},
        "accuracy_before": float((before.argmax(1) == labels).mean()),
        "ece_noise_floor": round(noise_floor(after), 4),
        "accuracy": float((after.argmax(1) == labels).mean()),
        "risk_coverage": coverage["points"],
        "risk_coverage_uncalibrated": risk_coverage(before, labels)["points"],
        "min_confidence": threshold_table(after, labels),
        "min_confidence_uncalibrated": threshold_table(before, labels),
    }
    figures = {
        "coverage": coverage,
        "reliability": {
            "before": calibration_metrics(before, labels)["reliability"],
            f"after ({result['calibration']})": calibration_metrics(after, labels)["reliability"],
        },
    }
    if compare:
        result["methods_cross_fit"] = compare_methods(scores, labels)
    return result, figures


def update_card(name: str, result: dict, data: str, split: str, faces: int) -> None:
    path = FOLDER / f"{name}.json"
    card = read_json(path)
    ferplus = card["class_names"] == list(FERPLUS_CLASS_NAMES)
    for key, value in responsible_use_fields(FERPLUS_DATA if ferplus else None).items():
        card.setdefault(key, value)
    cross = result["cross_fit"]
    card["calibration"]["note"] = (
        f"Fitted and measured on the same faces, so the 'after' figures are optimistic. A 2-fold "
        f"cross-fit of the same method on PublicTest halves (fit on one, measure on the other) "
        f"gives ECE "
        f"{cross['before']['ece']:.4f} -> {cross['after']['ece']:.4f}, NLL "
        f"{cross['before']['nll']:.4f} -> {cross['after']['nll']:.4f}; a perfectly calibrated "
        f"model would score ECE {result['ece_noise_floor']:.3f} on {faces:,} faces by chance "
        "(benchmarks/calibration.py)."
    )
    card["abstention"] = {
        "measured_on": f"{split} ({data}), calibrated probabilities",
        "thresholds": result["min_confidence"],
        "risk_coverage": result["risk_coverage"],
    }
    write_json(path, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    canonical = [name for name in available_bundled_models() if name not in ALIASES]
    parser.add_argument("--models", nargs="+", default=canonical, choices=canonical)
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--update-cards", action="store_true")
    parser.add_argument("--compare-methods", action="store_true")
    arguments = parser.parse_args()
    out = Path(arguments.out)
    results, curves, splits = {}, {}, {}
    for name in arguments.models:
        ferplus = read_json(FOLDER / f"{name}.json")["class_names"] == list(FERPLUS_CLASS_NAMES)
        data, split = (FERPLUS_DATA_FOLDER, "FER+ Valid") if ferplus else (
            FER2013_DATA, "FER2013 PublicTest")  # fmt: skip
        if data not in splits:
            splits[data] = load_split(data, "PublicTest")
        dataset = splits[data]
        print(name, flush=True)
        results[name], figures = measure(name, dataset, arguments.compare_methods)
        results[name]["data"] = f"{split} ({len(dataset)} faces)"
        curves[f"{name} ({split})"] = figures["coverage"]
        save_figure(reliability_figure(figures["reliability"], f"{name} on {split}"),
                    out / f"reliability_{name}.png")  # fmt: skip
        print(name, results[name]["same_split"], results[name]["cross_fit"],
              results[name]["ece_noise_floor"], flush=True)  # fmt: skip
        if arguments.update_cards:
            update_card(name, results[name], Path(data).name, split, len(dataset))
    save_figure(
        risk_coverage_figure(curves, "Bundled models on their validation split (calibrated)"),
        out / "risk_coverage_bundled.png",
    )
    results["measured"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "data": "each model's validation split: FER2013 PublicTest or FER+ Valid",
    }
    write_json(out / "calibration_bundled.json", results)
    print(f"wrote {out}/calibration_bundled.json, risk_coverage_bundled.png, reliability_*.png")


if __name__ == "__main__":
    main()
