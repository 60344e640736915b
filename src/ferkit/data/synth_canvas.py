"""The drawing primitives of the synthetic faces: their random numbers, a canvas in face units.

Used by :mod:`ferkit.data.synth_drawing`, which draws the faces, and by
:mod:`ferkit.data.synth_cues`, which replays that drawing on a mask.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SUPERSAMPLE", "Canvas", "FaceRandom", "MaskingCanvas", "shade"]

#: Faces are drawn at this multiple of 48 px and box-downsampled, which anti-aliases strokes.
SUPERSAMPLE = 4


class FaceRandom:
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


class Canvas:
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


class MaskingCanvas:
    """Draws on a face canvas and, in white, on a mask canvas: where the features are."""

    def __init__(self, face: Canvas, mask: Canvas):
        self.face, self.mask = face, mask

    def __getattr__(self, name):
        def draw(*args, **kwargs):
            getattr(self.face, name)(*args, **kwargs)
            colors = {key: 255 for key in ("fill", "outline") if kwargs.get(key) is not None}
            getattr(self.mask, name)(*args, **{**kwargs, **colors})

        return draw


def shade(intensity: float) -> int:
    """Clip a float intensity to a valid 8-bit gray level."""
    return int(min(255.0, max(0.0, intensity)))
