"""Tests for ferkit.data.preprocessing: reading images, 48x48 gray faces and model normalisation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ferkit.data.preprocessing import (
    DEFAULT_NORMALIZATION,
    normalize_batch,
    read_image,
    to_face_array,
)
from ferkit.utils.errors import FerkitError


def random_pixels(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def pil_gray(image: Image.Image, size: int = 48) -> np.ndarray:
    """What to_face_array should give for a square image: PIL's L conversion, box-resized."""
    image = image.convert("RGB").convert("L") if image.mode != "L" else image
    if image.size != (size, size):
        image = image.resize((size, size), Image.BOX)
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------
# read_image


def test_preprocessing_imports_first_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", "import ferkit.data.preprocessing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_read_gray_png(tmp_path):
    pixels = random_pixels((30, 40))
    Image.fromarray(pixels).save(tmp_path / "gray.png")
    array = read_image(tmp_path / "gray.png")
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, pixels)


def test_read_rgb_png(tmp_path):
    pixels = random_pixels((30, 40, 3))
    Image.fromarray(pixels).save(tmp_path / "colour.png")
    array = read_image(str(tmp_path / "colour.png"))
    assert array.shape == (30, 40, 3)
    np.testing.assert_array_equal(array, pixels)


def test_read_rgba_png_drops_alpha(tmp_path):
    pixels = random_pixels((20, 25, 4))
    Image.fromarray(pixels).save(tmp_path / "alpha.png")
    array = read_image(tmp_path / "alpha.png")
    assert array.shape == (20, 25, 3)
    np.testing.assert_array_equal(array, pixels[:, :, :3])


def test_read_palette_png(tmp_path):
    palette = random_pixels((16, 3), seed=1)
    indices = np.random.default_rng(2).integers(0, 16, size=(12, 10), dtype=np.uint8)
    image = Image.new("P", (10, 12))
    image.putpalette(palette.ravel().tolist())
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as reopened:
        assert reopened.mode == "P"
    array = read_image(tmp_path / "palette.png")
    assert array.shape == (12, 10, 3)
    np.testing.assert_array_equal(array, palette[indices])


def test_read_gray_with_alpha_and_one_bit(tmp_path):
    pixels = random_pixels((16, 16))
    Image.fromarray(pixels).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), pixels)
    Image.fromarray(pixels).convert("1").save(tmp_path / "bits.png")
    bits = read_image(tmp_path / "bits.png")
    assert bits.shape == (16, 16) and bits.dtype == np.uint8
    assert set(np.unique(bits).tolist()) <= {0, 255}


def sixteen_bit_gradient(tmp_path):
    values = (np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)  # 0 ... 65520
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I;16")
    return path, values


def test_read_16_bit_png_is_gray_uint8(tmp_path):
    path, values = sixteen_bit_gradient(tmp_path)
    array = read_image(path)
    assert array.shape == values.shape
    assert array.dtype == np.uint8


def test_read_16_bit_png_scales_to_8_bit(tmp_path):
    path, values = sixteen_bit_gradient(tmp_path)
    array = read_image(path)
    assert np.abs(array.astype(np.int64) - values / 257.0).max() <= 1


def test_read_jpeg(tmp_path):
    pixels = np.full((24, 24, 3), (200, 40, 90), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "face.jpg", quality=95)
    array = read_image(tmp_path / "face.jpg")
    assert array.shape == (24, 24, 3)
    assert np.abs(array.astype(int) - pixels).max() <= 8


def test_read_missing_file(tmp_path):
    path = tmp_path / "absent.png"
    with pytest.raises(FerkitError, match=f"^{path}: no such file$"):
        read_image(path)
    with pytest.raises(FerkitError, match=f"^{tmp_path}: no such file$"):
        read_image(tmp_path)  # a folder is not an image file


