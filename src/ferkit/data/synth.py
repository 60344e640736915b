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

Example:
    >>> from ferkit.data.synth import make_synthetic_dataset
    >>> dataset = make_synthetic_dataset(n=70, seed=1)
    >>> dataset.images.shape, dataset.class_counts()["Happy"]
    ((70, 48, 48), 10)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES, FER2013_USAGES, FerDataset

__all__ = ["SUPERSAMPLE", "generate_faces", "make_synthetic_dataset"]

#: Faces are drawn at this multiple of 48 px and box-downsampled, which anti-aliases strokes.
SUPERSAMPLE = 4

# Label indices, spelled out so the drawing code reads as expressions rather than numbers.
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(len(FER2013_CLASS_NAMES))

# How many uniform random numbers each face may consume. Each face gets its own fixed-size row,
# drawn in one vectorised call: faster than hundreds of scalar rng calls, and a face's stream does
# not depend on how many numbers the previous face happened to use.
_RANDOM_NUMBERS_PER_FACE = 96

# Fraction of faces that get an occluding bar or patch (a hand, a microphone, a watermark...).
_OCCLUSION_PROBABILITY = 0.25

# Eyebrow geometry per expression, in 48-px units relative to the eye centre:
#   height: how far the brow's middle sits above the eye centre,
#   inner_drop: how much lower the inner end is than the outer end (negative = inner raised),
#   arch: how far the brow's middle bulges above the straight inner-outer chord,
#   inner_gap: horizontal distance of the inner end from the face's midline,
#   thickness: stroke width.
# The differences are large on purpose (several pixels), well above the per-face jitter.
_BROWS = {
    ANGRY: dict(height=4.2, inner_drop=3.6, arch=-0.2, inner_gap=1.6, thickness=2.4),
    DISGUST: dict(height=4.6, inner_drop=1.4, arch=0.2, inner_gap=2.4, thickness=2.0),
    FEAR: dict(height=7.6, inner_drop=-2.4, arch=0.4, inner_gap=1.4, thickness=1.8),
    HAPPY: dict(height=6.0, inner_drop=0.0, arch=1.0, inner_gap=3.2, thickness=1.8),
    SAD: dict(height=6.2, inner_drop=-3.4, arch=-0.2, inner_gap=3.0, thickness=1.8),
    SURPRISE: dict(height=8.6, inner_drop=0.4, arch=2.6, inner_gap=3.2, thickness=1.8),
    NEUTRAL: dict(height=5.8, inner_drop=0.0, arch=0.5, inner_gap=3.2, thickness=1.8),
}

# Eye openness (half-height of the eye opening, 48-px units) as a (low, high) range.
_EYE_OPENNESS = {
    ANGRY: (0.9, 1.25),
    DISGUST: (0.8, 1.15),
    FEAR: (2.9, 3.5),
    HAPPY: (0.0, 0.0),  # Happy eyes are drawn as closed, upward-curved "smiling" crescents.
    SAD: (1.6, 2.0),
    SURPRISE: (3.2, 3.8),
    NEUTRAL: (1.8, 2.2),
}

# Below this openness an eye is drawn as a dark slit; above it, with visible white and an iris.
_NARROWED_EYE_LIMIT = 1.4


class _FaceRandom:
    """Hands out one face's pre-drawn uniform numbers, mapped to the ranges the drawing asks for."""

    def __init__(self, uniforms: np.ndarray):
        self._uniforms = uniforms.tolist()  # Python floats: much faster to index one at a time.
        self._position = 0

    def uniform(self, low: float, high: float) -> float:
        value = self._uniforms[self._position]
        self._position += 1
        return low + (high - low) * value

    def chance(self, probability: float) -> bool:
        return self.uniform(0.0, 1.0) < probability

    def choice(self, count: int) -> int:
        return min(int(self.uniform(0.0, count)), count - 1)

    def sign(self) -> int:
        return 1 if self.chance(0.5) else -1


