"""Tests for ferkit.inference.abstention: confidence, margin, `uncertain`, risk-coverage curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.inference import Predictor
from ferkit.inference.abstention import (
    UNCERTAIN,
    check_min_confidence,
    decide,
    risk_coverage,
    threshold_table,
)
from ferkit.inference.calibration import softmax
from ferkit.utils.errors import FerkitError


def test_decide_labels_confidence_margin_and_uncertain():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.2, 0.2, 0.6]])
    decisions = decide(probabilities, ["a", "b", "c"], min_confidence=0.5)
    assert [d.label for d in decisions] == ["a", UNCERTAIN, "c"]
    assert [d.best_guess for d in decisions] == ["a", "a", "c"]
    assert [d.uncertain for d in decisions] == [False, True, False]
    assert [round(d.margin, 6) for d in decisions] == [0.5, 0.05, 0.4]
    assert [d.confidence for d in decisions] == [0.7, 0.4, 0.6]
    # Without a threshold nobody abstains; a face exactly at it is answered.
    assert not any(d.uncertain for d in decide(probabilities, ["a", "b", "c"]))
    assert decide([[0.5, 0.5]], ["a", "b"], 0.5)[0].label == "a"
    for bad in (-0.1, 1.5, "x", float("nan")):
        with pytest.raises(FerkitError, match="min_confidence"):
            check_min_confidence(bad)


def test_risk_coverage_is_monotone_when_confidence_ranks_correctness():
    rng = np.random.default_rng(0)
    # Perfectly calibrated data: labels drawn from the probabilities themselves.
    probabilities = softmax(rng.normal(0, 2, (40000, 7)))
    labels = (rng.random((len(probabilities), 1)) > probabilities.cumsum(1)).sum(1).clip(0, 6)
    result = risk_coverage(probabilities, labels)
    accuracies = [point["accuracy"] for point in result["points"]]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > accuracies[-1]
    assert [point["answered"] for point in result["points"]] == [20000, 32000, 36000, 40000]
    assert result["points"][-1]["accuracy"] == pytest.approx(
        np.mean(probabilities.argmax(1) == labels)
    )
    # When every right answer is more confident than every wrong one, the whole curve is
    # non-increasing, and answering only the right ones is 100 % accurate.
    confidence = np.linspace(0.99, 0.55, 100)  # class 0 is always the guess
    ranked = np.stack([confidence, 1 - confidence], axis=1)
    ranked_labels = np.r_[np.zeros(60, int), np.ones(40, int)]
    curve = risk_coverage(ranked, ranked_labels, coverages=(0.6, 1.0))
    assert np.all(np.diff(curve["curve"]["accuracy"]) <= 1e-12)
    assert curve["points"][0]["accuracy"] == 1.0 and curve["points"][1]["accuracy"] == 0.6


def test_threshold_table_counts_answered_faces():
    probabilities = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7], [0.65, 0.35]])
    rows = threshold_table(probabilities, [0, 1, 0, 0], thresholds=(0.5, 0.6, 0.95))
    assert [row["answered"] for row in rows] == [4, 3, 0]
    assert rows[0]["accuracy"] == 0.5 and rows[1]["accuracy"] == pytest.approx(2 / 3)
    assert rows[2]["accuracy"] is None and rows[1]["coverage"] == 0.75


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    """The session-wide tiny model run (conftest)."""
    return tiny_run


def test_predictor_min_confidence_yields_uncertain(run_dir):
    predictor = Predictor.from_run(run_dir, device="cpu")
    faces = [np.full((48, 48), value, np.uint8) for value in (0, 128, 255)]
    plain = predictor.predict(faces)
    assert all(not p.uncertain and p.label == p.best_guess for p in plain)
    # A barely trained 7-class model is never 99 % sure.
    cautious = predictor.predict(faces, min_confidence=0.99)
    for before, after in zip(plain, cautious):
        assert after.label == UNCERTAIN and after.uncertain
        assert after.best_guess == before.label and after.probabilities == before.probabilities
        assert after.confidence == before.score and 0 <= after.margin <= after.confidence
        assert after.to_dict()["uncertain"] is True
    with pytest.raises(FerkitError, match="between 0 and 1"):
        predictor.predict(faces, min_confidence=2)


def test_cli_predict_min_confidence(run_dir, tmp_path, capsys):
    from ferkit.cli import main

    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / "face.png")
    arguments = ["predict", str(tmp_path / "face.png"), "--model", str(run_dir), "--detector",
                 "none", "--json", "--no-progress", "--backend", "torch"]  # fmt: skip
    csv_path = tmp_path / "faces.csv"
    assert main(arguments + ["--min-confidence", "0.99", "--csv", str(csv_path)]) == 0
    (face,) = json.loads(capsys.readouterr().out)[0]["faces"]
    assert face["emotion"] == UNCERTAIN and face["uncertain"] is True
    assert face["best_guess"] in FER2013_CLASS_NAMES
    assert face["confidence"] == max(face["probabilities"].values())
    header, row = (line.split(",") for line in csv_path.read_text().splitlines())
    columns = dict(zip(header, row))
    assert columns["emotion"] == UNCERTAIN and columns["best_guess"] == face["best_guess"]
    assert float(columns["margin"]) == pytest.approx(face["margin"], abs=1e-6)
    assert main(arguments + ["--min-confidence", "0"]) == 0
    (face,) = json.loads(capsys.readouterr().out)[0]["faces"]
    assert face["emotion"] == face["best_guess"] and face["uncertain"] is False
    assert main(arguments + ["--min-confidence", "7"]) == 2
    assert "min_confidence must be between 0 and 1" in capsys.readouterr().err


def test_evaluate_reports_calibration_and_risk_coverage(run_dir, tmp_path):
    from ferkit.data import save_fer2013_csv
    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.evaluation import evaluate_dataset, format_probability_report

    data = save_fer2013_csv(make_synthetic_dataset(60, seed=2), tmp_path / "faces.csv")
    metrics = evaluate_dataset(data, run_dir, out=tmp_path / "evaluation", device="cpu")
    assert set(metrics["calibration"]) >= {"ece", "nll", "brier", "reliability"}
    assert [point["coverage"] for point in metrics["risk_coverage"]] == [0.5, 0.8, 0.9, 1.0]
    assert metrics["risk_coverage"][-1]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert [row["min_confidence"] for row in metrics["min_confidence"]] == [0.4, 0.5, 0.6, 0.7]
    for name in ("reliability_diagram.png", "risk_coverage.png", "metrics.json"):
        assert (tmp_path / "evaluation" / name).stat().st_size > 0
    assert "ECE" in format_probability_report(metrics)
