"""Tests for ferkit.inference.export: ONNX export with parity, metadata, and the ONNX predictor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.inference import Predictor
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.models.ensemble import create_ensemble
from ferkit.utils.errors import FerkitError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ferkit.inference.engines import OnnxEngine  # noqa: E402
from ferkit.inference.export import export_onnx  # noqa: E402


def make_run(folder, seed=0, arch="seed", tta="none", **arguments):
    torch.manual_seed(seed)
    model = create_model(arch, **arguments).eval()
    # Give batch norm non-trivial statistics so the export is tested on a realistic model.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25}, tta=tta)
    save_checkpoint(model, folder / "best", card)
    return folder


@pytest.mark.parametrize(
    "arch, arguments, tta",
    [
        ("classic", {"channels": [8, 16, 8]}, "none"),
        ("resnet", {"widths": [8, 16], "depths": [1, 1], "stem_width": 8}, "flip"),
        ("vgg", {"widths": [8, 16], "depths": [1, 1]}, "shift"),
    ],
)
def test_export_matches_pytorch_for_any_batch_size(tmp_path, arch, arguments, tta):
    run = make_run(tmp_path / "run", arch=arch, tta=tta, **arguments)
    result = export_onnx(run, tmp_path / "model.onnx")
    assert result["max_abs_difference"] <= 1e-4
    faces = np.random.default_rng(1).integers(0, 256, (37, 48, 48), dtype=np.uint8)
    expected = Predictor.from_run(run, device="cpu").predict_proba(faces)
    onnx_predictor = OnnxEngine(tmp_path / "model.onnx")
    for batch_size in (1, 37):  # dynamic batch axis
        np.testing.assert_allclose(
            onnx_predictor.predict_proba(faces, batch_size=batch_size), expected, atol=1e-4
        )
    assert onnx_predictor.class_names == FER2013_CLASS_NAMES
    assert onnx_predictor.card["architecture"] == arch


def test_export_metadata_describes_the_model(tmp_path):
    run = make_run(tmp_path / "run", channels=[4, 8, 4])
    export_onnx(run, tmp_path / "model.onnx", opset=18)
    model = onnx.load(tmp_path / "model.onnx")
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata["class_names"])[3] == "Happy"
    assert metadata["opset"] == "18"
    assert "0-255" in metadata["input"] and "inside the graph" in metadata["normalization"]
    assert any(
        entry.version == 18 for entry in model.opset_import if entry.domain in ("", "ai.onnx")
    )
    batch_dimension = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dimension.dim_param  # symbolic: dynamic batch


def test_export_of_an_ensemble(tmp_path):
    runs = [make_run(tmp_path / f"r{seed}", seed, channels=[4, 8, 4]) for seed in (1, 2)]
    create_ensemble(runs, tmp_path / "ensemble")
    result = export_onnx(tmp_path / "ensemble", tmp_path / "ensemble.onnx")
    assert result["max_abs_difference"] <= 1e-4


def test_failed_parity_writes_nothing(tmp_path):
    run = make_run(tmp_path / "run", channels=[4, 8, 4])
    with pytest.raises(FerkitError, match="parity check failed"):
        export_onnx(run, tmp_path / "model.onnx", tolerance=-1.0)
    assert not (tmp_path / "model.onnx").exists()


def test_export_cli(tmp_path):
    run = make_run(tmp_path / "run", channels=[4, 8, 4])
    result = subprocess.run(
        [sys.executable, "-m", "ferkit", "export", str(run), "--format", "onnx",
         "--out", str(tmp_path / "m.onnx")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "parity: max |PyTorch - ONNX Runtime|" in result.stdout
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    missing = subprocess.run(
        [sys.executable, "-m", "ferkit", "export", str(tmp_path / "nothing"), "--out", "x.onnx"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


# --- INT8 quantization -------------------------------------------------------------------


def pattern_faces(count: int, seed: int):
    """Faces whose class is where a bright square sits: learnt in seconds, with clear margins."""
    random = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = random.integers(40, 120, (count, 48, 48)).astype(np.uint8)
    for image, label in zip(images, labels):
        row, column = divmod(int(label), 3)
        image[4 + 15 * row : 16 + 15 * row, 4 + 15 * column : 16 + 15 * column] = 230
    return images, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small seed model trained for about a second, its training faces and a FER2013 CSV."""
    from ferkit.data import save_fer2013_csv
    from ferkit.data.dataset import FerDataset

    folder = tmp_path_factory.mktemp("int8")
    images, labels = pattern_faces(490, seed=5)
    usage = np.where(np.arange(len(images)) < 350, "Training", "PublicTest")
    save_fer2013_csv(
        FerDataset(images=images, labels=labels, class_names=FER2013_CLASS_NAMES, usage=usage),
        folder / "faces.csv",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest, on a busy machine too
    try:
        torch.manual_seed(0)
        model = create_model("seed", channels=[4, 8, 8], dense_units=[16, 8])
        inputs = (torch.from_numpy(images[:350]).float()[:, None] / 255.0 - 0.5) / 0.25
        targets = torch.from_numpy(labels[:350]).long()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(10):
            for batch in torch.randperm(len(inputs)).split(32):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, folder / "run" / "best", card)
    return folder, images[:350], images[350:]