class _Canvas:
    """An ImageDraw wrapper taking coordinates and widths in 48-px face units."""

    def __init__(self, image: Image.Image):
        self.draw = ImageDraw.Draw(image)

    @staticmethod
    def _scale_points(points) -> list[tuple[float, float]]:
        return [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]

    @staticmethod
    def _box(center_x, center_y, radius_x, radius_y) -> list[float]:
        # PIL rejects boxes whose far corner is before the near one, so keep radii positive.
        radius_x, radius_y = max(radius_x, 0.3), max(radius_y, 0.3)
        return [
            (center_x - radius_x) * SUPERSAMPLE,
            (center_y - radius_y) * SUPERSAMPLE,
            (center_x + radius_x) * SUPERSAMPLE,
            (center_y + radius_y) * SUPERSAMPLE,
        ]

    @staticmethod
    def _width(width: float) -> int:
        return max(1, round(width * SUPERSAMPLE))

    def ellipse(self, center_x, center_y, radius_x, radius_y, fill=None, outline=None, width=1.0):
        self.draw.ellipse(
            self._box(center_x, center_y, radius_x, radius_y),
            fill=fill,
            outline=outline,
            width=self._width(width),
        )

    def arc(self, center_x, center_y, radius_x, radius_y, start, end, fill, width):
        self.draw.arc(
            self._box(center_x, center_y, radius_x, radius_y),
            start,
            end,
            fill=fill,
            width=self._width(width),
        )

    def chord(self, center_x, center_y, radius_x, radius_y, start, end, fill):
        self.draw.chord(self._box(center_x, center_y, radius_x, radius_y), start, end, fill=fill)

    def line(self, points, fill, width):
        self.draw.line(
            self._scale_points(points), fill=fill, width=self._width(width), joint="curve"
        )

    def polygon(self, points, fill):
        self.draw.polygon(self._scale_points(points), fill=fill)

    def rectangle(self, left, top, right, bottom, fill, radius=0.0):
        box = [left * SUPERSAMPLE, top * SUPERSAMPLE, right * SUPERSAMPLE, bottom * SUPERSAMPLE]
        if radius > 0:
            self.draw.rounded_rectangle(box, radius=radius * SUPERSAMPLE, fill=fill)
        else:
            self.draw.rectangle(box, fill=fill)


class _MaskingCanvas:
    """Draws on a face canvas and, in white, on a mask canvas: where the features are."""

    def __init__(self, face: _Canvas, mask: _Canvas):
        self.face, self.mask = face, mask

    def __getattr__(self, name):
        def draw(*args, **kwargs):
            getattr(self.face, name)(*args, **kwargs)
            colors = {key: 255 for key in ("fill", "outline") if kwargs.get(key) is not None}
            getattr(self.mask, name)(*args, **{**kwargs, **colors})

        return draw


def _shade(intensity: float) -> int:
    """Clip a float intensity to a valid 8-bit gray level."""
    return int(min(255.0, max(0.0, intensity)))


