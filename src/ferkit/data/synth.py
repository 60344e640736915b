"""Procedurally drawn FER2013-style faces, for tests, demos and smoke runs without real data.

Every face is a 48x48 grayscale cartoon face showing one of the seven FER2013 expressions
(label order as :data:`ferkit.data.dataset.FER2013_CLASS_NAMES`). The expression is carried by
the geometry of the eyebrows, eyes, mouth and (for Disgust) nose wrinkles; everything else --
position, scale, rotation, face shape, hair, intensities, lighting, noise and occlusions --
varies randomly from face to face, so a classifier has to learn the expression cues rather than
memorise pixels. The cues are deliberately strong: a small CNN separates the classes almost
perfectly after a few epochs, which is what a smoke test of a training pipeline needs.

Faces are drawn with PIL at :data:`SUPERSAMPLE` times the final resolution, rotated/scaled/shifted
with one affine warp at that resolution, then box-downsampled to 48x48, which anti-aliases the
strokes. All randomness comes from ``np.random.default_rng(seed)``, so output is byte-identical
for a given ``n`` and ``seed``.

This module draws the random numbers and batches the faces; one face is drawn by
:mod:`ferkit.data.synth_drawing` on the primitives of :mod:`ferkit.data.synth_canvas`.

Example:
    >>> from ferkit.data.synth import make_synthetic_dataset
    >>> dataset = make_synthetic_dataset(n=70, seed=1)
    >>> dataset.images.shape, dataset.class_counts()["Happy"]
    ((70, 48, 48), 10)
"""

from __future__ import annotations

import math

import numpy as np

from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES, FER2013_USAGES, FerDataset
from ferkit.data.synth_canvas import SUPERSAMPLE, FaceRandom
from ferkit.data.synth_drawing import draw_face, occlude_face, warp_face

__all__ = ["SUPERSAMPLE", "generate_faces", "make_synthetic_dataset"]


# How many uniform random numbers each face may consume. Each face gets its own fixed-size row,
# drawn in one vectorised call: faster than hundreds of scalar rng calls, and a face's stream does
# not depend on how many numbers the previous face happened to use.
_RANDOM_NUMBERS_PER_FACE = 96

# Fraction of faces that get an occluding bar or patch (a hand, a microphone, a watermark...).
_OCCLUSION_PROBABILITY = 0.25


