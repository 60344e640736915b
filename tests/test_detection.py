"""Tests for ferkit.faces.detection on real photos (scikit-image's astronaut) and synthetic
scenes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit.faces.detection import (
    FaceBox,
    HaarDetector,
    WholeImageDetector,
    YuNetDetector,
    create_detector,
    crop_face,
    intersection_over_union,
)
from ferkit.utils.errors import FerkitError

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
    from ferkit.data.preprocessing import to_face_array

    inside = crop_face(astronaut, FaceBox(*ASTRONAUT_FACE, 1.0), margin=0.0)
    x, y, width, height = ASTRONAUT_FACE
    np.testing.assert_array_equal(inside, to_face_array(astronaut[y : y + height, x : x + width]))
    corner = crop_face(astronaut, FaceBox(-20, -20, 60, 60, 1.0))
    assert corner.shape == (48, 48)


def test_detector_choices_and_yunet_without_its_file(tmp_path):
    assert WholeImageDetector().detect(np.zeros((30, 40)))[0] == FaceBox(0, 0, 40, 30, 1.0)
    with pytest.raises(FerkitError, match="unknown detector 'mtcnn'.*haar, haar-fast, yunet, none"):
        create_detector("mtcnn")
    with pytest.raises(FerkitError, match="--detector-model .*missing.onnx: no such file"):
        create_detector("yunet", tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(FerkitError, match="not a YuNet ONNX model"):
        create_detector("yunet", tmp_path / "bad.onnx")


def test_fast_haar_finds_the_astronaut_on_a_photo_sized_canvas(astronaut):
    from ferkit.faces.detection import create_detector

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


# YuNet, the default detector, from ../shared/models' copy (tests skip without it).
# YuNet's box on the astronaut is taller than Haar's (it reaches the chin).
ASTRONAUT_YUNET_FACE = (178, 63, 90, 113)


@pytest.fixture(scope="module")
def yunet():
    from conftest import SHARED_YUNET

    if not SHARED_YUNET.is_file():
        pytest.skip(f"{SHARED_YUNET} not found")
    return YuNetDetector(SHARED_YUNET)


def test_yunet_finds_the_astronaut_with_landmarks_on_her_eyes_nose_and_mouth(astronaut, yunet):
    (face,) = yunet.detect(astronaut)
    assert intersection_over_union(face, ASTRONAUT_YUNET_FACE) > 0.8 and face.score > 0.8
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
    # Her eyes (measured by eye on the photo) are near (200, 102) and (247, 103).
    assert np.hypot(right_eye[0] - 200, right_eye[1] - 102) < 5
    assert np.hypot(left_eye[0] - 247, left_eye[1] - 103) < 5
    assert right_eye[1] < nose[1] < right_mouth[1] and right_mouth[0] < left_mouth[0]
    assert set(face.landmarks_dict()) == {
        "right_eye", "left_eye", "nose", "right_mouth", "left_mouth",
    }  # fmt: skip


@pytest.mark.parametrize(
    "canvas_size, position, scale",
    [((480, 640), (30, 400), 0.7), ((600, 900), (250, 60), 1.0), ((1200, 1600), (700, 900), 2.0)],
)
def test_yunet_boxes_and_landmarks_come_back_where_the_face_was_pasted(
    astronaut, yunet, canvas_size, position, scale
):
    x, y, width, height = ASTRONAUT_YUNET_FACE
    margin = 40
    patch = astronaut[y - margin : y + height + margin, x - margin : x + width + margin]
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((*canvas_size, 3), 90, np.uint8)
    top, left = position
    canvas[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    (face,) = yunet.detect(canvas)
    expected = (left + margin * scale, top + margin * scale, width * scale, height * scale)
    assert intersection_over_union(face, expected) > 0.7
    right_eye = face.landmarks[0]
    expected_eye = (left + (200 - x + margin) * scale, top + (102 - y + margin) * scale)
    assert np.hypot(right_eye[0] - expected_eye[0], right_eye[1] - expected_eye[1]) < 5 * scale


@pytest.mark.parametrize("angle", [-25, 25])
def test_yunet_finds_a_rotated_face_and_its_landmarks_tilt_with_it(astronaut, yunet, angle):
    center = (223.0, 120.0)  # between her eyes and mouth
    matrix = cv2.getRotationMatrix2D(center, angle, 1.0)  # counter-clockwise for angle > 0
    rotated = cv2.warpAffine(astronaut, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
    (face,) = yunet.detect(rotated)
    assert intersection_over_union(face, ASTRONAUT_YUNET_FACE) > 0.6

    def tilt(landmarks):
        (right_x, right_y), (left_x, left_y) = landmarks[:2]
        return np.degrees(np.arctan2(left_y - right_y, left_x - right_x))

    upright = tilt(yunet.detect(astronaut)[0].landmarks)
    # YuNet's landmarks follow a rotation only partly (measured: about 3-4 degrees of 25; its
    # training faces are mostly upright), but in the right direction.
    assert np.sign(tilt(face.landmarks) - upright) == -np.sign(angle)
    assert 1.5 < abs(tilt(face.landmarks) - upright) < 30


def test_yunet_with_onnx_runtime_gives_opencvs_detections(astronaut, yunet):
    pytest.importorskip("onnxruntime")
    assert yunet.engine == "onnxruntime"
    opencv = cv2.FaceDetectorYN.create(str(yunet.model_path), "", (320, 320), 0.6)
    rng = np.random.default_rng(0)
    photos = [astronaut, skimage_data.coffee(), skimage_data.chelsea()]
    for size in ((480, 640), (333, 517)):  # one not a multiple of 32: the padding path
        canvas = np.full((*size, 3), 90, np.uint8)
        side = int(rng.integers(100, 200))
        canvas[20 : 20 + side, 40 : 40 + side] = cv2.resize(
            astronaut[40:300, 110:370], (side, side)
        )
        photos.append(canvas)
    found = 0
    for photo in photos:
        bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
        opencv.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, expected = opencv.detect(bgr)
        expected = np.zeros((0, 15)) if expected is None else expected
        actual = yunet.runner.detect(bgr)
        assert actual.shape == expected.shape
        assert np.abs(actual - expected).max(initial=0) < 0.01  # pixels, landmarks and score
        found += len(actual)
    assert found >= 3  # the astronaut and her two pasted copies at least


def test_a_non_yunet_onnx_file_is_refused_by_name(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "not-yunet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(FerkitError, match="other.onnx: not a YuNet ONNX model .*cls_8"):
        YuNetDetector(tmp_path / "other.onnx")


def test_yunet_finds_nothing_in_a_photo_without_faces(yunet):
    assert yunet.detect(skimage_data.coffee()) == []
    assert yunet.detect(np.zeros((10, 10), np.uint8)) == []