def _draw_face(label: int, random: _FaceRandom, cue_mask: Image.Image | None = None) -> Image.Image:
    """Draw one face with expression ``label`` at SUPERSAMPLE x 48 px, before warping/occlusion.

    With ``cue_mask`` (a blank "L" image of the same size), the expression features are also
    drawn on it in white: where the class cue is (``ferkit.data.synth_cues``).
    """
    canvas_size = FACE_SIZE * SUPERSAMPLE
    center_x = 24.0

    # Skin and background: the background is kept at least 30 gray levels away from the skin
    # so the face oval is always visible, but may be lighter or darker than it.
    skin = random.uniform(115, 225)
    offset = random.uniform(30, 110)
    background = skin + offset if random.chance(0.5) else skin - offset
    if not 5 <= background <= 250:
        background = skin - offset if background > 250 else skin + offset
    background = _shade(background)
    # Features are strongly darker than the skin: the expression must survive noise and contrast.
    ink = _shade(skin * random.uniform(0.12, 0.35))
    lips = _shade(skin * random.uniform(0.35, 0.55))
    mouth_inside = _shade(skin * random.uniform(0.05, 0.2))
    eye_white = _shade(skin + random.uniform(15, 45))
    teeth = _shade(max(skin, eye_white) + random.uniform(0, 25))
    hair = _shade(random.uniform(10, 120) if random.chance(0.8) else random.uniform(150, 230))

    image = Image.new("L", (canvas_size, canvas_size), background)
    canvas = _Canvas(image)

    # Head shape: a random oval, with hair behind it and ears and a neck, to look like a face crop.
    face_center_y = random.uniform(24.0, 26.5)
    face_radius_x = random.uniform(16.5, 20.5)
    face_radius_y = random.uniform(21.0, 25.0)
    if random.chance(0.65):
        canvas.ellipse(
            center_x,
            face_center_y - random.uniform(2.0, 5.0),
            face_radius_x + random.uniform(1.5, 4.5),
            face_radius_y + random.uniform(0.5, 3.0),
            fill=hair,
        )
    neck_half_width = face_radius_x * random.uniform(0.4, 0.5)
    canvas.rectangle(
        center_x - neck_half_width,
        face_center_y + 8.0,
        center_x + neck_half_width,
        48.0,
        fill=_shade(skin * random.uniform(0.7, 0.85)),
    )
    ear_y = face_center_y + random.uniform(-3.0, 1.0)
    for side in (-1, 1):
        canvas.ellipse(center_x + side * face_radius_x, ear_y, 2.6, 4.5, fill=_shade(skin * 0.92))
    canvas.ellipse(center_x, face_center_y, face_radius_x, face_radius_y, fill=_shade(skin))
    if random.chance(0.45):
        # A fringe over the top of the forehead, stopping well above even Surprise's high brows.
        # Drawn as a chord of the face oval, so it is cut straight and stays inside the head.
        fringe_bottom = min(face_center_y - face_radius_y + random.uniform(3.0, 6.0), 6.0)
        half_angle = math.degrees(math.asin((face_center_y - fringe_bottom) / face_radius_y))
        canvas.chord(
            center_x,
            face_center_y,
            face_radius_x,
            face_radius_y,
            180 + half_angle,
            360 - half_angle,
            fill=hair,
        )

    # Facial layout, with per-face jitter so feature positions are not fixed pixels.
    eye_y = random.uniform(18.5, 21.0)
    eye_spacing = random.uniform(7.0, 8.8)  # Midline to eye centre.
    eye_radius_x = random.uniform(2.9, 3.7)
    mouth_y = random.uniform(35.0, 37.5)
    mouth_x = center_x + random.uniform(-0.6, 0.6)
    size = random.uniform(0.85, 1.15)  # Jitters mouth size/curvature together.

    # The expression features; with a cue mask they are drawn on it too (the plain nose is the
    # same for every expression, so only Disgust's wrinkled nose counts as a cue).
    features = canvas if cue_mask is None else _MaskingCanvas(canvas, _Canvas(cue_mask))
    _draw_brows(features, label, random, eye_y, eye_spacing, ink)
    _draw_eyes(features, label, random, eye_y, eye_spacing, eye_radius_x, ink, eye_white)
    _draw_nose(features if label == DISGUST else canvas, label, random, eye_y, mouth_y, skin, ink)
    _draw_mouth(features, label, random, mouth_x, mouth_y, size, lips, mouth_inside, teeth)
    return image


def _draw_brows(canvas: _Canvas, label: int, random: _FaceRandom, eye_y, eye_spacing, ink):
    brow = _BROWS[label]
    height = brow["height"] + random.uniform(-0.6, 0.6)
    inner_drop = brow["inner_drop"] * random.uniform(0.8, 1.15)
    arch = brow["arch"] * random.uniform(0.7, 1.3)
    inner_gap = brow["inner_gap"] + random.uniform(-0.4, 0.4)
    length = random.uniform(7.0, 9.0)
    thickness = brow["thickness"] * random.uniform(0.85, 1.2)
    # A little asymmetry between the two brows, as on real faces.
    tilt = random.uniform(-0.5, 0.5)
    mid_y = eye_y - height
    for side in (-1, 1):
        inner_x = 24.0 + side * inner_gap
        outer_x = 24.0 + side * (inner_gap + length)
        inner_y = mid_y + inner_drop / 2 + side * tilt
        outer_y = mid_y - inner_drop / 2 + side * tilt
        middle = ((inner_x + outer_x) / 2, (inner_y + outer_y) / 2 - arch)
        canvas.line([(inner_x, inner_y), middle, (outer_x, outer_y)], fill=ink, width=thickness)


def _draw_eyes(canvas: _Canvas, label, random, eye_y, eye_spacing, radius_x, ink, eye_white):
    low, high = _EYE_OPENNESS[label]
    openness = random.uniform(low, high)
    gaze_x = random.uniform(-0.8, 0.8)
    gaze_y = random.uniform(-0.3, 0.3)
    for side in (-1, 1):
        eye_x = 24.0 + side * eye_spacing
        if label == HAPPY:
            # Cheeks push the lower lids up: closed eyes curving upwards, like "^ ^".
            canvas.arc(eye_x, eye_y + 1.0, radius_x, 1.8, 200, 340, fill=ink, width=1.4)
        elif openness < _NARROWED_EYE_LIMIT:
            # Narrowed eyes: a dark slit, no white showing.
            canvas.ellipse(eye_x, eye_y, radius_x, openness, fill=ink)
        else:
            # Open eyes: white with a dark rim; wide eyes (Surprise/Fear) show white above and
            # below the iris, which is the salient cue.
            canvas.ellipse(eye_x, eye_y, radius_x, openness, fill=eye_white, outline=ink, width=0.7)
            iris_radius = min(1.7, openness * 0.8)
            canvas.ellipse(eye_x + gaze_x, eye_y + gaze_y, iris_radius, iris_radius, fill=ink)


