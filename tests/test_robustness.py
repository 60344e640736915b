"""Tests for ferkit.evaluation.robustness (``ferkit evaluate --perturb``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ferkit.cli import main
from ferkit.data import FER2013_CLASS_NAMES, save_fer2013_csv
from ferkit.data.synth import generate_faces, make_synthetic_dataset
from ferkit.evaluation.robustness import (
    PERTURBATIONS,
    format_robustness,
    perturb,
    robustness_report,
)
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.plots import plot_robustness
from ferkit.utils.errors import FerkitError


@pytest.fixture(scope="module")
def faces():
    return generate_faces(28, seed=4)


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_each_perturbation_is_deterministic_and_grows_with_severity(faces, name):
    images = faces[0]
    distortions = []
    for severity in (1, 2, 3):
        degraded = perturb(images, name, severity, seed=3)
        assert degraded.shape == images.shape and degraded.dtype == np.uint8
        assert np.array_equal(degraded, perturb(images, name, severity, seed=3))
        distortions.append(np.abs(degraded.astype(float) - images).mean())
    assert 0 < distortions[0] < distortions[1] < distortions[2]


def test_random_parts_follow_the_seed_and_not_the_batch_order(faces):
    images = faces[0]
    assert not np.array_equal(perturb(images, "noise", 1, seed=0), perturb(images, "noise", 1, 1))
    # Brightness moves each face by the same offset up or down, clipped to 0-255.
    shifted = perturb(images, "brightness", 1, seed=0).astype(int) - images
    unclipped = (images > 30) & (images < 225)
    assert set(np.unique(np.abs(shifted[unclipped]))) == {25}


def test_unknown_perturbation_or_severity_is_a_clear_error(faces):
    with pytest.raises(FerkitError, match="unknown perturbation 'fog'"):
        perturb(faces[0], "fog", 1)
    with pytest.raises(FerkitError, match="severity 4 outside 1-3"):
        perturb(faces[0], "blur", 4)


class BrightnessModel:
    """Class 1 for faces brighter than 128 on average, else class 0 (a transparent model)."""

    class_names = ("dark", "bright")

    def predict_proba(self, images, batch_size=512):
        bright = (images.reshape(len(images), -1).mean(axis=1) > 128).astype(np.float32)
        return np.stack([1 - bright, bright], axis=1)


def test_report_scores_every_condition_against_clean():
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (40, 48, 48)).astype(np.uint8)
    images[:20] //= 2  # 20 dark, 20 bright faces
    labels = (images.reshape(40, -1).mean(axis=1) > 128).astype(int)
    report = robustness_report(BrightnessModel(), images, labels)
    assert report["clean"]["accuracy"] == 1.0 and report["count"] == 40
    assert list(report["perturbations"]) == list(PERTURBATIONS)
    brightness = report["perturbations"]["brightness"]["severities"]
    assert [row["severity"] for row in brightness] == [1, 2, 3]
    assert brightness[2]["accuracy"] < 1.0  # ±75 gray levels flips this model's answers
    assert report["perturbations"]["rotation"]["severities"][0]["accuracy_drop"] == 0.0
    assert len(report["mean_accuracy_drop"]) == 3
    table = format_robustness(report)
    assert "brightness" in table and "100.00 %" in table
    figure = plot_robustness(report)
    assert len(figure.axes[0].lines) == len(PERTURBATIONS) + 1  # one per perturbation + clean
    with pytest.raises(FerkitError, match="unknown perturbation"):
        robustness_report(BrightnessModel(), images, labels, perturbations=["fog"])


def test_evaluate_with_perturb_writes_the_table_and_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 4]).eval()
    save_checkpoint(model, tmp_path / "run" / "best", make_model_card(model, FER2013_CLASS_NAMES, {
        "mean": 0.5, "std": 0.25}))  # fmt: skip
    csv = save_fer2013_csv(make_synthetic_dataset(70, seed=2), tmp_path / "faces.csv")
    code = main(["evaluate", str(csv), "--model", str(tmp_path / "run"), "--split", "PublicTest",
                 "--out", str(tmp_path / "eval"), "--perturb"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "robustness on 7 faces" in printed and "jpeg" in printed
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["robustness"]["clean"]["accuracy"] == pytest.approx(written["accuracy"])
    assert (tmp_path / "eval" / "robustness.png").stat().st_size > 1000
