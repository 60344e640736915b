"""A quiet first run: ``ferkit predict`` prints its results, one preparing line, nothing else."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import ferkit
from ferkit.data import FER2013_CLASS_NAMES
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.quiet import FFMPEG_LOG_VARIABLE, quiet_third_party

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_quiet_third_party_hides_warnings_and_log_lines_then_restores_them(caplog):
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logging.getLogger("torch.onnx").level
    environment = os.environ.get(FFMPEG_LOG_VARIABLE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_third_party():
            logger.warning("torchvision is not installed. Skipping torchvision::nms")
            warnings.warn("LeafSpec is deprecated", FutureWarning, stacklevel=1)
            inside = os.environ.get(FFMPEG_LOG_VARIABLE)
        assert caught == [] and caplog.records == []
        logger.warning("after the block")
        warnings.warn("after the block", FutureWarning, stacklevel=1)
    assert [record.message for record in caplog.records] == ["after the block"]
    assert [str(warning.message) for warning in caught] == ["after the block"]
    assert logging.getLogger("torch.onnx").level == level
    assert inside == (environment or "-8") and os.environ.get(FFMPEG_LOG_VARIABLE) == environment


def test_quiet_third_party_lets_errors_through():
    with pytest.raises(ValueError, match="boom"), quiet_third_party():
        raise ValueError("boom")


def test_first_predict_prints_results_and_one_preparing_line_only(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 8], dense_units=[16, 8]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "run" / "best", card)
    Image.new("L", (48, 48), 128).save(tmp_path / "face.png")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)  # FFmpeg has a line to say about it
    environment = dict(os.environ, FERKIT_CACHE_DIR=str(tmp_path / "fresh-cache"))
    # The subprocess runs in tmp_path: import this ferkit, whatever PYTHONPATH says relatively.
    source = str(Path(ferkit.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join([source, environment.get("PYTHONPATH", "")])

    def predict(*inputs):
        return subprocess.run(
            [sys.executable, "-m", "ferkit", "predict", *inputs, "--model", str(tmp_path / "run"),
             "--detector", "none", "--backend", "onnx", "--no-progress"],
            capture_output=True, text=True, env=environment, timeout=240, cwd=tmp_path,
        )  # fmt: skip

    first = predict("face.png")
    assert first.returncode == 0, first.stderr
    # The preparing line, then the results' own line naming the detector (issue 13).
    assert first.stderr.splitlines() == [
        f"preparing the model for ONNX Runtime (first use; cached in "
        f"{tmp_path / 'fresh-cache' / 'onnx'})",
        "detector: none",
    ]
    header, row = first.stdout.splitlines()
    assert header.split()[:2] == ["source", "frame"] and row.startswith("face.png")
    assert len(list((tmp_path / "fresh-cache" / "onnx").glob("*.onnx"))) == 1

    second = predict("face.png", "broken.mp4")  # cached: no preparing line; the error is ours
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        "detector: none",
        "error: broken.mp4: not a readable video",
    ]
    assert second.stdout.splitlines() == [header, row]
