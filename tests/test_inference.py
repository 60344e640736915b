"""Tests for ferkit.inference: Predictor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.data.preprocessing import normalize_batch, to_face_array
from ferkit.inference import Predictor
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError


@pytest.fixture()
def run_dir(tmp_path):
    import torch

    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 4]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "best", card)
    return tmp_path


def test_predictor_accepts_paths_arrays_and_pil_images(run_dir, tmp_path):
    predictor = Predictor.from_run(run_dir, device="cpu")
    random = np.random.default_rng(0)
    color = random.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    Image.fromarray(color).save(tmp_path / "face.jpg", quality=95)
    from_path = predictor.predict(tmp_path / "face.jpg")
    from_array = predictor.predict(color)
    from_pil = predictor.predict(Image.fromarray(color))
    assert from_path.source == str(tmp_path / "face.jpg") and from_array.source is None
    assert from_array.probabilities == pytest.approx(from_pil.probabilities, abs=1e-6)
    assert set(from_array.probabilities) == set(FER2013_CLASS_NAMES)
    assert sum(from_array.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert from_array.label == max(from_array.probabilities, key=from_array.probabilities.get)
    assert from_array.score == pytest.approx(from_array.probabilities[from_array.label])
    batch = predictor.predict([color, color[:, :, 0]])
    assert isinstance(batch, list) and len(batch) == 2


def test_predictor_uses_the_eval_preprocessing(run_dir):
    """Predict == model(normalize_batch(to_face_array(image))) computed by hand."""
    import torch

    predictor = Predictor.from_run(run_dir, device="cpu")
    image = np.random.default_rng(1).integers(0, 256, (120, 120), dtype=np.uint8)
    expected = torch.softmax(
        predictor.model(normalize_batch(to_face_array(image)[None])), dim=1
    ).detach()
    probabilities = predictor.predict_proba(to_face_array(image)[None])
    np.testing.assert_allclose(probabilities, expected.numpy(), rtol=1e-5, atol=1e-6)
    result = predictor.predict(image)
    np.testing.assert_allclose(
        [result.probabilities[name] for name in FER2013_CLASS_NAMES], probabilities[0], atol=1e-6
    )


def test_predict_proba_of_empty_input(run_dir):
    predictor = Predictor.from_run(run_dir, device="cpu")
    assert predictor.predict_proba(np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FerkitError, match="no best.safetensors"):
        Predictor.from_run(tmp_path)


def test_onnx_runtime_backend_gives_the_same_probabilities(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    faces = np.random.default_rng(3).integers(0, 256, (20, 48, 48), dtype=np.uint8)
    torch_predictor = Predictor.from_run(run_dir, device="cpu")
    onnx_predictor = Predictor.from_run(run_dir, device="cpu", backend="onnx")
    assert torch_predictor.backend == "torch" and onnx_predictor.backend == "onnx"
    np.testing.assert_allclose(
        onnx_predictor.predict_proba(faces), torch_predictor.predict_proba(faces), atol=1e-4
    )
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    # a second predictor reuses the cached export
    again = Predictor.from_run(run_dir, device="cpu", backend="auto")
    assert again.backend == "onnx" and again.engine.session is not None
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx")) == cached
    with pytest.raises(FerkitError, match="unknown backend"):
        Predictor.from_run(run_dir, backend="tensorrt")


def test_bf16_backend_runs_in_bfloat16_and_agrees_with_fp32(tmp_path):
    from ferkit.data.synth import generate_faces

    faces, _ = generate_faces(64, seed=5)
    reference = Predictor.from_run("default", device="cpu", backend="torch")
    fast = Predictor.from_run("default", device="cpu", backend="bf16")
    assert fast.backend == "bf16"
    expected, actual = reference.predict_proba(faces), fast.predict_proba(faces)
    difference = np.abs(actual - expected).max()
    # bfloat16 keeps 8 bits of mantissa: the probabilities move a little, never a lot.
    assert 0 < difference < 0.05
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, atol=1e-5)
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.9


def test_every_engine_runs_the_one_probability_graph(run_dir, tmp_path, monkeypatch):
    """torch, bf16 and ONNX Runtime (through its PyTorch fallback and its export) share the
    ProbabilityGraph built from the model card: one computation, so parity is by construction."""
    import torch

    from ferkit.inference.engines import OnnxEngine, TorchEngine
    from ferkit.inference.graph import ProbabilityGraph

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    faces = np.random.default_rng(4).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    torch_predictor = Predictor.from_run(run_dir, device="cpu", tta="flip")
    assert isinstance(torch_predictor.engine, TorchEngine)
    assert isinstance(torch_predictor.graph, ProbabilityGraph)
    assert torch_predictor.engine.graph is torch_predictor.graph
    with torch.no_grad():
        direct = torch_predictor.graph(torch.from_numpy(faces[:, None].astype(np.float32)))
    batched = torch_predictor.predict_proba(faces, batch_size=4)  # batches change nothing
    np.testing.assert_allclose(batched, direct.numpy(), atol=1e-6)
    onnx_predictor = Predictor.from_run(run_dir, device="cpu", tta="flip", backend="onnx")
    assert isinstance(onnx_predictor.engine, OnnxEngine) and onnx_predictor.engine.tta == ["flip"]
    assert onnx_predictor.engine.fallback.graph is onnx_predictor.graph
    np.testing.assert_allclose(onnx_predictor.predict_proba(faces), batched, atol=1e-5)
    bf16 = Predictor.from_run(run_dir, device="cpu", backend="bf16")
    assert bf16.graph.autocast_dtype == torch.bfloat16 and bf16.backend == "bf16"
    logits = bf16.engine.member_logits(faces)
    assert len(logits) == 1 and logits[0].dtype == torch.float32 and logits[0].shape == (9, 7)


def test_a_prediction_is_one_type_for_crops_and_detected_faces():
    from ferkit.faces.detection import FaceBox
    from ferkit.inference.results import predictions_from

    box = FaceBox(1, 2, 30, 30, 0.9, landmarks=((10, 10), (20, 10), (15, 15), (11, 20), (19, 20)))
    crop, found = predictions_from(
        [[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], ["a", "b", "c"], 0.45,
        sources=["face.png", None], boxes=[None, box],
    )  # fmt: skip
    assert (crop.label, crop.best_guess, crop.source, crop.box) == ("a", "a", "face.png", None)
    assert crop.to_dict()["label"] == "a" and "box" not in crop.to_dict()
    assert found.landmarks == box.landmarks and found.confidence == 0.5
    entry = found.to_dict()
    assert entry["emotion"] == "c" and entry["box"]["x"] == 1 and "track" not in entry
    found.track = 3
    assert next(iter(found.to_dict())) == "track"
