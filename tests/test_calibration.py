"""Tests for ferkit.inference.calibration: temperature fitting, ECE/NLL/Brier, one
probability path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.evaluation.calibrate import calibrate_model
from ferkit.inference import Predictor
from ferkit.inference.calibration import (
    brier_score,
    calibration_metrics,
    combine_probabilities,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import read_json, write_json


def sample_labels(probabilities: np.ndarray, seed: int = 0) -> np.ndarray:
    """Labels drawn from each row's probabilities: such data is perfectly calibrated."""
    uniform = np.random.default_rng(seed).random((len(probabilities), 1))
    return (uniform > probabilities.cumsum(axis=1)).sum(axis=1).clip(0, probabilities.shape[1] - 1)


@pytest.fixture(scope="module")
def synthetic():
    logits = np.random.default_rng(1).normal(0.0, 2.5, (100_000, 7))
    return logits, sample_labels(softmax(logits))


@pytest.mark.parametrize("temperature", [0.5, 2.0, 3.0])
def test_fitting_recovers_a_known_temperature(synthetic, temperature):
    logits, labels = synthetic
    # Logits a model would give if it were mis-calibrated by exactly `temperature`.
    fitted = fit_temperature(logits * temperature, labels)
    assert fitted == pytest.approx(temperature, rel=0.05)


def test_ece_of_perfectly_calibrated_data_is_near_zero(synthetic):
    logits, labels = synthetic
    assert expected_calibration_error(softmax(logits), labels) < 0.01
    # Over-confident probabilities of the same faces are far off.
    assert expected_calibration_error(softmax(logits * 3), labels) > 0.1
    # Scaling fixes them: ECE, NLL and Brier all drop back.
    temperature = fit_temperature(logits * 3, labels)
    before, after = softmax(logits * 3), softmax(logits * 3, temperature)
    assert expected_calibration_error(after, labels) < 0.01
    assert negative_log_likelihood(after, labels) < negative_log_likelihood(before, labels)
    assert brier_score(after, labels) < brier_score(before, labels)


def test_metric_values_by_hand():
    probabilities = np.array([[0.8, 0.2], [0.6, 0.4], [1.0, 0.0]])
    labels = np.array([0, 1, 0])
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(
        -(np.log(0.8) + np.log(0.4) + np.log(1.0)) / 3
    )
    assert brier_score(probabilities, labels) == pytest.approx((0.08 + 0.72 + 0.0) / 3)
    rows = reliability_bins(probabilities, labels, bins=5)
    # 0.6 lies in (0.4, 0.6], 0.8 in (0.6, 0.8], 1.0 in the last bin.
    assert [row["count"] for row in rows] == [0, 0, 1, 1, 1]
    assert rows[2]["accuracy"] == 0.0 and rows[4]["confidence"] == 1.0
    ece = expected_calibration_error(probabilities, labels, bins=5)
    assert ece == pytest.approx((0.6 + 0.2 + 0.0) / 3)
    assert calibration_metrics(probabilities, labels)["bins"] == 15
    with pytest.raises(FerkitError, match="labels must lie"):
        brier_score(probabilities, [0, 1, 2])


def test_combine_probabilities_single_and_ensemble():
    logits = torch.randn(5, 7)
    single = combine_probabilities([logits], [1.7])
    assert torch.allclose(single, torch.softmax(logits / 1.7, dim=1), atol=1e-6)
    other = torch.randn(5, 7)
    average = (torch.softmax(logits, 1) + torch.softmax(other / 2, 1)) / 2
    ensemble = combine_probabilities([logits, other], [1.0, 2.0], temperature=1.5)
    assert torch.allclose(ensemble, torch.softmax(torch.log(average) / 1.5, dim=1), atol=1e-6)
    assert torch.equal(ensemble.argmax(1), average.argmax(1))


@pytest.fixture()
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 4]).eval()
    # A random model's logits are tiny; scaling them makes it confident enough to be wrong.
    with torch.no_grad():
        model.classifier[-1].weight.mul_(40)
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "run" / "best", card)
    return tmp_path / "run"


def set_temperature(run_dir, temperature):
    card = read_json(run_dir / "best.json")
    card["calibration"] = {"temperature": temperature}
    write_json(run_dir / "best.json", card)


def test_predictor_applies_the_card_temperature(run_dir):
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    raw = Predictor.from_run(run_dir, device="cpu").predict_proba(faces)
    set_temperature(run_dir, 2.5)
    predictor = Predictor.from_run(run_dir, device="cpu")
    assert predictor.temperature == 2.5
    calibrated = predictor.predict_proba(faces)
    expected = softmax(np.log(raw.astype(np.float64)), 2.5)
    assert np.abs(calibrated - expected).max() < 1e-5
    assert np.abs(predictor.predict_proba(faces, calibrated=False) - raw).max() < 1e-6
    assert (calibrated.argmax(1) == raw.argmax(1)).all()
    assert calibrated.max(1).mean() < raw.max(1).mean()  # T > 1 softens


@pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx", "onnxscript")),
    reason="needs the onnx extras",
)
@pytest.mark.parametrize("entry", [
    {"temperature": 3.0},
    {"map": "dirichlet", "bias": [0.3, -0.2, 0.0, 0.1, 0.0, -0.4, 0.2],
     "matrix": (np.eye(7) * 0.6 + np.full((7, 7), 0.03)).tolist()},
])  # fmt: skip
def test_onnx_export_carries_the_calibration_and_passes_parity(
    run_dir, tmp_path, monkeypatch, entry
):
    from ferkit.inference.calibration import calibration_of
    from ferkit.inference.export import export_onnx

    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))  # the ONNX backend's cache
    card = read_json(run_dir / "best.json")
    write_json(run_dir / "best.json", dict(card, calibration=entry))
    result = export_onnx(run_dir, tmp_path / "model.onnx")
    assert result["max_abs_difference"] <= 1e-4
    faces = np.random.default_rng(2).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    torch_predictor = Predictor.from_run(run_dir, device="cpu")
    onnx_predictor = Predictor.from_run(tmp_path / "model.onnx")
    assert calibration_of(onnx_predictor.card) == calibration_of({"calibration": entry})
    calibrated = onnx_predictor.predict_proba(faces)
    assert np.abs(calibrated - torch_predictor.predict_proba(faces)).max() < 1e-4
    raw = torch_predictor.predict_proba(faces, calibrated=False)
    assert np.abs(calibrated - raw).max() > 1e-3  # the calibration really is in the graph
    with pytest.raises(FerkitError, match="PyTorch model it was exported from"):
        onnx_predictor.predict_proba(faces, calibrated=False)
    # A PyTorch model switched to ONNX Runtime: calibrated from the graph, raw from PyTorch.
    switched = Predictor.from_run(run_dir, device="cpu", backend="onnx")
    assert switched.backend == "onnx"
    assert np.abs(switched.predict_proba(faces) - calibrated).max() < 1e-4
    assert np.abs(switched.predict_proba(faces, calibrated=False) - raw).max() < 1e-6


def test_calibrate_model_writes_the_card_and_refuses_onnx(run_dir, tmp_path):
    from ferkit.data import save_fer2013_csv
    from ferkit.data.synth import make_synthetic_dataset

    dataset = make_synthetic_dataset(200, seed=3)
    dataset.usage = np.array(["Training", "PublicTest"] * 100)
    data = save_fer2013_csv(dataset, tmp_path / "faces.csv")
    result = calibrate_model(run_dir, data, split="PublicTest", out=tmp_path / "report")
    card = read_json(run_dir / "best.json")
    assert card["calibration"]["temperature"] == pytest.approx(result["temperature"])
    assert card["calibration"]["faces"] == 100
    assert "PublicTest" in card["calibration"]["fitted_on"]
    # NLL is what the temperature minimises, so it cannot get worse on the fitting faces.
    assert result["nll_after"] <= result["nll_before"] + 1e-9
    assert (tmp_path / "report" / "reliability_diagram.png").stat().st_size > 0
    assert len(read_json(tmp_path / "report" / "calibration.json")["reliability_after"]) == 15
    assert Predictor.from_run(run_dir, device="cpu").temperature == pytest.approx(
        result["temperature"]
    )
    with pytest.raises(FerkitError, match="inside the graph"):
        calibrate_model(tmp_path / "model.onnx", data)
    with pytest.raises(FerkitError, match="no rows with Usage"):
        calibrate_model(run_dir, data, split="PrivateTest")


def test_calibrate_an_ensemble_writes_ensemble_json(run_dir, tmp_path):
    from ferkit.data import save_fer2013_csv
    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.models.ensemble import create_ensemble

    torch.manual_seed(1)
    other = create_model("seed", channels=[4, 4, 4]).eval()
    card = make_model_card(other, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(other, tmp_path / "other" / "best", card)
    create_ensemble([run_dir, tmp_path / "other"], tmp_path / "ensemble")
    data = save_fer2013_csv(make_synthetic_dataset(60, seed=4), tmp_path / "faces.csv")
    result = calibrate_model(tmp_path / "ensemble", data)
    assert result["card_path"].endswith("ensemble.json")
    ensemble_card = read_json(tmp_path / "ensemble" / "ensemble.json")
    assert ensemble_card["calibration"]["temperature"] == pytest.approx(result["temperature"])
    assert "calibration" not in read_json(tmp_path / "ensemble" / "members" / "member_1.json")
    predictor = Predictor.from_run(tmp_path / "ensemble", device="cpu")
    assert predictor.temperatures()[1] == pytest.approx(result["temperature"])


def test_fit_calibrates_on_the_validation_split(tmp_path):
    from ferkit.data import split_dataset
    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.training import TrainConfig, fit

    train_set, val_set = split_dataset(make_synthetic_dataset(140, seed=5))
    config = TrainConfig(out=str(tmp_path / "run"), epochs=[1], progress=False,
                         model_args={"channels": [4, 4, 4]}, device="cpu")  # fmt: skip
    result = fit(config, train_set, val_set, log=lambda line: None)
    calibration = read_json(tmp_path / "run" / "best.json")["calibration"]
    assert calibration == result.card["calibration"]
    assert calibration["faces"] == len(val_set) and calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    report = read_json(tmp_path / "run" / "calibration.json")
    assert report["ece_after"] == calibration["ece_after"]
    assert (tmp_path / "run" / "reliability_diagram.png").stat().st_size > 0
