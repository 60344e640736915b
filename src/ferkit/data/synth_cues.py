"""Where the expression is on each synthetic face: ground truth for explanation tests.

:func:`ferkit.data.synth.generate_faces` draws the class cue -- brows, eyes, mouth and (for
Disgust) the wrinkled nose -- on a face whose other parts (shape, hair, lighting, noise) do not
depend on the class. :func:`expression_cue_masks` replays the same drawing with the same random
numbers and records which pixels those features cover, after the same warp and occlusion, so an
explanation method can be checked against where the evidence really is.

Example:
    >>> from ferkit.data.synth_cues import expression_cue_masks
    >>> masks, labels = expression_cue_masks(7, seed=0)
    >>> masks.shape, bool(0 < masks.mean() < 0.5)
    ((7, 48, 48), True)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ferkit.data.dataset import FACE_SIZE
from ferkit.data.synth import _drawing_plan
from ferkit.data.synth_canvas import SUPERSAMPLE, FaceRandom
from ferkit.data.synth_drawing import draw_face, occlude_face, warp_face

__all__ = ["expression_cue_masks"]


def _replayed(random: FaceRandom, step):
    """Run ``step(random)`` and rewind: the next step reuses the same random numbers."""
    position = random._position
    result = step(random)
    random._position = position
    return result


def expression_cue_masks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per face of ``generate_faces(n, seed)``, the fraction of each pixel its cue covers.

    Returns:
        ``(masks, labels)``: float32 ``(n, 48, 48)`` in [0, 1] (1: the pixel lies entirely on
        a brow, eye, mouth or Disgust's nose wrinkles, not hidden by an occluder) and the same
        labels as :func:`ferkit.data.synth.generate_faces`.

    Example:
        >>> from ferkit.data.synth import generate_faces
        >>> masks, labels = expression_cue_masks(14, seed=3)
        >>> bool((labels == generate_faces(14, seed=3)[1]).all())
        True
    """
    # The same draws, in the same order, as generate_faces.
    _, labels, face_uniforms, occluded = _drawing_plan(n, seed)

    side = FACE_SIZE * SUPERSAMPLE
    masks = np.empty((n, FACE_SIZE, FACE_SIZE), dtype=np.float32)
    for index in range(n):
        random = FaceRandom(face_uniforms[index])
        mask = Image.new("L", (side, side), 0)
        face = draw_face(int(labels[index]), random, cue_mask=mask)
        mask = _replayed(random, lambda replay, image=mask: warp_face(image, replay, fill=0))
        warp_face(face, random, fill=face.getpixel((0, 0)))
        if occluded[index]:
            # The occluder's gray is random (it may be 0 or 255): draw it on a black and on a
            # white sheet; the pixels that changed on either are hidden.
            sheets = [Image.new("L", (side, side), value) for value in (0, 255)]
            for sheet in sheets:
                _replayed(random, lambda replay, image=sheet: occlude_face(image, replay))
            hidden = (np.asarray(sheets[0]) != 0) | (np.asarray(sheets[1]) != 255)
            mask = Image.fromarray(np.where(hidden, 0, np.asarray(mask)).astype(np.uint8))
        masks[index] = np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0
    return masks, labels