def _draw_nose(canvas: _Canvas, label, random, eye_y, mouth_y, skin, ink):
    nose_shadow = _shade(skin * random.uniform(0.6, 0.8))
    nose_tip_y = mouth_y - random.uniform(5.0, 6.5)
    nose_x = 24.0 + random.uniform(-0.5, 0.5)
    canvas.line(
        [(nose_x - 0.6, eye_y + 2.0), (nose_x - 0.8, nose_tip_y)], fill=nose_shadow, width=0.8
    )
    for side in (-1, 1):
        canvas.ellipse(nose_x + side * 1.6, nose_tip_y + 0.3, 0.9, 0.6, fill=nose_shadow)
    if label == DISGUST:
        # Nose wrinkler: short diagonal creases beside the bridge and across it.
        for side in (-1, 1):
            for step in range(3):
                y = eye_y + 2.5 + step * 1.5
                canvas.line(
                    [(24.0 + side * 2.0, y), (24.0 + side * 4.2, y + 1.6)], fill=ink, width=0.9
                )
        canvas.line([(nose_x - 1.6, eye_y + 2.2), (nose_x + 1.6, eye_y + 2.2)], fill=ink, width=0.8)


def _draw_mouth(canvas: _Canvas, label, random, mouth_x, mouth_y, size, lips, inside, teeth):
    if label == HAPPY:
        half_width = random.uniform(7.0, 9.0) * size
        if random.chance(0.5):
            # Open smile: a "D" lying on its back, flat upper lip with teeth, curved lower lip.
            depth = random.uniform(4.5, 6.5) * size
            top = mouth_y - depth * 0.6
            canvas.chord(mouth_x, top, half_width, depth, 0, 180, fill=inside)
            canvas.chord(mouth_x, top, half_width * 0.98, depth * 0.38, 0, 180, fill=teeth)
        else:
            # Closed smile: an upward arc with raised corners.
            depth = random.uniform(3.5, 5.0) * size
            canvas.arc(
                mouth_x,
                mouth_y - depth,
                half_width,
                depth,
                15,
                165,
                fill=lips,
                width=random.uniform(1.5, 2.1),
            )
    elif label == SAD:
        # Frown: a downward arc, corners pulled down.
        half_width = random.uniform(6.0, 7.5) * size
        depth = random.uniform(4.0, 5.5) * size
        canvas.arc(
            mouth_x,
            mouth_y + depth * 0.6,
            half_width,
            depth,
            195,
            345,
            fill=lips,
            width=random.uniform(1.5, 2.1),
        )
    elif label == SURPRISE:
        # Jaw dropped: a big round/tall open "O".
        radius_x = random.uniform(3.8, 5.0) * size
        radius_y = random.uniform(5.0, 6.5) * size
        canvas.ellipse(mouth_x, mouth_y, radius_x, radius_y, fill=inside, outline=lips, width=1.3)
    elif label == FEAR:
        # Lips stretched sideways and open: a wide, low, rounded rectangle with teeth showing.
        half_width = random.uniform(7.5, 9.5) * size
        half_height = random.uniform(2.4, 3.4) * size
        canvas.rectangle(
            mouth_x - half_width,
            mouth_y - half_height,
            mouth_x + half_width,
            mouth_y + half_height,
            fill=lips,
            radius=half_height,
        )
        inner = 0.8
        canvas.rectangle(
            mouth_x - half_width + inner,
            mouth_y - half_height + inner,
            mouth_x + half_width - inner,
            mouth_y + half_height - inner,
            fill=inside,
            radius=half_height - inner,
        )
        canvas.rectangle(
            mouth_x - half_width + 2.0,
            mouth_y - half_height + inner,
            mouth_x + half_width - 2.0,
            mouth_y - half_height + inner + 1.1,
            fill=teeth,
        )
    elif label == ANGRY:
        # Lips pressed together: a short, thick, flat line with slightly lowered corners.
        half_width = random.uniform(4.5, 5.8) * size
        sag = random.uniform(0.5, 1.2)
        canvas.line(
            [
                (mouth_x - half_width, mouth_y + sag),
                (mouth_x - half_width * 0.45, mouth_y),
                (mouth_x + half_width * 0.45, mouth_y),
                (mouth_x + half_width, mouth_y + sag),
            ],
            fill=inside,
            width=random.uniform(2.4, 3.0),
        )
    elif label == DISGUST:
        # Upper lip raised on one side (a snarl): an asymmetric wavy opening.
        side = random.sign()
        half_width = random.uniform(6.0, 7.5) * size
        raise_height = random.uniform(2.8, 3.8) * size
        upper = [
            (mouth_x - side * half_width, mouth_y + 0.6),
            (mouth_x - side * half_width * 0.45, mouth_y - 0.6),
            (mouth_x + side * half_width * 0.1, mouth_y - raise_height * 0.45),
            (mouth_x + side * half_width * 0.55, mouth_y - raise_height),
            (mouth_x + side * half_width, mouth_y - raise_height * 0.3),
        ]
        lower = [
            (mouth_x + side * half_width * 0.85, mouth_y + 1.0),
            (mouth_x, mouth_y + 1.2),
        ]
        canvas.polygon(upper + lower, fill=inside)
        canvas.line(upper, fill=lips, width=1.2)
    else:
        # Neutral: a straight, thin, closed line.
        half_width = random.uniform(5.5, 7.0) * size
        canvas.line(
            [(mouth_x - half_width, mouth_y), (mouth_x + half_width, mouth_y)],
            fill=lips,
            width=random.uniform(1.1, 1.5),
        )