def test_int8_export_records_int8_and_agrees_with_pytorch(trained, tmp_path):
    folder, training, held_out = trained
    result = export_onnx(
        folder / "run", tmp_path / "m.onnx", quantize="int8",
        calibration=training[:128], check_faces=held_out,
    )  # fmt: skip
    assert result["quantization"] == "int8" and result["check_faces"] == len(held_out)
    assert result["agreement"] >= 0.98 and result["calibration_faces"] == 128
    assert 0 < result["max_abs_difference"] < 0.5
    model = onnx.load(tmp_path / "m.onnx")
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert metadata["quantization"] == "int8" and metadata["opset"] == "18"
    assert json.loads(metadata["class_names"]) == list(FER2013_CLASS_NAMES)
    assert json.loads(metadata["model_card"])["architecture"] == "classic"
    assert json.loads(metadata["quantization_settings"])["calibration_faces"] == 128
    assert "inside the graph" in metadata["normalization"]
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert not list(tmp_path.glob(".m.onnx.*"))  # no temporary file left


def test_predictor_runs_an_int8_file(trained, tmp_path):
    folder, training, faces = trained
    export_onnx(folder / "run", tmp_path / "m.onnx", quantize="int8", calibration=training[:96])
    predictor = Predictor.from_run(tmp_path / "m.onnx", device="cpu")
    assert predictor.quantization == "int8" and predictor.backend == "onnx"
    assert predictor.model is None and predictor.input_size == 48
    probabilities = predictor.predict_proba(faces, batch_size=50)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    fp32 = Predictor.from_run(folder / "run", device="cpu").predict_proba(faces)
    assert (probabilities.argmax(axis=1) == fp32.argmax(axis=1)).mean() >= 0.95
    prediction = predictor.predict(np.zeros((60, 50, 3), np.uint8))  # any size, colour
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert Predictor.from_run(tmp_path / "m.onnx", backend="auto").quantization == "int8"
    with pytest.raises(FerkitError, match="bf16 needs a PyTorch model"):
        Predictor.from_run(tmp_path / "m.onnx", backend="bf16")
    with pytest.raises(FerkitError, match="inside the exported graph"):
        Predictor.from_run(tmp_path / "m.onnx", tta="flip")


def test_int8_export_rejects_bad_calibration(trained, tmp_path):
    folder, training, _ = trained
    out = tmp_path / "m.onnx"
    with pytest.raises(FerkitError, match=r"int8 needs --calibration DATA \(calibration=\)"):
        export_onnx(folder / "run", out, quantize="int8")
    with pytest.raises(FerkitError, match=r"--calibration \(calibration=\) is for --quantize int8"):
        export_onnx(folder / "run", out, calibration=training[:8])
    with pytest.raises(FerkitError, match=r"expected grayscale faces as an array \(N, H, W\)"):
        export_onnx(folder / "run", out, quantize="int8", calibration=np.zeros(48 * 48))
    with pytest.raises(FerkitError, match="N >= 1"):
        export_onnx(folder / "run", out, quantize="int8", calibration=np.zeros((0, 48, 48)))
    with pytest.raises(FerkitError, match="unknown quantization 'int4'"):
        export_onnx(folder / "run", out, quantize="int4", calibration=training[:8])
    with pytest.raises(FerkitError, match="agreement check failed.*nothing written"):
        export_onnx(
            folder / "run", out, quantize="int8", calibration=training[:32],
            min_agreement=1.01,
        )  # fmt: skip
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_export_cli_and_evaluate(trained, tmp_path, capsys):
    from ferkit.cli import main

    folder, _, _ = trained
    arguments = ["export", str(folder / "run"), "--format", "onnx", "--quantize", "int8",
                 "--out", str(tmp_path / "q.onnx")]  # fmt: skip
    assert main(arguments) == 2
    assert "--quantize int8 needs --calibration DATA" in capsys.readouterr().err
    assert main([*arguments, "--calibration", str(tmp_path / "missing.csv")]) == 2
    assert "no such calibration file" in capsys.readouterr().err
    assert main([*arguments, "--calibration", str(folder / "faces.csv"),
                 "--calibration-size", "0"]) == 2  # fmt: skip
    assert "--calibration-size must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()
    result = subprocess.run(
        [sys.executable, "-m", "ferkit", *arguments, "--calibration", str(folder / "faces.csv"),
         "--calibration-size", "64"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "64 calibration faces" in result.stdout and "(Training rows)" in result.stdout
    assert "int8 agreement: top-1 equal to PyTorch fp32" in result.stdout
    assert (tmp_path / "q.onnx").is_file()
    assert main(["evaluate", str(folder / "faces.csv"), "--model", str(tmp_path / "q.onnx"),
                 "--split", "PublicTest", "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["quantization"] == "int8" and metrics["backend"] == "onnx"
    assert metrics["accuracy"] > 0.9
