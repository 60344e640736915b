"""Tests for ferkit.detection on real photos (scikit-image's astronaut) and synthetic scenes."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from ferkit import detection
from ferkit.detection import (
    YUNET_FILE_NAME,
    FaceBox,
    HaarDetector,
    WholeImageDetector,
    create_detector,
    crop_face,
    intersection_over_union,
    yunet_model_path,
)
from ferkit.errors import FerkitError

skimage_data = pytest.importorskip("skimage.data")

# The astronaut's face, as found by the Haar cascade on the 512x512 photo (x, y, w, h).
ASTRONAUT_FACE = (177, 66, 95, 95)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


def test_finds_the_astronauts_face(astronaut, haar):
    faces = haar.detect(astronaut)
    assert len(faces) == 1
    assert intersection_over_union(faces[0], ASTRONAUT_FACE) > 0.7
    assert faces[0].score > 0
    assert haar.detect(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))[0] == faces[0]


@pytest.mark.parametrize(
    "canvas_size, position, scale",
    [((800, 1000), (50, 600), 1.0), ((600, 900), (400, 100), 0.6), ((1200, 1600), (700, 900), 2.0)],
)
def test_boxes_come_back_where_the_face_was_pasted(astronaut, haar, canvas_size, position, scale):
    x, y, width, height = ASTRONAUT_FACE
    margin = 40  # paste the face with some head around it, as in a photo
    patch = astronaut[y - margin : y + height + margin, x - margin : x + width + margin]
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((*canvas_size, 3), 90, np.uint8)
    top, left = position
    canvas[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    expected = (
        left + margin * scale, top + margin * scale, width * scale, height * scale,
    )  # fmt: skip
    faces = haar.detect(canvas)
    assert len(faces) == 1
    assert intersection_over_union(faces[0], expected) > 0.6


def test_huge_image_is_downscaled_and_boxes_map_back(astronaut):
    huge = cv2.resize(astronaut, (3072, 3072), interpolation=cv2.INTER_LINEAR)
    faces = HaarDetector(max_side=1024).detect(huge)
    # The cascade may add small false positives at this magnification; the face is the largest.
    expected = tuple(value * 6 for value in ASTRONAUT_FACE)
    assert intersection_over_union(faces[0], expected) > 0.6


def test_a_photo_without_faces_gives_no_boxes(haar):
    assert haar.detect(skimage_data.coffee()) == []
    assert haar.detect(np.zeros((10, 10), np.uint8)) == []


def test_crop_face_pads_at_borders_and_uses_the_eval_preprocessing(astronaut):
    from ferkit.preprocessing import to_face_array

    inside = crop_face(astronaut, FaceBox(*ASTRONAUT_FACE, 1.0), margin=0.0)
    x, y, width, height = ASTRONAUT_FACE
    np.testing.assert_array_equal(inside, to_face_array(astronaut[y : y + height, x : x + width]))
    corner = crop_face(astronaut, FaceBox(-20, -20, 60, 60, 1.0))
    assert corner.shape == (48, 48)


def test_detector_choices_and_yunet_without_its_file(tmp_path):
    assert WholeImageDetector().detect(np.zeros((30, 40)))[0] == FaceBox(0, 0, 40, 30, 1.0)
    with pytest.raises(FerkitError, match="unknown detector 'mtcnn'.*haar, haar-fast, yunet, none"):
        create_detector("mtcnn")
    with pytest.raises(FerkitError, match="needs its model file.*opencv_zoo"):
        create_detector("yunet", tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(FerkitError, match="not a YuNet ONNX model"):
        create_detector("yunet", tmp_path / "bad.onnx")


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A stand-in for OpenCV zoo's YuNet file behind a file:// URL, and an empty user cache.

    The download code is the real one; only the URL and the pinned hash point at the stand-in,
    so no test touches the network.
    """
    source = tmp_path / "zoo" / YUNET_FILE_NAME
    source.parent.mkdir()
    source.write_bytes(b"stand-in for the YuNet ONNX model " * 100)
    monkeypatch.setattr(detection, "YUNET_URL", source.as_uri())
    monkeypatch.setattr(detection, "YUNET_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FERKIT_ALLOW_DOWNLOAD", raising=False)
    return source