def _warp(image: Image.Image, random: _FaceRandom, fill: int) -> Image.Image:
    """Shift (a few px), scale (+-12%) and rotate (+-12 degrees) the face about the image centre."""
    angle = math.radians(random.uniform(-12.0, 12.0))
    scale = random.uniform(0.88, 1.12)
    shift_x = random.uniform(-3.0, 3.0) * SUPERSAMPLE
    shift_y = random.uniform(-3.0, 3.0) * SUPERSAMPLE
    center = image.width / 2
    # PIL's affine transform maps each *output* pixel back to an input pixel, so we pass the
    # inverse of "rotate by angle, scale, then shift": input = R(-angle) (output - c - t) / s + c.
    cosine, sine = math.cos(angle) / scale, math.sin(angle) / scale
    coefficients = (
        cosine,
        sine,
        center - cosine * (center + shift_x) - sine * (center + shift_y),
        -sine,
        cosine,
        center + sine * (center + shift_x) - cosine * (center + shift_y),
    )
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )


def _occlude(image: Image.Image, random: _FaceRandom) -> None:
    """Draw one occluder; each kind leaves at least brows+eyes or mouth visible."""
    canvas = _Canvas(image)
    color = _shade(random.uniform(0, 255))
    kind = random.choice(4)
    if kind == 0:
        # A bar down one side, hiding one eye and brow (and maybe a mouth corner).
        width = random.uniform(8.0, 16.0)
        left = 0.0 if random.chance(0.5) else 48.0 - width
        canvas.rectangle(left, 0.0, left + width, 48.0, fill=color)
    elif kind == 1:
        # A band over the forehead (a hat, a hand): brows partly hidden, eyes and mouth visible.
        canvas.rectangle(0.0, 0.0, 48.0, random.uniform(9.0, 15.0), fill=color)
    elif kind == 2:
        # Something in front of the lower face: often partial, brows and eyes stay visible.
        top = random.uniform(36.0, 43.0)
        left = random.uniform(-10.0, 20.0)
        canvas.rectangle(left, top, left + random.uniform(20.0, 40.0), 48.0, fill=color)
    else:
        # A small square patch anywhere.
        side = random.uniform(6.0, 12.0)
        left, top = random.uniform(0.0, 48.0 - side), random.uniform(0.0, 48.0 - side)
        canvas.rectangle(left, top, left + side, top + side, fill=color)


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
        random = _FaceRandom(face_uniforms[index])
        face = _draw_face(int(labels[index]), random)
        face = _warp(face, random, fill=face.getpixel((0, 0)))
        if occluded[index]:
            _occlude(face, random)
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
