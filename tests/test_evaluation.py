"""Tests for ferkit.evaluation: metrics, label alignment, evaluate_dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ferkit.data import FerDataset, save_fer2013_csv
from ferkit.data.synth import make_synthetic_dataset
from ferkit.evaluation import align_labels, classification_metrics, evaluate_dataset
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError


def test_metrics_match_a_hand_count():
    labels = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]
    metrics = classification_metrics(labels, predictions, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["c"]["precision"] == pytest.approx(1.0)
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_metrics_keep_classes_that_never_occur():
    metrics = classification_metrics([0, 0], [0, 0], ["a", "b"])
    assert metrics["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["confusion_matrix"] == [[2, 0], [0, 0]]


def test_align_labels_by_name_and_refuses_strangers():
    dataset = FerDataset(np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 1]), ("Sad", "Happy"))
    assert align_labels(dataset, ["Angry", "Happy", "Sad"]).tolist() == [2, 1, 1]
    with pytest.raises(FerkitError, match="do not match"):
        align_labels(dataset, ["cat", "dog"])


@pytest.fixture()
def tiny_run(tmp_path):
    import torch

    torch.manual_seed(0)
    model = create_model("classic", channels=[4, 8, 4]).eval()
    names = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    save_checkpoint(model, tmp_path / "run" / "best", make_model_card(model, names, {
        "mean": 0.5, "std": 0.25}))  # fmt: skip
    return tmp_path / "run"


def test_evaluate_dataset_writes_metrics_and_plots(tmp_path, tiny_run, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    csv = save_fer2013_csv(make_synthetic_dataset(70, seed=2), tmp_path / "faces.csv")
    metrics = evaluate_dataset(csv, tiny_run, split="PublicTest", out=tmp_path / "eval")
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["count"] == metrics["count"] == 7
    assert written["split"] == "PublicTest"
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    everything = evaluate_dataset(csv, tiny_run)
    assert everything["count"] == 70
    assert (tiny_run / "metrics.json").is_file()  # default output: the run folder


def test_evaluate_dataset_split_errors(tmp_path, tiny_run, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    dataset = make_synthetic_dataset(14)
    no_usage = FerDataset(dataset.images, dataset.labels)
    csv = save_fer2013_csv(no_usage, tmp_path / "plain.csv")
    with pytest.raises(FerkitError, match="needs a Usage column"):
        evaluate_dataset(csv, tiny_run, split="PrivateTest")
