"""Tests for ferkit.evaluation.explain: the standard sanity checks of saliency maps, the CLI
and the API.

A small VGG is trained in the module fixture on synthetic faces, whose class cue (brows, eyes,
mouth, Disgust's nose wrinkles) is known pixel by pixel (ferkit.data.synth_cues).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr

from ferkit.cli import main
from ferkit.data import FER2013_CLASS_NAMES
from ferkit.data.preprocessing import normalize_batch
from ferkit.data.synth import generate_faces
from ferkit.data.synth_cues import expression_cue_masks
from ferkit.evaluation.explain import explain_faces, gradcam, last_convolution, occlusion_map
from ferkit.inference import Predictor
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.utils.errors import FerkitError

TEST_SEED = 11  # faces the model never saw in training
#: The cue region: the cue's pixels dilated by 4 px, one cell of the 12x12 Grad-CAM grid (the
#: bilinear upsampling of a coarse map cannot be sharper than that).
CUE_TOLERANCE = 4
ARCHITECTURE = {"widths": [16, 32, 32], "depths": [1, 1, 1], "dropout": 0.0}


def _predictor(model) -> Predictor:
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    card["architecture"], card["model_args"] = "vgg", ARCHITECTURE
    return Predictor(model.eval(), card)


@pytest.fixture(scope="module")
def trained():
    """A small VGG trained for six epochs on 1,050 synthetic faces (~93 % test accuracy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast and deterministic
    try:
        torch.manual_seed(0)
        faces, labels = generate_faces(1050, seed=7)
        images, targets = normalize_batch(faces), torch.as_tensor(labels)
        model = create_model("vgg", **ARCHITECTURE)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(0)
        for _ in range(6):
            model.train()
            for batch in torch.randperm(len(images), generator=generator).split(32):
                loss = torch.nn.functional.cross_entropy(model(images[batch]), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return _predictor(model)


@pytest.fixture(scope="module")
def test_faces():
    faces, labels = generate_faces(70, seed=TEST_SEED)
    masks, mask_labels = expression_cue_masks(70, seed=TEST_SEED)
    assert (labels == mask_labels).all()
    region = np.stack([binary_dilation(mask > 0, iterations=CUE_TOLERANCE) for mask in masks])
    return faces, labels, region


def _cue_mass(maps, region) -> np.ndarray:
    positive = np.clip(maps, 0, None)
    return (positive * region).sum(axis=(1, 2)) / positive.sum(axis=(1, 2))


def test_the_fixture_model_learned_the_task(trained, test_faces):
    faces, labels, _ = test_faces
    accuracy = (trained.predict_proba(faces).argmax(axis=1) == labels).mean()
    assert accuracy >= 0.8


def test_gradcam_mass_falls_on_the_expression_cue(trained, test_faces):
    faces, labels, region = test_faces
    mass = _cue_mass(gradcam(trained, faces, labels), region)
    # Measured: 0.66 on average for a region covering 31 % of the face (a uniform map: 0.31).
    assert mass.mean() >= 0.6
    assert mass.mean() >= 1.8 * region.mean()


def test_occlusion_mass_falls_on_the_expression_cue(trained, test_faces):
    faces, labels, region = test_faces
    mass = _cue_mass(occlusion_map(trained, faces[:21], labels[:21]), region[:21])
    assert mass.mean() >= 0.6


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_maps_change_when_the_weights_are_randomised(trained, test_faces, method):
    """Adebayo et al. (2018): a map that survives randomising the model explains nothing."""
    faces = test_faces[0][: 21 if method == "gradcam" else 10]  # occlusion: 122 passes a face
    torch.manual_seed(1)
    randomised = _predictor(create_model("vgg", **ARCHITECTURE))
    explain = gradcam if method == "gradcam" else occlusion_map
    targets = trained.predict_proba(faces).argmax(axis=1)
    original, random = explain(trained, faces, targets), explain(randomised, faces, targets)
    assert np.array_equal(original[:3], explain(trained, faces[:3], targets[:3]))  # deterministic
    varying = [index for index in range(len(faces)) if np.ptp(random[index]) > 0]
    assert len(varying) >= 0.8 * len(faces)  # no trivial pass on all-zero random maps
    correlations = [spearmanr(original[index].ravel(), random[index].ravel())[0]
                    for index in varying]  # fmt: skip
    assert np.mean(correlations) < 0.5


def test_occlusion_finds_what_a_black_box_looks_at():
    class TopLeftModel:
        """Probability of class 0 rises with the brightness of the top-left 16x16 pixels."""

        def predict_proba(self, faces, batch_size=512):
            brightness = faces[:, :16, :16].mean(axis=(1, 2)) / 255.0
            return np.stack([brightness, 1.0 - brightness], axis=1)

    faces = np.full((2, 48, 48), 200, np.uint8)
    faces[:, 24:, 24:] = 0  # a dark corner: the mean gray used as occluder is darker than 200
    maps = occlusion_map(TopLeftModel(), faces, targets=np.array([0, 0]))
    assert maps[:, :16, :16].min() > 0
    assert np.all(maps[:, 24:, 24:] == 0)  # patches there never overlap the top-left block


def test_ensembles_and_models_without_a_convolution(trained, test_faces):
    faces = test_faces[0][:3]
    ensemble = Predictor(trained.model, trained.card, extra_members=[
        (create_model("vgg", **ARCHITECTURE).eval(), trained.card)])  # fmt: skip
    explained = explain_faces(ensemble, faces)
    assert [item.method for item in explained] == ["gradcam"] * 3
    assert all(0.0 <= item.saliency.min() and item.saliency.max() == 1.0 for item in explained)
    with pytest.raises(FerkitError, match="no convolution"):
        last_convolution(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    with pytest.raises(FerkitError, match="unknown explanation method"):
        explain_faces(trained, faces, method="lime")


def test_explain_cli_writes_an_overlay_and_a_map_per_face(trained, test_faces, tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(trained.model, run / "best", trained.card)
    for index in range(2):
        Image.fromarray(test_faces[0][index]).resize((96, 96)).save(tmp_path / f"face{index}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    code = main(["explain", str(tmp_path / "face0.png"), str(tmp_path / "face1.png"),
                 str(tmp_path / "broken.png"), "--model", str(run), "--detector", "none",
                 "--out", str(tmp_path / "out"), "--method", "occlusion"])  # fmt: skip
    output = capsys.readouterr()
    assert code == 1 and "broken.png" in output.err  # reported; the others still ran
    assert "wrote 2 explanation(s)" in output.out
    written = json.loads((tmp_path / "out" / "face1_face1_occlusion.json").read_text())
    assert written["method"] == "occlusion" and np.shape(written["saliency"]) == (48, 48)
    assert written["emotion"] in FER2013_CLASS_NAMES and written["crop"]["side"] == 96
    picture = Image.open(tmp_path / "out" / "face1_face1_occlusion.png")
    assert picture.size == (384, 192)  # the face and its overlay side by side


def test_explain_endpoint_returns_a_map_per_face(trained, test_faces, tmp_path):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient

    from ferkit.serving import ServeConfig, create_app

    save_checkpoint(trained.model, tmp_path / "best", trained.card)
    client = TestClient(create_app(ServeConfig(model=str(tmp_path), detector="none",
                                               backend="torch")))  # fmt: skip
    buffer = io.BytesIO()
    Image.fromarray(test_faces[0][0]).resize((200, 100)).save(buffer, format="PNG")
    answer = client.post("/v1/explain", files={"file": ("face.png", buffer.getvalue())})
    assert answer.status_code == 200, answer.text
    (face,) = answer.json()["faces"]
    assert face["method"] == "gradcam" and np.shape(face["saliency"]) == (48, 48)
    # The centred square of the image, not turned.
    assert face["crop"] == {"x": 50, "y": 0, "side": 100, "angle": 0.0}
    assert answer.json()["detector"] == "none"
    occlusion = client.post("/v1/explain?method=occlusion", content=buffer.getvalue())
    assert occlusion.json()["faces"][0]["method"] == "occlusion"
    assert client.post("/v1/explain?method=lime", content=buffer.getvalue()).status_code == 400
    assert client.post("/v1/explain", content=b"nothing").status_code == 415
    assert "/v1/explain" in client.get("/static/app.js").text


def test_gradcam_hooks_ignore_other_threads_using_the_model(trained, test_faces):
    """ferkit serve shares one model between threads: another thread's forward pass must not
    leak into this thread's Grad-CAM hooks."""
    import threading

    from ferkit.evaluation.explain import _capture_last_features

    captured = {}
    handles = _capture_last_features(trained.model, captured)
    try:
        other = threading.Thread(target=trained.predict_proba, args=(test_faces[0][:4],))
        other.start()
        other.join()
        assert captured == {}  # the other thread's pass was not captured
        trained.predict_proba(test_faces[0][:4])
        assert captured["features"].shape[0] == 4  # this thread's pass was
    finally:
        for handle in handles:
            handle.remove()


def test_explain_classifies_the_aligned_crop_predict_classifies(tiny_run, tmp_path, shared_yunet):
    """The explained answer is predict's: same crop (aligned from YuNet's landmarks), same
    probabilities, and the crop square (turned by the face's tilt) holds the landmarks."""
    import cv2
    from skimage import data as skimage_data

    from ferkit.evaluation.explain import explain
    from ferkit.faces.alignment import FER2013_LANDMARKS, similarity_transform
    from ferkit.inference.pipeline import analyze

    photo = tmp_path / "astronaut.png"
    centre = (256, 256)
    turned = cv2.warpAffine(skimage_data.astronaut(), cv2.getRotationMatrix2D(centre, 20, 1.0),
                            (512, 512), borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    Image.fromarray(turned).save(photo)
    (predicted,), _ = analyze([photo], model=tiny_run, progress=False)
    (explained,), errors = explain([photo], model=tiny_run, out=tmp_path / "out",
                                   method="occlusion")  # fmt: skip
    assert errors == [] and len(predicted.faces) == 1 and predicted.detector == "yunet"
    face = predicted.faces[0]
    for name, value in face.probabilities.items():
        assert explained.probabilities[name] == pytest.approx(value, abs=1e-5)
    x, y, side, angle = explained.crop
    assert angle < -1  # the head turned counter-clockwise on screen: the square turns with it
    # The square's corners land on the aligned crop's corners.
    matrix = similarity_transform(face.landmarks, FER2013_LANDMARKS)
    turn = cv2.getRotationMatrix2D((x + side / 2, y + side / 2), -angle, 1.0)
    corners = np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]])
    corners = np.hstack([corners, np.ones((4, 1))]) @ turn.T
    np.testing.assert_allclose(np.hstack([corners, np.ones((4, 1))]) @ matrix.T,
                               [[0, 0], [48, 0], [48, 48], [0, 48]], atol=0.01)  # fmt: skip
