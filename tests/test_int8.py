"""INT8 where it is safe: CPU detection, ``--backend auto``'s choice, the cached INT8 variant."""

from __future__ import annotations

import pytest
import torch

import ferkit.inference.int8 as int8
from ferkit.data import FER2013_CLASS_NAMES
from ferkit.inference import Predictor
from ferkit.inference.engines import _auto_backend
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CPU = torch.device("cpu")


def test_cpu_flags_come_from_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n\nprocessor\t: 1\n")
    assert int8.cpu_flags(cpuinfo) == {"fpu", "sse", "avx2", "avx512_vnni"}
    assert int8.cpu_runs_int8_fast(int8.cpu_flags(cpuinfo))
    assert int8.cpu_flags(tmp_path / "missing") == set()
    assert not int8.cpu_runs_int8_fast({"avx2", "fma", "avx512f"})  # AVX-512 without VNNI
    assert int8.int8_instructions({"amx_int8", "avx_vnni"}) == ["avx_vnni", "amx_int8"]


@pytest.mark.parametrize(
    ("flags", "model", "expected"),
    [
        ({"avx2", "avx512_vnni"}, "small", "int8"),
        ({"avx2", "amx_int8"}, "default", "int8"),
        ({"avx2"}, "small", "onnx"),  # AVX2 only: fp32 stays
        ({"avx2", "avx512_vnni"}, "runs/mine", "onnx"),  # not a bundled model: fp32 stays
    ],
)
def test_auto_picks_int8_for_bundled_models_on_vnni_or_amx_only(
    monkeypatch, flags, model, expected
):
    monkeypatch.setattr(int8, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": flags)
    backend, reason = _auto_backend(model, CPU)
    assert backend == expected and reason.startswith("auto: ONNX Runtime")
    assert ("ONNX Runtime INT8" in reason) == (expected == "int8")
    assert _auto_backend(model, torch.device("meta"))[0] == "torch"


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 8], dense_units=[16, 8]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "run" / "best", card)
    return tmp_path / "run"


def test_int8_variant_is_built_once_and_reported(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(int8, "CALIBRATION_FACES", 48)
    monkeypatch.setattr(int8, "CHECK_FACES", 48)
    predictor = Predictor.from_run(tiny_run, device="cpu", backend="int8")
    assert predictor.backend == "int8" and predictor.quantization == "int8"
    assert capsys.readouterr().err.count("preparing the model for ONNX Runtime INT8") == 1
    (variant,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    again = Predictor.from_run(tiny_run, device="cpu", backend="int8")
    assert capsys.readouterr().err == "" and again.engine.quantization == "int8"
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx")) == [variant]
    info = int8.backend_info(again)
    assert info["backend"] == "int8" and info["reason"] == "--backend int8"
    assert "backend: int8 (int8)" in int8.describe_backend(again)


def test_a_refused_variant_is_remembered_and_auto_falls_back_to_fp32(
    tiny_run, tmp_path, monkeypatch, capsys
):
    calls = []

    def refuse(graph, path, name):
        calls.append(path)
        raise FerkitError("model: INT8 agreement check failed: 90.00% < 98%; nothing written")

    monkeypatch.setattr(int8, "build_int8_variant", refuse)
    with pytest.raises(FerkitError, match="agreement check failed"):
        Predictor.from_run(tiny_run, device="cpu", backend="int8")
    with pytest.raises(FerkitError, match="agreement check failed"):  # remembered: no rebuild
        Predictor.from_run(tiny_run, device="cpu", backend="int8")
    assert len(calls) == 1
    capsys.readouterr()
    monkeypatch.setattr(
        "ferkit.inference.engines._auto_backend",
        lambda location, device: ("int8", "auto: INT8 (test)"),
    )
    predictor = Predictor.from_run(tiny_run, device="cpu", backend="auto")
    assert predictor.backend == "onnx" and predictor.quantization is None
    assert predictor.backend_reason.startswith("auto: ONNX Runtime fp32 (the INT8 variant was")
    assert len(calls) == 1
