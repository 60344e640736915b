"""Calibration and abstention of the bundled models on FER2013 PublicTest (docs/accuracy.md).

Usage:
    .venv/bin/python benchmarks/calibration.py [--data CSV] [--out DIR] [--update-cards]

Run it after ``ferkit calibrate NAME DATA --split PublicTest`` has stored each bundled model's
temperature. For every bundled model it computes, from one forward pass over PublicTest:

- ECE (15 bins), NLL and Brier before and after the card's temperature (fitted and measured on
  the same faces: optimistic);
- a 2-fold cross-fit: PublicTest split in two stratified halves (seeded), the temperature
  fitted on one half and measured on the other, both ways, metrics pooled over the held-out
  faces (an honest estimate of what scaling buys on unseen faces);
- the ECE noise floor: the mean ECE of labels drawn from the calibrated probabilities
  themselves (a perfectly calibrated model with these confidences), over 200 draws: with
  3,589 faces even a perfect model does not score 0;
- the risk-coverage points (accuracy on the most confident 50/80/90/100 %) and the coverage
  and accuracy of ``--min-confidence`` 0.4/0.5/0.6/0.7, with calibrated probabilities.

Writes ``OUT/calibration_bundled.json``, ``OUT/risk_coverage_bundled.png`` and
``OUT/reliability_NAME.png``; ``--update-cards`` also stores the abstention table, the
cross-fit result and the responsible-use fields (:mod:`ferkit.modelcard`) in the bundled
cards (weights untouched).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import numpy as np

from ferkit.abstention import risk_coverage, threshold_table
from ferkit.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    scores_from_probabilities,
    softmax,
)
from ferkit.data.split import stratified_folds
from ferkit.evaluation import align_labels, load_split
from ferkit.inference import Predictor
from ferkit.io import read_json, write_json
from ferkit.modelcard import responsible_use_fields
from ferkit.plots import reliability_figure, risk_coverage_figure, save_figure
from ferkit.pretrained import FOLDER, available_bundled_models

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"
KEYS = ("ece", "nll", "brier")


def summary(probabilities, labels) -> dict:
    metrics = calibration_metrics(probabilities, labels)
    return {key: round(metrics[key], 4) for key in KEYS}


def cross_fit(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Fit on one half, measure on the other, both ways; metrics over all held-out faces."""
    calibrated = np.zeros_like(scores)
    temperatures = []
    for fitting, held_out in stratified_folds(labels, 2, seed):
        temperature = fit_temperature(scores[fitting], labels[fitting])
        temperatures.append(round(temperature, 4))
        calibrated[held_out] = softmax(scores[held_out], temperature)
    return {"temperatures": temperatures, "after": summary(calibrated, labels)}


def noise_floor(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE when the labels are drawn from the probabilities (perfect calibration)."""
    rng = np.random.default_rng(seed)
    cumulative = probabilities.cumsum(axis=1)
    values = []
    for _ in range(draws):
        labels = (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1)
        values.append(expected_calibration_error(probabilities, labels.clip(0, 6)))
    return float(np.mean(values))


def measure(name: str, dataset) -> tuple[dict, dict]:
    predictor = Predictor.from_run(name, device="cpu", backend="torch")
    labels = align_labels(dataset, predictor.class_names)
    scores = scores_from_probabilities(predictor.predict_proba(dataset.images, calibrated=False))
    temperature = predictor.temperature
    before, after = softmax(scores), softmax(scores, temperature)
    coverage = risk_coverage(after, labels)
    result = {
        "temperature": temperature,
        "refitted_temperature": round(fit_temperature(scores, labels), 4),
        "same_split": {"before": summary(before, labels), "after": summary(after, labels)},
        "cross_fit": cross_fit(scores, labels) | {"before": summary(before, labels)},
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
            f"after (T = {temperature:.3f})": calibration_metrics(after, labels)["reliability"],
        },
    }
    return result, figures


def update_card(name: str, result: dict, data: str) -> None:
    path = FOLDER / f"{name}.json"
    card = read_json(path)
    for key, value in responsible_use_fields().items():
        card.setdefault(key, value)
    cross = result["cross_fit"]
    card["calibration"]["note"] = (
        f"Fitted and measured on the same faces, so the 'after' figures are optimistic. A 2-fold "
        f"cross-fit on PublicTest halves (fit on one, measure on the other) gives ECE "
        f"{cross['before']['ece']:.4f} -> {cross['after']['ece']:.4f}, NLL "
        f"{cross['before']['nll']:.4f} -> {cross['after']['nll']:.4f}; a perfectly calibrated "
        f"model would score ECE {result['ece_noise_floor']:.3f} on 3,589 faces by chance "
        "(benchmarks/calibration.py)."
    )
    card["abstention"] = {
        "measured_on": f"FER2013 PublicTest ({data}), calibrated probabilities",
        "thresholds": result["min_confidence"],
        "risk_coverage": result["risk_coverage"],
    }
    write_json(path, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--update-cards", action="store_true")
    arguments = parser.parse_args()
    dataset = load_split(arguments.data, "PublicTest")
    out = Path(arguments.out)
    results, curves = {}, {}
    for name in available_bundled_models():
        results[name], figures = measure(name, dataset)
        curves[name] = figures["coverage"]
        save_figure(reliability_figure(figures["reliability"], f"{name} on PublicTest"),
                    out / f"reliability_{name}.png")  # fmt: skip
        print(name, results[name]["same_split"], results[name]["cross_fit"],
              results[name]["ece_noise_floor"], flush=True)  # fmt: skip
        if arguments.update_cards:
            update_card(name, results[name], Path(arguments.data).name)
    save_figure(
        risk_coverage_figure(curves, "Bundled models on FER2013 PublicTest (calibrated)"),
        out / "risk_coverage_bundled.png",
    )
    results["measured"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "data": f"{arguments.data} (PublicTest, {len(dataset)} faces)",
    }
    write_json(out / "calibration_bundled.json", results)
    print(f"wrote {out}/calibration_bundled.json, risk_coverage_bundled.png, reliability_*.png")


if __name__ == "__main__":
    main()
