"""Drawing one synthetic face: the expression features, the head around them, warp, occluders.

The per-face part of :func:`ferkit.data.synth.generate_faces` (which draws the random numbers
and batches the faces) and of :mod:`ferkit.data.synth_cues` (which replays the same drawing to
record where each expression's cue lies). Coordinates are in 48-px face units; drawing happens
at :data:`SUPERSAMPLE` times that.
"""

from __future__ import annotations

import math

from PIL import Image

from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES
from ferkit.data.synth_canvas import SUPERSAMPLE, Canvas, FaceRandom, MaskingCanvas, shade

__all__ = ["draw_face", "occlude_face", "warp_face"]

# Label indices, spelled out so the drawing code reads as expressions rather than numbers.
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(len(FER2013_CLASS_NAMES))


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


def draw_face(label: int, random: FaceRandom, cue_mask: Image.Image | None = None) -> Image.Image:
    """Draw one face with expression ``label`` at SUPERSAMPLE x 48 px, before warping/occlusion.

    With ``cue_mask`` (a blank "L" image of the same size), the expression features are also
    drawn on it in white: where the class cue is (``ferkit.data.synth_cues``).

    Example:
        >>> import numpy as np
        >>> from ferkit.data.synth_canvas import FaceRandom
        >>> draw_face(3, FaceRandom(np.full(96, 0.5))).size  # Happy, 4 x 48 px
        (192, 192)
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
    background = shade(background)
    # Features are strongly darker than the skin: the expression must survive noise and contrast.
    ink = shade(skin * random.uniform(0.12, 0.35))
    lips = shade(skin * random.uniform(0.35, 0.55))
    mouth_inside = shade(skin * random.uniform(0.05, 0.2))
    eye_white = shade(skin + random.uniform(15, 45))
    teeth = shade(max(skin, eye_white) + random.uniform(0, 25))
    hair = shade(random.uniform(10, 120) if random.chance(0.8) else random.uniform(150, 230))

    image = Image.new("L", (canvas_size, canvas_size), background)
    canvas = Canvas(image)

    _draw_head(canvas, random, center_x, skin, hair)

    # Facial layout, with per-face jitter so feature positions are not fixed pixels.
    eye_y = random.uniform(18.5, 21.0)
    eye_spacing = random.uniform(7.0, 8.8)  # Midline to eye centre.
    eye_radius_x = random.uniform(2.9, 3.7)
    mouth_y = random.uniform(35.0, 37.5)
    mouth_x = center_x + random.uniform(-0.6, 0.6)
    size = random.uniform(0.85, 1.15)  # Jitters mouth size/curvature together.

    # The expression features; with a cue mask they are drawn on it too (the plain nose is the
    # same for every expression, so only Disgust's wrinkled nose counts as a cue).
    features = canvas if cue_mask is None else MaskingCanvas(canvas, Canvas(cue_mask))
    _draw_brows(features, label, random, eye_y, eye_spacing, ink)
    _draw_eyes(features, label, random, eye_y, eye_spacing, eye_radius_x, ink, eye_white)
    _draw_nose(features if label == DISGUST else canvas, label, random, eye_y, mouth_y, skin, ink)
    _draw_mouth(features, label, random, mouth_x, mouth_y, size, lips, mouth_inside, teeth)
    return image


def _draw_head(canvas: Canvas, random: FaceRandom, center_x, skin, hair):
    """A random head oval, with hair behind it and ears and a neck, to look like a face crop."""
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
        fill=shade(skin * random.uniform(0.7, 0.85)),
    )
    ear_y = face_center_y + random.uniform(-3.0, 1.0)
    for side in (-1, 1):
        canvas.ellipse(center_x + side * face_radius_x, ear_y, 2.6, 4.5, fill=shade(skin * 0.92))
    canvas.ellipse(center_x, face_center_y, face_radius_x, face_radius_y, fill=shade(skin))
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


def _draw_brows(canvas: Canvas, label: int, random: FaceRandom, eye_y, eye_spacing, ink):
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


def _draw_eyes(canvas: Canvas, label, random, eye_y, eye_spacing, radius_x, ink, eye_white):
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


def _draw_nose(canvas: Canvas, label, random, eye_y, mouth_y, skin, ink):
    nose_shadow = shade(skin * random.uniform(0.6, 0.8))
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


def _draw_lip_arc(
    canvas: Canvas, random: FaceRandom, center_x, center_y, radius_x, radius_y, start, end, lips
):
    """A closed mouth as one curved lip stroke (a smile's or a frown's arc), of random width."""
    canvas.arc(
        center_x,
        center_y,
        radius_x,
        radius_y,
        start,
        end,
        fill=lips,
        width=random.uniform(1.5, 2.1),
    )


def _draw_happy_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
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
        _draw_lip_arc(canvas, random, mouth_x, mouth_y - depth, half_width, depth, 15, 165, lips)


def _draw_sad_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
    # Frown: a downward arc, corners pulled down.
    half_width = random.uniform(6.0, 7.5) * size
    depth = random.uniform(4.0, 5.5) * size
    _draw_lip_arc(canvas, random, mouth_x, mouth_y + depth * 0.6, half_width, depth, 195, 345, lips)


def _draw_surprised_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
    # Jaw dropped: a big round/tall open "O".
    radius_x = random.uniform(3.8, 5.0) * size
    radius_y = random.uniform(5.0, 6.5) * size
    canvas.ellipse(mouth_x, mouth_y, radius_x, radius_y, fill=inside, outline=lips, width=1.3)


def _draw_fearful_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
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


def _draw_angry_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
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


def _draw_disgusted_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
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


def _draw_neutral_mouth(
    canvas: Canvas, random: FaceRandom, mouth_x, mouth_y, size, lips, inside, teeth
):
    # Neutral: a straight, thin, closed line.
    half_width = random.uniform(5.5, 7.0) * size
    canvas.line(
        [(mouth_x - half_width, mouth_y), (mouth_x + half_width, mouth_y)],
        fill=lips,
        width=random.uniform(1.1, 1.5),
    )


# The mouth each expression is drawn with.
_MOUTHS = {
    HAPPY: _draw_happy_mouth,
    SAD: _draw_sad_mouth,
    SURPRISE: _draw_surprised_mouth,
    FEAR: _draw_fearful_mouth,
    ANGRY: _draw_angry_mouth,
    DISGUST: _draw_disgusted_mouth,
    NEUTRAL: _draw_neutral_mouth,
}


def _draw_mouth(canvas: Canvas, label, random, mouth_x, mouth_y, size, lips, inside, teeth):
    _MOUTHS[label](canvas, random, mouth_x, mouth_y, size, lips, inside, teeth)


def warp_face(image: Image.Image, random: FaceRandom, fill: int) -> Image.Image:
    """Shift (a few px), scale (+-12%) and rotate (+-12 degrees) the face about the image centre.

    Example:
        >>> import numpy as np
        >>> from ferkit.data.synth_canvas import FaceRandom
        >>> random = FaceRandom(np.full(96, 0.5))
        >>> warp_face(draw_face(6, random), random, fill=0).size
        (192, 192)
    """
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


def occlude_face(image: Image.Image, random: FaceRandom) -> None:
    """Draw one occluder in place; each kind leaves at least brows+eyes or mouth visible.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> from ferkit.data.synth_canvas import FaceRandom
        >>> image = Image.new("L", (192, 192), 255)
        >>> occlude_face(image, FaceRandom(np.full(96, 0.1)))  # a dark bar down the left side
        >>> image.getpixel((0, 96)), image.getpixel((191, 96))
        (25, 255)
    """
    canvas = Canvas(image)
    color = shade(random.uniform(0, 255))
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