@pytest.mark.parametrize(
    "content",
    [b"just some text", b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR truncated"],
    ids=["text", "empty", "truncated-png"],
)
def test_read_non_image(tmp_path, content):
    path = tmp_path / "face.png"
    path.write_bytes(content)
    with pytest.raises(FerkitError, match=f"^{path}: not a readable image"):
        read_image(path)


def test_read_truncated_image_data(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(random_pixels((64, 64))).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FerkitError, match=f"^{path}: not a readable image"):
        read_image(path)


# ---------------------------------------------------------------------------------------------
# to_face_array


@pytest.mark.parametrize(
    ("shape", "size"),
    [((48, 48), 48), ((100, 100), 48), ((20, 20), 48), ((100, 100), 64), ((48, 48, 3), 32)],
)
def test_face_sizes(shape, size):
    face = to_face_array(random_pixels(shape), size=size)
    assert face.shape == (size, size)
    assert face.dtype == np.uint8


def test_face_at_size_is_unchanged():
    pixels = random_pixels((48, 48))
    np.testing.assert_array_equal(to_face_array(pixels), pixels)


@pytest.mark.parametrize("shape", [(100, 100), (20, 20), (37, 91), (200, 50, 3)])
def test_uniform_face_stays_uniform(shape):
    face = to_face_array(np.full(shape, 77, dtype=np.uint8))
    assert np.all(face == 77)


def test_shrinking_averages_blocks():
    # A 96x96 image of constant 2x2 blocks shrinks to the average of each block (box filter).
    pixels = np.kron(random_pixels((48, 48)), np.ones((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(to_face_array(pixels), random_pixels((48, 48)))


def test_colour_to_gray_matches_pil():
    pixels = random_pixels((48, 48, 3))
    expected = np.asarray(Image.fromarray(pixels).convert("L"))
    np.testing.assert_array_equal(to_face_array(pixels), expected)
    np.testing.assert_array_equal(to_face_array(Image.fromarray(pixels)), expected)


def test_large_colour_face_matches_pil():
    pixels = random_pixels((96, 96, 3))
    np.testing.assert_array_equal(to_face_array(pixels), pil_gray(Image.fromarray(pixels)))


def test_rgba_array_uses_the_colour_channels():
    pixels = random_pixels((48, 48, 4))
    expected = np.asarray(Image.fromarray(pixels[:, :, :3]).convert("L"))
    np.testing.assert_array_equal(to_face_array(pixels), expected)


def test_single_channel_array():
    pixels = random_pixels((48, 48))
    np.testing.assert_array_equal(to_face_array(pixels[:, :, None]), pixels)


def test_pil_images_of_other_modes():
    pixels = random_pixels((48, 48, 3))
    palette_image = Image.fromarray(pixels).convert("P")
    np.testing.assert_array_equal(to_face_array(palette_image), pil_gray(palette_image))


@pytest.mark.parametrize(
    ("height", "width"), [(48, 144), (144, 48), (48, 101), (60, 48), (96, 192)]
)
def test_non_square_is_centre_cropped(height, width):
    # The centre square is 200, everything outside it 0: a stretch or off-centre crop would
    # bring 0s into the face.
    pixels = np.zeros((height, width), dtype=np.uint8)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top : top + side, left : left + side] = 200
    face = to_face_array(pixels)
    assert face.shape == (48, 48)
    assert np.all(face == 200)


def test_non_square_colour_crop_matches_pil():
    pixels = random_pixels((60, 100, 3))
    expected = pil_gray(Image.fromarray(pixels).crop((20, 0, 80, 60)))
    np.testing.assert_array_equal(to_face_array(pixels), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_faces_in_0_1(dtype):
    pixels = np.arange(48 * 48).reshape(48, 48) % 256
    face = to_face_array((pixels / 255.0).astype(dtype))
    assert face.dtype == np.uint8
    np.testing.assert_array_equal(face, pixels)


def test_float_faces_in_0_255_are_clipped():
    pixels = np.linspace(-50.0, 300.0, 48 * 48).reshape(48, 48)
    face = to_face_array(pixels)
    np.testing.assert_array_equal(face, np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("shape", [(48,), (48, 48, 2), (2, 48, 48, 3), (48, 48, 5)])
def test_bad_array_shapes(shape):
    with pytest.raises(FerkitError, match=r"expected an image array .*got shape"):
        to_face_array(np.zeros(shape, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# normalize_batch


def test_normalize_batch_shape_and_dtype():
    batch = normalize_batch(random_pixels((5, 48, 48)))
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (5, 1, 48, 48)
    assert batch.dtype == torch.float32


def test_normalize_batch_default_values():
    assert DEFAULT_NORMALIZATION == {"mean": 0.5, "std": 0.25}
    pixels = np.zeros((3, 48, 48), dtype=np.uint8)
    pixels[1] = 255
    pixels[2] = 51
    batch = normalize_batch(pixels)
    torch.testing.assert_close(batch[0], torch.full((1, 48, 48), -2.0))
    torch.testing.assert_close(batch[1], torch.full((1, 48, 48), 2.0))
    torch.testing.assert_close(batch[2], torch.full((1, 48, 48), (0.2 - 0.5) / 0.25))


def test_normalize_batch_custom_normalization():
    pixels = random_pixels((2, 48, 48))
    batch = normalize_batch(pixels, {"mean": 0.0, "std": 1.0})
    expected = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)
    torch.testing.assert_close(batch, expected)


def test_normalize_batch_accepts_tensors():
    pixels = random_pixels((4, 48, 48))
    torch.testing.assert_close(normalize_batch(torch.from_numpy(pixels)), normalize_batch(pixels))