def _cached_files(tmp_path) -> list[str]:
    folder = tmp_path / "cache" / "models"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_yunet_model_is_downloaded_once_into_the_cache(zoo, tmp_path):
    path = yunet_model_path(allow_download=True)
    assert path == tmp_path / "cache" / "models" / YUNET_FILE_NAME
    assert path.read_bytes() == zoo.read_bytes()
    assert _cached_files(tmp_path) == [YUNET_FILE_NAME]  # no temporary file left behind
    zoo.unlink()  # a second download would now fail: the cached, checked file is used
    assert yunet_model_path() == path
    assert yunet_model_path(allow_download=True) == path


def test_the_environment_variable_allows_the_download(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_ALLOW_DOWNLOAD", "1")
    assert yunet_model_path().read_bytes() == zoo.read_bytes()


def test_a_download_with_the_wrong_hash_is_not_kept(zoo, tmp_path, monkeypatch):
    actual = detection.YUNET_SHA256
    monkeypatch.setattr(detection, "YUNET_SHA256", "0" * 64)
    with pytest.raises(FerkitError) as caught:
        yunet_model_path(allow_download=True)
    message = str(caught.value)
    assert actual in message and "0" * 64 in message and zoo.as_uri() in message
    assert _cached_files(tmp_path) == []


def test_without_permission_nothing_is_downloaded(zoo, tmp_path, monkeypatch):
    def no_network(*arguments, **keywords):
        raise AssertionError("downloaded without permission")

    monkeypatch.setattr(detection.urllib.request, "urlopen", no_network)
    with pytest.raises(FerkitError) as caught:
        create_detector("yunet")
    message = str(caught.value)
    hints = ("--download-detector", "FERKIT_ALLOW_DOWNLOAD=1", "--detector-model", zoo.as_uri())
    for hint in (*hints, str(tmp_path / "cache" / "models" / YUNET_FILE_NAME)):
        assert hint in message
    assert _cached_files(tmp_path) == []


def test_an_unreachable_url_gives_a_clear_error(zoo, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / YUNET_FILE_NAME).as_uri()
    monkeypatch.setattr(detection, "YUNET_URL", missing)
    with pytest.raises(FerkitError, match="could not download") as caught:
        yunet_model_path(allow_download=True)
    assert missing in str(caught.value) and "--detector-model" in str(caught.value)
    assert _cached_files(tmp_path) == []


def test_a_damaged_cached_file_is_refused_or_downloaded_again(zoo, tmp_path):
    cached = tmp_path / "cache" / "models" / YUNET_FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    with pytest.raises(FerkitError, match=f"expected {detection.YUNET_SHA256}.*damaged"):
        yunet_model_path()
    assert yunet_model_path(allow_download=True).read_bytes() == zoo.read_bytes()


def test_create_detector_passes_the_permission_on(zoo, tmp_path):
    # The stand-in is no ONNX model: getting as far as OpenCV's loader shows it was downloaded.
    with pytest.raises(FerkitError, match=f"{YUNET_FILE_NAME}: not a YuNet ONNX model"):
        create_detector("yunet", allow_download=True)
    assert _cached_files(tmp_path) == [YUNET_FILE_NAME]


@pytest.mark.parametrize("command", [["predict", "photo.jpg"], ["serve"]])
def test_download_detector_flag(command):
    from ferkit.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--detector", "yunet"]).download_detector is False
    assert parser.parse_args([*command, "--download-detector"]).download_detector is True


def test_fast_haar_finds_the_astronaut_on_a_photo_sized_canvas(astronaut):
    from ferkit.detection import create_detector

    fast = create_detector("haar-fast")
    assert fast.name == "haar-fast" and fast.max_side < HaarDetector().max_side
    x, y, width, height = ASTRONAUT_FACE
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 64:576] = astronaut[16:496]  # the benchmark's 640x480 photo
    (face,) = fast.detect(canvas)
    # Detected on a 320-px copy, the box comes back in the photo's pixels.
    assert intersection_over_union(face, (x + 64, y - 16, width, height)) > 0.6


@pytest.mark.parametrize("cascade", ["alt", "alt2"])
def test_other_frontal_cascades_find_the_astronaut(astronaut, cascade):
    (face,) = HaarDetector(cascade=cascade).detect(astronaut)
    assert intersection_over_union(face, ASTRONAUT_FACE) > 0.6


def test_unknown_cascade_names_the_choices():
    with pytest.raises(FerkitError, match="unknown Haar cascade 'profile'.*default, alt, alt2"):
        HaarDetector(cascade="profile")
