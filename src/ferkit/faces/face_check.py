"""The face check: a small CNN that tells a detected face from a detector's false face.

YuNet scores some non-faces as high as real faces (a page of handwriting at 0.79, a cat at
0.36-0.58) and some faint real faces below its usual threshold, so no single score threshold
gives exactly one face per single-face photo. The face check looks at each detection's
*aligned* 48x48 crop (the classifier's input) and answers "is this a human face framed as
FER2013's faces are?". With it on, the pipeline asks YuNet for more candidates (a lower score
threshold, stored in the check's card) and keeps those the check accepts.

The network and its threshold ship inside the package (``pretrained/face-check.*``): weights as
safetensors, a JSON card with the recipe, the thresholds and what was measured. It was trained by
``benchmarks/experiments/train_face_check.py`` on FER2013 *Training* faces (positives, also pasted
into generated scenes and cropped through YuNet and alignment) against generated non-faces (strokes,
blobs, noise, face parts, shuffled faces) and YuNet's own false faces on generated scenes: no
benchmark photo and no validation face was used. Its logit threshold rejects 1 % of held-out
Training faces as YuNet finds them in real pictures the benchmarks do not use; YuNet's score
threshold (0.3) was set on the validation scenes (docs/benchmarks.md, "The face check").

Where the check leaves a photo with no face, the pipeline looks a second time, in copies of
the photo turned by the card's ``search_angles`` (YuNet finds some faces only there), keeping
candidates YuNet scores at least ``search_score_threshold`` that the check accepts; the angles
were chosen by ``benchmarks/experiments/face_search.py`` on the same kind of non-benchmark pictures.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from ferkit.faces.detection import YUNET_SCORE_THRESHOLD
from ferkit.utils.errors import FerkitError

#: The bundled face check's files (``.safetensors`` weights, ``.json`` card).
FACE_CHECK_STEM = Path(__file__).resolve().parents[1] / "pretrained" / "face-check"
#: Side of the square crop the check reads, pixels (the classifier's aligned crop).
FACE_CHECK_SIZE = 48


def face_check_network(width: int = 24):
    """The face check's CNN: four conv-BN-ReLU blocks (three 2x poolings), average pool, one logit.

    Args:
        width: channels of the first block (then 2x, 4x, 4x).

    Example:
        >>> import torch
        >>> face_check_network(8)(torch.zeros(2, 1, 48, 48)).shape
        torch.Size([2, 1])
    """
    from torch import nn

    def block(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        )

    return nn.Sequential(
        block(1, width), nn.MaxPool2d(2),
        block(width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.MaxPool2d(2),
        block(4 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * width, 1),
    )  # fmt: skip


def standardize_crops(crops: np.ndarray):
    """uint8 crops (N, H, W) → float tensor (N, 1, H, W), each crop zero-mean, unit contrast.

    Per-crop standardisation makes the check indifferent to exposure and contrast (the
    faint faces YuNet scores low are still faces); the +4 keeps flat crops from being
    amplified into noise.

    Example:
        >>> standardize_crops(np.full((1, 4, 4), 9, np.uint8)).abs().max().item()
        0.0
    """
    import torch

    # A copy: the crops may be a read-only array.
    images = torch.from_numpy(np.array(crops, np.float32))[:, None]
    mean = images.mean((2, 3), keepdim=True)
    spread = images.std((2, 3), keepdim=True)
    return (images - mean) / (spread + 4.0)


class FaceCheck:
    """A loaded face check: :meth:`logits` and :meth:`accepts` over aligned 48x48 crops.

    Args:
        stem: weights + card stem (default: the bundled check).

    Raises:
        FerkitError: the files are missing or not a face check.

    Example:
        >>> check = FaceCheck()
        >>> check.accepts(np.zeros((1, 48, 48), np.uint8)).tolist()  # a black square
        [False]
    """

    def __init__(self, stem: str | os.PathLike = FACE_CHECK_STEM):
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        stem = Path(stem)
        try:
            self.card = json.loads(stem.with_suffix(".json").read_text())
            self.network = face_check_network(self.card["width"])
            self.network.load_state_dict(load_file(stem.with_suffix(".safetensors")))
        except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as error:
            raise FerkitError(f"{stem}: not a usable face check ({error})") from error
        self.network.eval()
        #: Crops whose logit is below this are not faces (chosen by the training script).
        self.threshold = float(self.card["threshold"])
        #: YuNet's score threshold to use with this check (more candidates than without).
        self.detector_score_threshold = float(self.card["detector_score_threshold"])
        #: Where the check leaves a photo with no face, the pipeline looks again in copies
        #: turned by these angles (degrees; none for cards without them).
        self.search_angles = tuple(float(angle) for angle in self.card.get("search_angles", ()))
        #: YuNet's score threshold in that second look (stricter: more looks, more chances
        #: for a false face).
        self.search_score_threshold = float(
            self.card.get("search_score_threshold", YUNET_SCORE_THRESHOLD)
        )
        self._torch = torch

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """One "face" logit per uint8 crop (N, 48, 48); higher is more face-like."""
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.shape[1:] != (FACE_CHECK_SIZE, FACE_CHECK_SIZE):
            raise FerkitError(
                f"the face check reads (N, {FACE_CHECK_SIZE}, {FACE_CHECK_SIZE}) crops, "
                f"got shape {crops.shape}"
            )
        if not len(crops):
            return np.zeros(0, np.float32)
        with self._torch.inference_mode():
            return self.network(standardize_crops(crops))[:, 0].numpy()

    def accepts(self, crops: np.ndarray) -> np.ndarray:
        """Boolean mask: which crops are faces."""
        return self.logits(crops) >= self.threshold


@functools.lru_cache(maxsize=1)
def bundled_face_check() -> FaceCheck:
    """The bundled :class:`FaceCheck`, loaded once per process (it is read-only)."""
    return FaceCheck()
