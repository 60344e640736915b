"""Tests for ferkit.detection on real photos (scikit-image's astronaut) and synthetic scenes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit.detection import (
    FaceBox,
    HaarDetector,
    WholeImageDetector,
    create_detector,
    crop_face,
)
from ferkit.errors import FerkitError

skimage_data = pytest.importorskip("skimage.data")

# The astronaut's face, as found by the Haar cascade on the 512x512 photo (x, y, w, h).
ASTRONAUT_FACE = (177, 66, 95, 95)


def intersection_over_union(box: FaceBox, expected) -> float:
    x, y, width, height = expected
    left, top = max(box.x, x), max(box.y, y)
    right = min(box.x + box.width, x + width)
    bottom = min(box.y + box.height, y + height)
    overlap = max(0, right - left) * max(0, bottom - top)
    return overlap / (box.width * box.height + width * height - overlap)


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
    with pytest.raises(FerkitError, match="unknown detector 'mtcnn'.*haar, yunet, none"):
        create_detector("mtcnn")
    with pytest.raises(FerkitError, match="needs its model file.*opencv_zoo"):
        create_detector("yunet", tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(FerkitError, match="not a YuNet ONNX model"):
        create_detector("yunet", tmp_path / "bad.onnx")