def _class_sizes(n: int, num_classes: int) -> np.ndarray:
    """Balanced class sizes: n // num_classes each, the remainder going to the first classes."""
    sizes = np.full(num_classes, n // num_classes, dtype=np.int64)
    sizes[: n % num_classes] += 1
    return sizes


def _drawing_plan(n: int, seed: int):
    """The first random draws of :func:`generate_faces`: (generator, labels, per-face uniforms,
    occlusion flags). ``ferkit.data.synth_cues`` replays them, so they live in one place."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    num_classes = len(FER2013_CLASS_NAMES)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), _class_sizes(n, num_classes))
    labels = rng.permutation(labels)
    face_uniforms = rng.random((n, _RANDOM_NUMBERS_PER_FACE))
    occluded = rng.random(n) < _OCCLUSION_PROBABILITY
    return rng, labels, face_uniforms, occluded


def generate_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` synthetic 48x48 grayscale faces with FER2013 expression labels.

    Classes are balanced (``n // 7`` faces each, the remainder going to the first classes in
    FER2013 label order) and rows come in shuffled order. Each face varies in position, scale,
    rotation, face shape, hair, intensities, brightness, contrast, lighting gradient, pixel noise
    and (for about a quarter of the faces) an occluding bar or patch; the expression is carried by
    brows, eyes, mouth and nose wrinkles. The result is deterministic for a given ``(n, seed)``.

    Args:
        n: number of faces to draw (0 or more).
        seed: seed for ``np.random.default_rng``; different seeds give different faces.

    Returns:
        ``(images, labels)``: uint8 array of shape ``(n, 48, 48)`` and int64 array of shape
        ``(n,)`` with values in ``0..6`` (indices into ``FER2013_CLASS_NAMES``).

    Raises:
        ValueError: if ``n`` is negative.

    Example:
        >>> images, labels = generate_faces(14, seed=3)
        >>> images.shape, images.dtype, labels.dtype
        ((14, 48, 48), dtype('uint8'), dtype('int64'))
        >>> np.bincount(labels).tolist()
        [2, 2, 2, 2, 2, 2, 2]
    """
    # All random numbers for the drawing, plus per-face photometric parameters, drawn up front.
    rng, labels, face_uniforms, occluded = _drawing_plan(n, seed)
    contrast = rng.uniform(0.7, 1.25, size=n).astype(np.float32)
    brightness = rng.uniform(-25.0, 25.0, size=n).astype(np.float32)
    gradient = rng.uniform(-18.0, 18.0, size=(n, 2)).astype(np.float32)
    noise_level = rng.uniform(1.0, 7.0, size=n).astype(np.float32)
    noise = rng.standard_normal((n, FACE_SIZE, FACE_SIZE), dtype=np.float32)

    images = np.empty((n, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    for index in range(n):
        random = FaceRandom(face_uniforms[index])
        face = draw_face(int(labels[index]), random)
        face = warp_face(face, random, fill=face.getpixel((0, 0)))
        if occluded[index]:
            occlude_face(face, random)
        # reduce() averages SUPERSAMPLE x SUPERSAMPLE blocks: a box filter, i.e. area anti-aliasing.
        images[index] = np.asarray(face.reduce(SUPERSAMPLE))

    # Photometric variation, vectorised over the batch: contrast about mid-gray, brightness
    # offset, a linear lighting gradient across the face, then Gaussian sensor noise.
    coordinates = (np.arange(FACE_SIZE, dtype=np.float32) - (FACE_SIZE - 1) / 2) / (FACE_SIZE / 2)
    lighting = (
        gradient[:, 0, None, None] * coordinates[None, None, :]
        + gradient[:, 1, None, None] * coordinates[None, :, None]
    )
    pixels = (images.astype(np.float32) - 128.0) * contrast[:, None, None] + 128.0
    pixels += brightness[:, None, None] + lighting + noise * noise_level[:, None, None]
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return images, labels


def make_synthetic_dataset(
    n: int = 3500, seed: int = 0, usage_fractions=(0.8, 0.1, 0.1)
) -> FerDataset:
    """Build a :class:`FerDataset` of synthetic faces with a FER2013-style ``usage`` split.

    Faces come from :func:`generate_faces`. Within each class, faces are assigned to
    ``Training``, ``PublicTest`` and ``PrivateTest`` in the given fractions (rounded per class,
    so every split is stratified); which faces go where is deterministic for the seed.

    Args:
        n: number of faces.
        seed: random seed (see :func:`generate_faces`).
        usage_fractions: fractions for ``(Training, PublicTest, PrivateTest)``; three
            non-negative numbers summing to 1.

    Returns:
        A dataset with FER2013 class names, a ``usage`` array and
        ``source="synthetic(n=..., seed=...)"``.

    Raises:
        ValueError: if ``n`` is negative or ``usage_fractions`` is not three non-negative
            numbers summing to 1.

    Example:
        >>> dataset = make_synthetic_dataset(n=700, seed=0)
        >>> dataset.source
        'synthetic(n=700, seed=0)'
        >>> from ferkit.data.dataset import FER2013_USAGES
        >>> [int((dataset.usage == usage).sum()) for usage in FER2013_USAGES]
        [560, 70, 70]
    """
    fractions = np.asarray(usage_fractions, dtype=np.float64)
    if fractions.shape != (len(FER2013_USAGES),):
        raise ValueError(
            f"usage_fractions must have {len(FER2013_USAGES)} entries "
            f"{FER2013_USAGES}, got {usage_fractions!r}"
        )
    if np.any(fractions < 0) or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"usage_fractions must be non-negative and sum to 1, got {usage_fractions!r}"
        )
    images, labels = generate_faces(n, seed)

    # Rows are already in random order, so taking each class's faces in row order and cutting
    # at the rounded cumulative fractions is a random, deterministic, stratified split. Cutting
    # at cumulative boundaries (rather than rounding each count) makes the counts add up exactly.
    usage = np.empty(n, dtype=f"<U{max(len(name) for name in FER2013_USAGES)}")
    cumulative = np.concatenate([[0.0], np.cumsum(fractions)])
    cumulative[-1] = 1.0
    for label in range(len(FER2013_CLASS_NAMES)):
        rows = np.flatnonzero(labels == label)
        boundaries = np.rint(cumulative * len(rows)).astype(np.int64)
        for split, name in enumerate(FER2013_USAGES):
            usage[rows[boundaries[split] : boundaries[split + 1]]] = name
    return FerDataset(
        images=images,
        labels=labels,
        class_names=FER2013_CLASS_NAMES,
        usage=usage,
        source=f"synthetic(n={n}, seed={seed})",
    )
