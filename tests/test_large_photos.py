"""Large photos in ``ferkit predict``: JPEGs decoded reduced, faces searched in a 640-px copy,
boxes and landmarks mapped back to the photo; 640x480 photos exactly as before."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from ferkit.data.preprocessing import read_image, read_photo, read_photos
from ferkit.faces.detection import FaceBox, downscale
from ferkit.inference import pipeline
from ferkit.inference.results import MediaResult, Prediction
from ferkit.utils.errors import FerkitError

skimage_data = pytest.importorskip("skimage.data")


def _astronaut(width: int, height: int) -> np.ndarray:
    return cv2.resize(skimage_data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)


def test_a_large_jpeg_is_decoded_reduced_and_says_by_how_much(tmp_path):
    Image.fromarray(_astronaut(2000, 1500)).save(tmp_path / "big.jpg", quality=92)
    photo = read_photo(tmp_path / "big.jpg", least_side=500)
    assert photo.pixels.shape == (375, 500, 3) and photo.scale == 4.0
    assert (photo.width, photo.height) == (2000, 1500)
    # About what shrinking the full decode by area averaging gives.
    full = read_image(tmp_path / "big.jpg")
    shrunk = cv2.resize(full, (500, 375), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - photo.pixels).mean() < 3
    # Still at least least_side long: 1/2 here, not 1/4.
    assert read_photo(tmp_path / "big.jpg", least_side=600).scale == 2.0


def test_small_jpegs_and_other_formats_are_decoded_at_full_size(tmp_path):
    Image.fromarray(_astronaut(640, 480)).save(tmp_path / "small.jpg", quality=90)
    Image.fromarray(_astronaut(2000, 1500)).save(tmp_path / "big.png")
    for name in ("small.jpg", "big.png"):
        photo = read_photo(tmp_path / name, least_side=400)
        assert photo.scale == 1.0
        np.testing.assert_array_equal(photo.pixels, read_image(tmp_path / name))
        assert (photo.width, photo.height) == photo.pixels.shape[1::-1]


def test_a_turned_phone_photo_reports_its_upright_size(tmp_path):
    image = Image.fromarray(_astronaut(2000, 1500))
    exif = image.getexif()
    exif[0x0112] = 6  # stored turned: "rotate 90° clockwise to display"
    image.save(tmp_path / "phone.jpg", quality=90, exif=exif)
    photo = read_photo(tmp_path / "phone.jpg", least_side=500)
    assert (photo.width, photo.height) == (1500, 2000) and photo.pixels.shape == (500, 375, 3)


def test_photos_are_read_ahead_in_threads_and_come_back_in_order(tmp_path):
    sizes = [(40 + index, 30) for index in range(9)]
    paths = []
    for width, height in sizes:
        paths.append(tmp_path / f"{width}.png")
        Image.fromarray(np.full((height, width), width, np.uint8)).save(paths[-1])
    paths.insert(4, tmp_path / "missing.png")
    read = list(read_photos(paths, workers=3))
    assert isinstance(read[4], FerkitError) and "missing.png" in str(read[4])
    del read[4]
    assert [(photo.width, int(photo.pixels[0, 0])) for photo in read] == [
        (width, width) for width, _ in sizes
    ]


def test_boxes_found_in_a_copy_map_back_to_the_photo():
    copy, factor = downscale(np.zeros((1500, 2000, 3), np.uint8), 640)
    assert copy.shape == (480, 640, 3) and factor == 3.125
    box = FaceBox(100, 50, 64, 64, 0.9, ((110.0, 70.0),) * 5)
    scaled = box.scaled(factor)
    assert (scaled.x, scaled.y, scaled.width, scaled.height) == (312, 156, 200, 200)
    assert scaled.landmarks[0] == (343.75, 218.75) and scaled.score == 0.9
    assert box.scaled(1.0) is box
    result = MediaResult("a.jpg", 640, 480, [Prediction("Happy", 0.9, box=box)])
    assert result.scaled(1.0, width=640, height=480) is result
    assert result.scaled(factor, width=2000, height=1500).faces[0].box == scaled


def _analyze(inputs, model, shared_yunet, **options):
    results, errors = pipeline.analyze(
        inputs, model=model, detector_model=shared_yunet, progress=False, backend="torch", **options
    )
    assert errors == []
    return results


def test_640x480_photos_give_exactly_what_they_gave_before(tmp_path, monkeypatch, shared_yunet):
    """The astronaut (a face) and coffee (none: the second look runs) at 640x480, against the
    path before reduced decoding and detection copies (the three sides None)."""
    for name in ("astronaut", "coffee"):
        image = cv2.resize(getattr(skimage_data, name)(), (640, 480), interpolation=cv2.INTER_AREA)
        Image.fromarray(image).save(tmp_path / f"{name}.jpg", quality=90)
    now = _analyze([tmp_path], "small", shared_yunet)
    for knob in ("DECODE_SIDE", "DETECTION_SIDE", "SEARCH_SIDE"):
        monkeypatch.setattr(pipeline, knob, None)
    before = _analyze([tmp_path], "small", shared_yunet)
    assert [len(result.faces) for result in now] == [1, 0]
    assert now == before  # boxes, landmarks, scores, probabilities, rejected counts


def test_a_large_photo_gives_its_faces_in_its_own_pixels(tmp_path, monkeypatch, shared_yunet):
    """A 3200x2400 JPEG is decoded at 1600x1200 and searched at 1280x960: its face comes back
    5x where the 640x480 photo has it, where the full-size path finds it, with the same
    emotion; the annotated copy is at the decoded size."""
    Image.fromarray(_astronaut(640, 480)).save(tmp_path / "small.jpg", quality=95)
    Image.fromarray(_astronaut(3200, 2400)).save(tmp_path / "large.jpg", quality=95)
    inputs = [tmp_path / "large.jpg", tmp_path / "small.jpg"]
    large, small = _analyze(inputs, "small", shared_yunet, save=tmp_path / "out")
    assert (large.width, large.height) == (3200, 2400)
    (face,), (reference,) = large.faces, small.faces
    for value, expected in zip(
        (face.box.x, face.box.y, face.box.width, face.box.height),
        (reference.box.x, reference.box.y, reference.box.width, reference.box.height),
    ):
        assert value == pytest.approx(5 * expected, abs=0.05 * 5 * reference.box.width)
    assert Image.open(tmp_path / "out" / "large_annotated.png").size == (1600, 1200)
    for knob in ("DECODE_SIDE", "DETECTION_SIDE", "SEARCH_SIDE"):
        monkeypatch.setattr(pipeline, knob, None)
    (full_size,) = _analyze([tmp_path / "large.jpg"], "small", shared_yunet)[0].faces
    shift = np.abs(np.subtract(face.box.landmarks, full_size.box.landmarks)).max()
    assert shift < 0.01 * full_size.box.width and face.label == full_size.label
    assert face.probabilities == pytest.approx(full_size.probabilities, abs=0.01)
