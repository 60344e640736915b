"""Face detection for photos: find faces, then crop them for the eval preprocessing.

One interface, several detectors (``create_detector(name)``):

- ``haar``: OpenCV's frontal-face Haar cascade, shipped inside ``opencv-python-headless`` 4.x;
  offline, fast, the default;
- ``yunet``: OpenCV's ``FaceDetectorYN`` with a YuNet ONNX file the user provides;
- ``none``: the whole image is one face (already-cropped faces, FER2013-style).

Large images are downscaled for detection and boxes are mapped back to the original pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError
from ferkit.preprocessing import FACE_SIZE, to_face_array

DETECTORS = ("haar", "yunet", "none")
#: Images whose longer side exceeds this are downscaled before detection (pixels).
DEFAULT_MAX_SIDE = 1280


@dataclass(frozen=True)
class FaceBox:
    """A detected face in original-image pixels: top-left corner, size and detector score."""

    x: int
    y: int
    width: int
    height: int
    score: float

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height,
                "score": self.score}  # fmt: skip


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(image no larger than ``max_side``, factor that maps its pixels back to the original)."""
    import cv2

    longest = max(image.shape[:2])
    if longest <= max_side:
        return image, 1.0
    factor = max_side / longest
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), 1.0 / factor


def _scaled_box(box, score: float, factor: float) -> FaceBox:
    x, y, width, height = (float(value) * factor for value in box[:4])
    return FaceBox(round(x), round(y), round(width), round(height), float(score))


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (offline; the cascade ships with OpenCV 4.x wheels).

    The score is the cascade's level weight: higher is more face-like (about 0-10).

    Example:
        >>> import numpy as np
        >>> HaarDetector().detect(np.zeros((100, 100), np.uint8))
        []
    """

    name = "haar"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_side: int = DEFAULT_MAX_SIDE,
    ):
        import cv2

        cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise FerkitError(
                f"{cascade_path}: Haar cascade missing; install opencv-python-headless 4.x "
                "(OpenCV 5 wheels no longer ship the cascades)"
            )
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side = min_size, max_side

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a uint8 gray or RGB image, largest first."""
        small, factor = _downscale(_gray(np.asarray(image)), self.max_side)
        boxes, _, weights = self.cascade.detectMultiScale3(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        faces = [_scaled_box(box, weight, factor) for box, weight in zip(boxes, weights)]
        return sorted(faces, key=lambda face: face.width * face.height, reverse=True)


class YuNetDetector:
    """OpenCV's ``FaceDetectorYN`` (YuNet, a small CNN detector) from a local ONNX file."""

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None,
        score_threshold: float = 0.6,
        max_side: int = DEFAULT_MAX_SIDE,
    ):
        import cv2

        if not model_path or not Path(model_path).is_file():
            raise FerkitError(
                f"detector 'yunet' needs its model file (--detector-model PATH); "
                f"{model_path or 'none given'} not found. Get face_detection_yunet_2023mar.onnx "
                "from the OpenCV model zoo (opencv/opencv_zoo, models/face_detection_yunet)"
            )
        try:
            self.detector = cv2.FaceDetectorYN.create(
                str(model_path), "", (320, 320), score_threshold
            )
        except cv2.error as error:
            raise FerkitError(f"{model_path}: not a YuNet ONNX model ({error})") from error
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a uint8 gray or RGB image, largest first."""
        import cv2

        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        else:  # YuNet expects BGR
            image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)
        small, factor = _downscale(image, self.max_side)
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, detections = self.detector.detect(small)
        faces = [] if detections is None else [
            _scaled_box(row[:4], row[-1], factor) for row in detections
        ]  # fmt: skip
        return sorted(faces, key=lambda face: face.width * face.height, reverse=True)


class WholeImageDetector:
    """``none``: the image already is a face crop.

    Example:
        >>> import numpy as np
        >>> WholeImageDetector().detect(np.zeros((40, 30), np.uint8))
        [FaceBox(x=0, y=0, width=30, height=40, score=1.0)]
    """

    name = "none"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """One box covering the image."""
        height, width = np.asarray(image).shape[:2]
        return [FaceBox(0, 0, width, height, 1.0)]


def create_detector(name: str = "haar", model_path: str | os.PathLike | None = None):
    """Build a detector by name (``haar``, ``yunet``, ``none``).

    Example:
        >>> create_detector("none").name
        'none'
    """
    if name == "haar":
        return HaarDetector()
    if name == "yunet":
        return YuNetDetector(model_path)
    if name == "none":
        return WholeImageDetector()
    raise FerkitError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")


def crop_face(
    image: np.ndarray, box: FaceBox, margin: float = 0.2, size: int = FACE_SIZE
) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin``, edge-padded, as a uint8 face.

    Goes through :func:`ferkit.preprocessing.to_face_array` (gray, resize), the eval
    preprocessing every model uses.

    Example:
        >>> import numpy as np
        >>> crop_face(np.zeros((100, 80, 3), np.uint8), FaceBox(10, 20, 30, 30, 1.0)).shape
        (48, 48)
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    # A box outside the image (bad input) is moved to the nearest position inside it.
    box = FaceBox(min(max(box.x, -box.width + 1), width - 1),
                  min(max(box.y, -box.height + 1), height - 1), box.width, box.height,
                  box.score)  # fmt: skip
    side = max(1, round(max(box.width, box.height) * (1.0 + margin)))
    center_x, center_y = box.x + box.width / 2, box.y + box.height / 2
    left, top = round(center_x - side / 2), round(center_y - side / 2)
    # Pad by replicating edge pixels where the square leaves the image.
    pad_top, pad_left = max(0, -top), max(0, -left)
    pad_bottom, pad_right = max(0, top + side - height), max(0, left + side - width)
    region = image[max(0, top) : min(height, top + side), max(0, left) : min(width, left + side)]
    if pad_top or pad_left or pad_bottom or pad_right:
        padding = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (image.ndim - 2)
        region = np.pad(region, padding, mode="edge")
    return to_face_array(region, size)
