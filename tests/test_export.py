"""Tests for ferkit.export: ONNX export with parity, metadata, and the ONNX predictor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ferkit.checkpoint import make_model_card, save_checkpoint
from ferkit.data import FER2013_CLASS_NAMES
from ferkit.ensemble import create_ensemble
from ferkit.errors import FerkitError
from ferkit.inference import Predictor
from ferkit.models import create_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ferkit.export import OnnxPredictor, export_onnx  # noqa: E402


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
        ("seed", {"channels": [8, 16, 8]}, "none"),
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
    onnx_predictor = OnnxPredictor(tmp_path / "model.onnx")
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
