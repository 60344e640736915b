"""Face alignment: landmarks to FER2013's framing, through the eval preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit.faces.alignment import FER2013_LANDMARKS, align_face, face_crop, similarity_transform
from ferkit.faces.detection import FaceBox, crop_face

skimage_data = pytest.importorskip("skimage.data")
# YuNet's landmarks on the astronaut (512x512 photo), measured once.
ASTRONAUT_LANDMARKS = np.array(
    [[200.1, 101.8], [247.1, 102.6], [220.4, 124.5], [198.6, 142.8], [239.7, 143.6]]
)


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    angle = np.radians(20)
    rotation = 1.7 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(FER2013_LANDMARKS, FER2013_LANDMARKS @ rotation.T + (30, -4))
    np.testing.assert_allclose(matrix, np.hstack([rotation, [[30], [-4]]]), atol=1e-9)


def test_aligned_face_puts_the_landmarks_where_fer2013_has_them():
    # A photo with a bright dot at each landmark of a tilted, shifted, scaled "face".
    angle = np.radians(-18)
    rotation = 3.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = FER2013_LANDMARKS @ rotation.T + (150, 90)
    photo = np.zeros((400, 400), np.uint8)
    for x, y in landmarks:
        cv2.circle(photo, (round(x), round(y)), 4, 255, -1)
    aligned = align_face(photo, landmarks).astype(float)
    for x, y in FER2013_LANDMARKS:  # each dot lands on its template point (within a pixel)
        window = aligned[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3]
        assert window.max() > 100
    assert aligned.mean() < 40  # and nothing else is bright


@pytest.mark.parametrize("angle", [-25, -10, 10, 25])
def test_a_rotated_face_aligns_like_the_upright_one(angle):
    astronaut = skimage_data.astronaut()
    upright = align_face(astronaut, ASTRONAUT_LANDMARKS).astype(float)
    matrix = cv2.getRotationMatrix2D((223.0, 120.0), angle, 1.0)
    rotated = cv2.warpAffine(astronaut, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
    landmarks = ASTRONAUT_LANDMARKS @ matrix[:, :2].T + matrix[:, 2]
    aligned = align_face(rotated, landmarks).astype(float)
    box = crop_face(rotated, FaceBox(178, 63, 90, 113, 1.0)).astype(float)
    # Alignment undoes the rotation: far closer to the upright face than the box crop is.
    assert np.abs(aligned - upright).mean() < 6
    assert np.abs(box - upright).mean() > 2 * np.abs(aligned - upright).mean()


def test_face_crop_aligns_only_with_landmarks_and_when_asked():
    astronaut = skimage_data.astronaut()
    with_landmarks = FaceBox(178, 63, 90, 113, 0.9, tuple(map(tuple, ASTRONAUT_LANDMARKS)))
    plain = FaceBox(178, 63, 90, 113, 0.9)
    np.testing.assert_array_equal(
        face_crop(astronaut, with_landmarks), align_face(astronaut, ASTRONAUT_LANDMARKS)
    )
    np.testing.assert_array_equal(face_crop(astronaut, plain), crop_face(astronaut, plain, 0.2))
    np.testing.assert_array_equal(
        face_crop(astronaut, with_landmarks, align=False), crop_face(astronaut, plain, 0.2)
    )
    assert face_crop(astronaut, with_landmarks, size=64).shape == (64, 64)
