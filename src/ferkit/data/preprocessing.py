"""The one eval preprocessing: any image → 48x48 grayscale → normalised tensor.

Train (for validation), evaluate, predict, export and serve all import these functions, so a
face is prepared the same way everywhere.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferkit.utils.errors import FerkitError

#: Side of a FER2013 face, and the default model input size, in pixels.
FACE_SIZE = 48

#: Default input normalisation, on the 0-1 pixel scale: x = (pixel / 255 - mean) / std.
#: Close to FER2013's own statistics (mean 0.51, std 0.26); recorded in every model card.
DEFAULT_NORMALIZATION = {"mean": 0.5, "std": 0.25}

#: The EXIF tag that says how a photo is stored turned (5-8: by 90 or 270 degrees).
EXIF_ORIENTATION = 0x0112

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a uint8 array (H, W) gray or (H, W, 3) RGB.

    Raises:
        FerkitError: naming the file when it is missing or not a readable image.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "face.png"
        >>> Image.fromarray(np.zeros((10, 12), np.uint8)).save(f)
        >>> read_image(f).shape
        (10, 12)
    """
    return read_photo(path).pixels


class Photo(NamedTuple):
    """An image file as :func:`read_photo` decodes it.

    Attributes:
        pixels: uint8 (H, W) gray or (H, W, 3) RGB, upright.
        scale: the photo's pixels per decoded pixel: 1, or 2, 4 or 8 for a JPEG decoded
            reduced.
        width, height: the photo's own size, upright (``pixels`` times ``scale``, up to the
            rounding up of a reduced decode).
    """

    pixels: np.ndarray
    scale: float
    width: int
    height: int


def read_photo(path: str | os.PathLike, least_side: int | None = None) -> Photo:
    """Read an image file; a large JPEG decoded reduced while its longer side stays at least
    ``least_side`` pixels.

    A JPEG holds its pixels as frequencies, so libjpeg can decode it at 1/2, 1/4 or 1/8 of its
    sides directly (DCT scaling, Pillow's ``Image.draft``) in a fraction of the full decode's
    time, about as a box filter would shrink it. Other formats, and JPEGs smaller than twice
    ``least_side``, are decoded at full size, exactly as :func:`read_image` decodes them.

    Raises:
        FerkitError: naming the file when it is missing or not a readable image.

    Example:
        >>> import pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "photo.jpg"
        >>> Image.new("RGB", (1200, 900)).save(file)
        >>> photo = read_photo(file, least_side=500)
        >>> photo.pixels.shape, photo.scale, (photo.width, photo.height)
        ((450, 600, 3), 2.0, (1200, 900))
    """
    path = Path(path)
    if not path.is_file():
        raise FerkitError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            scale = 1.0
            if least_side and image.format == "JPEG" and max(width, height) >= 2 * least_side:
                # draft() keeps each side at least what is asked: least_side for the longer.
                asked = (least_side, 1) if width >= height else (1, least_side)
                drafted = image.draft(image.mode, asked)
                if drafted is not None:
                    scale = width / drafted[1][2]  # the box it decodes, in decoded pixels
            if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # turned by 90°
                width, height = height, width
            return Photo(image_to_array(image), scale, width, height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise FerkitError(f"{path}: not a readable image ({error})") from error


def read_photos(
    paths, least_side: int | None = None, *, workers: int | None = None
) -> Iterator[Photo | FerkitError]:
    """:func:`read_photo` of each path, in order, decoded by ``workers`` threads (default: up
    to 4) a few files ahead (Pillow decodes without holding the GIL); a file that cannot be
    read gives its :class:`FerkitError` in its place.

    Example:
        >>> [type(photo).__name__ for photo in read_photos(["/nonexistent.jpg"])]
        ['FerkitError']
    """

    def read(path):
        try:
            return read_photo(path, least_side)
        except FerkitError as error:
            return error

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for path in paths:
            pending.append(pool.submit(read, path))
            if len(pending) > workers:  # read ahead only this far
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def image_to_array(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as uint8 (H, W) gray or (H, W, 3) RGB, upright.

    The one decoder of files (``read_image``) and uploads (``ferkit serve``): EXIF orientation
    is applied (phone photos are stored rotated), 16/32-bit gray is rescaled (Pillow's
    ``convert("L")`` would clip it), palette/alpha/CMYK become RGB.

    Example:
        >>> from PIL import Image
        >>> image_to_array(Image.new("I;16", (4, 2), 65535)).tolist()[0]
        [255, 255, 255, 255]
    """
    from PIL import ImageOps

    image.load()
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # (else exif_transpose only copies)
        image = ImageOps.exif_transpose(image) or image
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0)
        if peak > 255:
            values = values * (255.0 / (65535.0 if peak <= 65535 else peak))
        elif image.mode == "F" and peak <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.mode not in ("L", "RGB"):
        # Palette/alpha/CMYK images → RGB; 1-bit and gray+alpha → gray.
        image = image.convert("L" if image.mode in ("1", "LA") else "RGB")
    return np.asarray(image)


def to_face_array(image, size: int = FACE_SIZE) -> np.ndarray:
    """Turn a face crop of any size and colour into a uint8 (size, size) grayscale face.

    Colour arrays are taken as RGB (or RGBA); gray uses ITU-R 601 luma like FER2013's release.
    A non-square crop is centre-cropped to a square first, so faces are never stretched.

    Args:
        image: a PIL image or a uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
        size: output side in pixels.

    Example:
        >>> import numpy as np
        >>> to_face_array(np.zeros((100, 80, 3), np.uint8)).shape
        (48, 48)
    """
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
                array = array * 255.0  # float images in 0-1
            array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise FerkitError(
                f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}"
            )
        image = Image.fromarray(array)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    width, height = image.size
    if width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        # BOX averages when shrinking (no aliasing); BILINEAR when enlarging.
        resample = Image.BOX if image.size[0] > size else Image.BILINEAR
        image = image.resize((size, size), resample=resample)
    return np.asarray(image, dtype=np.uint8)


def normalize_batch(images, normalization: dict | None = None):
    """uint8 faces (N, H, W) → float32 tensor (N, 1, H, W) normalised for the model.

    Example:
        >>> import numpy as np
        >>> normalize_batch(np.full((2, 48, 48), 255, np.uint8)).shape
        torch.Size([2, 1, 48, 48])
    """
    import torch

    normalization = normalization or DEFAULT_NORMALIZATION
    if torch.is_tensor(images):
        tensor = images.to(torch.float32)
    else:  # the float copy is writable even when the uint8 source (e.g. from PIL) is not
        tensor = torch.from_numpy(np.asarray(images).astype(np.float32))
    return normalize_pixels(tensor.unsqueeze(1), normalization)


def normalize_pixels(pixels, normalization: dict):
    """Float pixels 0-255 (a tensor of any shape) → the model's input scale.

    The arithmetic of the one eval preprocessing, shared by :func:`normalize_batch` and the
    probability graph that predict, evaluate and the ONNX export run
    (:class:`ferkit.inference.graph.ProbabilityGraph`).

    Example:
        >>> import torch
        >>> normalize_pixels(torch.tensor([0.0, 255.0]), {"mean": 0.5, "std": 0.25}).tolist()
        [-2.0, 2.0]
    """
    scale = 1.0 / (255.0 * normalization["std"])
    return pixels * scale - normalization["mean"] / normalization["std"]
