"""Vector and Dirichlet scaling: fitting, the card, and the one probability path (torch, ONNX)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.evaluation.calibrate import format_calibration
from ferkit.inference import Predictor
from ferkit.inference.calibration import (
    AffineCalibration,
    calibrated_probabilities,
    calibration_of,
    calibration_summary,
    combine_probabilities,
    fit_calibration,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import read_json, write_json


@pytest.fixture(scope="module")
def biased():
    """Scores whose true probabilities need a per-class bias: one scalar cannot fix them."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 2.0, (20_000, 5))
    shift = np.array([1.2, -0.8, 0.0, 0.5, -0.9])
    true_probabilities = softmax(logits + shift)
    uniform = rng.random((len(logits), 1))
    labels = (uniform > true_probabilities.cumsum(axis=1)).sum(axis=1).clip(0, 4)
    return np.log(softmax(logits)), labels, true_probabilities


@pytest.mark.parametrize("method", ["vector", "dirichlet"])
def test_affine_maps_recover_a_class_bias_a_temperature_cannot(biased, method):
    scores, labels, true_probabilities = biased
    calibration = fit_calibration(scores, labels, method)
    assert isinstance(calibration, AffineCalibration) and calibration.method == method
    fitted = calibrated_probabilities(scores, calibration)
    temperature = fit_temperature(scores, labels)
    nll_temperature = negative_log_likelihood(softmax(scores, temperature), labels)
    assert negative_log_likelihood(fitted, labels) < nll_temperature - 0.02
    # The fitted map is close to the truth, not just better than the temperature.
    assert np.abs(fitted - true_probabilities).mean() < 0.02
    if method == "vector":
        off_diagonal = np.asarray(calibration.matrix) * (1 - np.eye(5))
        assert not off_diagonal.any()


def test_unknown_method_names_the_choices(biased):
    scores, labels, _ = biased
    with pytest.raises(FerkitError, match="temperature, vector, dirichlet"):
        fit_calibration(scores, labels, "isotonic")


def test_summary_reports_the_map_and_accuracy_and_the_card_reads_it_back(biased):
    scores, labels, _ = biased
    calibration = fit_calibration(scores, labels, "dirichlet")
    summary = calibration_summary(scores, labels, calibration, "synthetic")
    assert summary["map"] == "dirichlet" and len(summary["matrix"]) == 5
    assert "temperature" not in summary
    assert summary["nll_after"] < summary["nll_before"]
    assert 0 <= summary["accuracy_after"] <= 1 and "accuracy_before" in summary
    assert format_calibration(summary).startswith("dirichlet scaling fitted on synthetic")
    assert calibration_of({"calibration": summary}) == calibration
    with pytest.raises(FerkitError, match="must be square"):
        calibration_of({"calibration": {"matrix": [[1.0, 0.0]], "bias": [0.0]}})


def test_combine_probabilities_applies_a_map_to_the_log_probabilities():
    logits = torch.randn(6, 4, dtype=torch.float64)
    calibration = AffineCalibration(
        "dirichlet", tuple(tuple(row) for row in np.eye(4) * 0.7 + 0.05), (0.1, -0.2, 0.0, 0.3)
    )
    combined = combine_probabilities([logits], [calibration]).numpy()
    expected = calibrated_probabilities(torch.log_softmax(logits, 1).numpy(), calibration)
    assert np.abs(combined - expected).max() < 1e-9


@pytest.fixture()
def dirichlet_run(tmp_path):
    torch.manual_seed(0)
    model = create_model("classic", channels=[4, 8, 4]).eval()
    with torch.no_grad():
        model.classifier[-1].weight.mul_(40)  # confident enough to be wrong
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "run" / "best", card)
    return tmp_path / "run"


def store_map(run_dir, calibration: AffineCalibration) -> None:
    card = read_json(run_dir / "best.json")
    card["calibration"] = {
        "map": calibration.method,
        "matrix": [list(row) for row in calibration.matrix],
        "bias": list(calibration.bias),
    }
    write_json(run_dir / "best.json", card)


def some_map(classes: int = 7) -> AffineCalibration:
    rng = np.random.default_rng(3)
    matrix = np.eye(classes) * 0.6 + rng.normal(0, 0.05, (classes, classes))
    return AffineCalibration(
        "dirichlet", tuple(map(tuple, matrix.tolist())), tuple(rng.normal(0, 0.3, classes))
    )


def test_predictor_applies_the_cards_map(dirichlet_run):
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    raw = Predictor.from_run(dirichlet_run, device="cpu").predict_proba(faces)
    calibration = some_map()
    store_map(dirichlet_run, calibration)
    predictor = Predictor.from_run(dirichlet_run, device="cpu")
    calibrated = predictor.predict_proba(faces)
    expected = calibrated_probabilities(np.log(raw.astype(np.float64)), calibration)
    assert np.abs(calibrated - expected).max() < 1e-5
    assert np.abs(calibrated - raw).max() > 1e-3
    assert np.abs(predictor.predict_proba(faces, calibrated=False) - raw).max() < 1e-6


def test_calibrate_cli_with_a_method_writes_the_map(dirichlet_run, tmp_path, capsys):
    from ferkit.cli import main
    from ferkit.data import save_fer2013_csv
    from ferkit.data.synth import make_synthetic_dataset

    dataset = make_synthetic_dataset(200, seed=3)
    dataset.usage = np.array(["Training", "PublicTest"] * 100)
    data = save_fer2013_csv(dataset, tmp_path / "faces.csv")
    code = main(["calibrate", str(dirichlet_run), str(data), "--split", "PublicTest",
                 "--method", "vector", "--device", "cpu"])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 0 and "vector scaling fitted on faces.csv PublicTest" in output
    assert "acc " in output
    calibration = read_json(dirichlet_run / "best.json")["calibration"]
    assert calibration["map"] == "vector" and len(calibration["bias"]) == 7
    assert isinstance(calibration_of(read_json(dirichlet_run / "best.json")), AffineCalibration)
    with pytest.raises(SystemExit) as exited:
        main(["calibrate", str(dirichlet_run), str(data), "--method", "isotonic"])
    assert exited.value.code == 2
    assert "invalid choice: 'isotonic'" in capsys.readouterr().err
