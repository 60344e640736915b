"""Face detection for photos: find faces (and their landmarks), then crop them.

One interface, several detectors (``create_detector(name)``):

- ``yunet`` (the default): OpenCV's ``FaceDetectorYN`` with a YuNet ONNX file, which also gives
  5 landmarks per face (eyes, nose tip, mouth corners). The file is found by
  :func:`ferkit.faces.detector_files.resolve_yunet_model` (given path, ``$FERKIT_YUNET_MODEL``, the
  user cache, a one-time checked download); when it cannot be had, ``create_detector`` falls
  back to Haar with one :class:`~ferkit.utils.errors.FerkitWarning` that says how to install it;
- ``haar``: OpenCV's frontal-face Haar cascade, shipped inside ``opencv-python-headless`` 4.x
  (no landmarks); ``haar-fast``: the same cascade on a smaller image with coarser scale steps
  (about 6x faster, lower recall on small faces);
- ``none``: the whole image is one face (already-cropped faces, FER2013-style).

Large images are downscaled for detection and boxes are mapped back to the original pixels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.data.preprocessing import FACE_SIZE, to_face_array

# YUNET_FILE_NAME is re-exported: callers knew it from here before the file code moved.
from ferkit.faces.detector_files import YUNET_FILE_NAME, DetectorUnavailable, resolve_yunet_model  # noqa: F401
from ferkit.utils.choices import DETECTORS  # the one list, shared with the CLI
from ferkit.utils.errors import FerkitError, FerkitWarning

#: ``haar-fast``: the Haar setting for real time, chosen on benchmarks/detection.py's real-photo
#: grid (docs/benchmarks.md): a 640x480 photo in ~15 ms instead of ~88 ms, for 62.5 % recall
#: instead of 72.8 % (faces under ~48 px in a 640-px photo are missed).
FAST_HAAR = {"scale_factor": 1.2, "min_neighbors": 3, "max_side": 320}
#: OpenCV's frontal-face cascades (``haarcascade_frontalface_<name>.xml``) HaarDetector can load.
HAAR_CASCADES = ("default", "alt", "alt2")
#: Images whose longer side exceeds this are downscaled before detection (pixels).
DEFAULT_MAX_SIDE = 1280

#: The detector of predict, serve, the Python API and the page: YuNet, falling back to Haar
#: with one warning when its model file cannot be had (docs/benchmarks.md: 86 % recall and
#: 0.07 false faces a photo against Haar's 75 % and 0.61).
DEFAULT_DETECTOR = "yunet"
#: YuNet's score threshold on its own (OpenCV's sample default); with the face check on, the
#: pipeline asks for more candidates (:mod:`ferkit.faces.face_check`'s card).
YUNET_SCORE_THRESHOLD = 0.6
#: Names of YuNet's 5 landmarks, in its output order (the subject's right eye is on the
#: image's left in a frontal face).
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


@dataclass(frozen=True)
class FaceBox:
    """A detected face in original-image pixels: top-left corner, size, detector score and,
    from YuNet, 5 landmarks ((x, y) in :data:`LANDMARK_NAMES` order; None from Haar)."""

    x: int
    y: int
    width: int
    height: int
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict:
        """JSON-able form of the box (landmarks: :meth:`landmarks_dict`)."""
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height,
                "score": self.score}  # fmt: skip

    def scaled(self, factor: float) -> FaceBox:
        """The same face in pixels ``factor`` times as large (one found in a downscaled copy,
        in the photo's pixels); the box itself when ``factor`` is 1.

        Example:
            >>> FaceBox(10, 20, 30, 30, 0.9, ((15.0, 30.5),) * 5).scaled(2.0).landmarks[0]
            (30.0, 61.0)
        """
        if factor == 1:
            return self
        corner_and_size = (self.x, self.y, self.width, self.height)
        return _scaled_box(corner_and_size, self.score, factor, self.landmarks)

    def landmarks_dict(self) -> dict[str, list[float]] | None:
        """``{"right_eye": [x, y], ...}`` rounded to 0.1 px, or None without landmarks.

        Example:
            >>> FaceBox(0, 0, 9, 9, 1.0, ((1, 2),) * 5).landmarks_dict()["nose"]
            [1.0, 2.0]
        """
        if self.landmarks is None:
            return None
        return {name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks)}  # fmt: skip


def intersection_over_union(first, second) -> float:
    """Overlap of two boxes (:class:`FaceBox` or ``(x, y, width, height)``): 0 to 1.

    Example:
        >>> intersection_over_union((0, 0, 10, 10), FaceBox(5, 0, 10, 10, 1.0))
        0.3333333333333333
    """
    boxes = [
        (box.x, box.y, box.width, box.height) if isinstance(box, FaceBox) else tuple(box)
        for box in (first, second)
    ]
    (x1, y1, w1, h1), (x2, y2, w2, h2) = boxes
    width = max(0, min(x1 + w1, x2 + w2) - max(x1, x2))
    height = max(0, min(y1 + h1, y2 + h2) - max(y1, y2))
    overlap = width * height
    return overlap / (w1 * h1 + w2 * h2 - overlap)


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def downscale(
    image: np.ndarray, max_side: int | None, *, factor: float = 1.0
) -> tuple[np.ndarray, float]:
    """(image no larger than ``max_side``, factor that maps its pixels back to the original).

    Shrunk by area averaging; ``image`` itself when it is small enough (or ``max_side`` is
    None). ``factor``: what ``image``'s own pixels map back by (a copy of a copy). Faces found
    in the copy map back with :func:`detect_in_copy` (or :meth:`FaceBox.scaled`).

    Example:
        >>> import numpy as np
        >>> copy, factor = downscale(np.zeros((300, 1280), np.uint8), 640)
        >>> copy.shape, factor
        ((150, 640), 2.0)
    """
    import cv2

    longest = max(image.shape[:2])
    if max_side is None or longest <= max_side:
        return image, factor
    shrink = max_side / longest
    size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor / shrink


def detect_in_copy(detect, copy: tuple[np.ndarray, float]) -> list[FaceBox]:
    """The faces ``detect`` (image → boxes) finds in a :func:`downscale` copy, in the pixels
    of the image it was made from.

    Example:
        >>> import numpy as np
        >>> copy = downscale(np.zeros((960, 1280), np.uint8), 640)
        >>> detect_in_copy(WholeImageDetector().detect, copy)
        [FaceBox(x=0, y=0, width=1280, height=960, score=1.0, landmarks=None)]
    """
    pixels, factor = copy
    return [box.scaled(factor) for box in detect(pixels)]


def _scaled_box(box, score: float, factor: float, landmarks=None) -> FaceBox:
    x, y, width, height = (float(value) * factor for value in box[:4])
    if landmarks is not None:
        landmarks = tuple((float(lx) * factor, float(ly) * factor)
                          for lx, ly in np.asarray(landmarks).reshape(5, 2))  # fmt: skip
    return FaceBox(round(x), round(y), round(width), round(height), float(score), landmarks)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (offline; the cascade ships with OpenCV 4.x wheels).

    The score is the cascade's level weight: higher is more face-like (about 0-10).

    Args:
        scale_factor: size step between the scales searched (1.1 = 10 % larger each time).
        min_neighbors: overlapping raw hits a face needs to be kept (higher: fewer false
            positives, lower recall).
        min_size: smallest face searched, in pixels of the (downscaled) detection image.
        max_side: larger images are downscaled to this longest side before detection.
        cascade: which of OpenCV's frontal-face cascades (:data:`HAAR_CASCADES`).

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
        cascade: str = "default",
    ):
        import cv2

        if cascade not in HAAR_CASCADES:
            raise FerkitError(
                f"unknown Haar cascade {cascade!r}; choose one of: {', '.join(HAAR_CASCADES)}"
            )
        cascade_path = Path(cv2.data.haarcascades) / f"haarcascade_frontalface_{cascade}.xml"
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise FerkitError(
                f"{cascade_path}: Haar cascade missing; install opencv-python-headless 4.x "
                "(OpenCV 5 wheels no longer ship the cascades)"
            )
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side, self.cascade_name = min_size, max_side, cascade

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a uint8 gray or RGB image, largest first."""
        small, factor = downscale(_gray(np.asarray(image)), self.max_side)
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
    """YuNet (a small CNN face detector) from an ONNX file, with 5 landmarks per face.

    Run by ONNX Runtime when the ``onnx`` extra is installed (:mod:`ferkit.faces.yunet`: the same
    detections as OpenCV's ``FaceDetectorYN``, about twice as fast), else by
    ``FaceDetectorYN``. ``engine`` says which.

    Args:
        model_path: a YuNet ONNX file (any YuNet version; not hash-checked), or None for the
            lookup of :func:`ferkit.faces.detector_files.resolve_yunet_model`.
        score_threshold: faces scoring lower are dropped (0-1).
        max_side: larger images are downscaled for detection.
        offline: with no ``model_path``, never download the zoo model.

    Raises:
        DetectorUnavailable: no file given and none cached or downloadable.
        FerkitError: a given file is missing or not a YuNet model.

    Example:
        >>> detector = YuNetDetector("face_detection_yunet_2023mar.onnx")  # doctest: +SKIP
        >>> detector.detect(photo)[0].landmarks  # doctest: +SKIP
        ((200.1, 101.8), (247.1, 102.6), (220.4, 124.5), (198.6, 142.8), (239.7, 143.6))
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        score_threshold: float = YUNET_SCORE_THRESHOLD,
        max_side: int = DEFAULT_MAX_SIDE,
        offline: bool = False,
        progress: bool = True,
    ):
        import cv2

        from ferkit.faces.yunet import YuNetOnnxRuntime, onnxruntime_available

        model_path = resolve_yunet_model(model_path, offline, progress)
        try:
            if onnxruntime_available():
                self.runner, self.engine = (
                    YuNetOnnxRuntime(model_path, score_threshold),
                    "onnxruntime",
                )
            else:
                self.runner = cv2.FaceDetectorYN.create(
                    str(model_path), "", (320, 320), score_threshold
                )
                self.engine = "opencv"
        except Exception as error:  # cv2.error, onnx/onnxruntime errors: not a YuNet file
            raise FerkitError(f"{model_path}: not a YuNet ONNX model ({error})") from error
        self.model_path = Path(model_path)
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a uint8 gray or RGB image, largest first."""
        import cv2

        # Shrunk first, then made BGR (the same pixels: both act per channel), so a large
        # photo is converted at the detection size.
        small, factor = downscale(np.asarray(image), self.max_side)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        else:  # YuNet expects BGR
            small = cv2.cvtColor(np.ascontiguousarray(small[..., :3]), cv2.COLOR_RGB2BGR)
        if self.engine == "onnxruntime":
            detections = self.runner.detect(small)
        else:
            self.runner.setInputSize((small.shape[1], small.shape[0]))
            _, detections = self.runner.detect(small)
        faces = [] if detections is None else [
            _scaled_box(row[:4], row[-1], factor, row[4:14]) for row in detections
        ]  # fmt: skip
        return sorted(faces, key=lambda face: face.width * face.height, reverse=True)


class WholeImageDetector:
    """``none``: the image already is a face crop.

    Example:
        >>> import numpy as np
        >>> WholeImageDetector().detect(np.zeros((40, 30), np.uint8))
        [FaceBox(x=0, y=0, width=30, height=40, score=1.0, landmarks=None)]
    """

    name = "none"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """One box covering the image."""
        height, width = np.asarray(image).shape[:2]
        return [FaceBox(0, 0, width, height, 1.0)]


def _fallback_to_haar(problem: DetectorUnavailable) -> HaarDetector:
    warnings.warn(
        f"using the Haar face detector instead of YuNet (fewer faces found, no landmarks, no "
        f"alignment): {problem}",
        FerkitWarning,
        stacklevel=3,
    )
    return HaarDetector()


def create_detector(
    name: str = DEFAULT_DETECTOR,
    model_path: str | os.PathLike | None = None,
    offline: bool = False,
    fallback: bool = True,
    score_threshold: float | None = None,
    progress: bool = True,
):
    """Build a detector by name (``yunet``, ``haar``, ``haar-fast``, ``none``).

    Args:
        name: which detector.
        model_path: ``yunet``'s ONNX file; None for the lookup (``$FERKIT_YUNET_MODEL``, the
            user cache, a one-time download).
        offline: ``yunet`` never downloads its file.
        fallback: when YuNet's file cannot be had, return a Haar detector and warn once
            (:class:`~ferkit.utils.errors.FerkitWarning`) instead of raising
            :class:`~ferkit.faces.detector_files.DetectorUnavailable`. The returned detector's
            ``name`` always says which one runs.
        score_threshold: ``yunet`` drops faces scoring lower (0-1; None: 0.6, its setting
            without a face check; the pipeline passes the face check's lower one).
        progress: show a progress bar if ``yunet``'s file is downloaded.

    Example:
        >>> create_detector("none").name
        'none'
    """
    if model_path is not None and name != "yunet":
        warnings.warn(
            f"--detector-model {model_path} is a YuNet file; not used with --detector {name}",
            FerkitWarning,
            stacklevel=2,
        )
    if name == "haar":
        return HaarDetector()
    if name == "haar-fast":
        detector = HaarDetector(**FAST_HAAR)
        detector.name = "haar-fast"
        return detector
    if name == "yunet":
        try:
            threshold = YUNET_SCORE_THRESHOLD if score_threshold is None else score_threshold
            return YuNetDetector(model_path, threshold, offline=offline, progress=progress)
        except DetectorUnavailable as problem:
            if not fallback:
                raise
            return _fallback_to_haar(problem)
    if name == "none":
        return WholeImageDetector()
    raise FerkitError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")


def crop_face(
    image: np.ndarray, box: FaceBox, margin: float = 0.2, size: int = FACE_SIZE
) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin``, edge-padded, as a uint8 face.

    Goes through :func:`ferkit.data.preprocessing.to_face_array` (gray, resize), the eval
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


def detect_rotated(detector, image: np.ndarray, angle: float) -> list[FaceBox]:
    """Faces ``detector`` finds in ``image`` turned by ``angle`` degrees, in ``image``'s pixels.

    The turned copy keeps the whole image (its canvas grows to hold the corners; the border
    repeats edge pixels). Landmarks map back exactly; a box comes back as the upright box of
    the same size around the mapped centre. YuNet finds some faces only in a turned copy
    (the pipeline looks there when it found none, :mod:`ferkit.faces.face_check`'s card).

    Args:
        detector: anything with ``detect(image) -> list[FaceBox]``.
        image: uint8 gray or RGB photo.
        angle: degrees, counter-clockwise (OpenCV's convention).

    Example:
        >>> import numpy as np
        >>> # The whole turned copy (40 wide, 60 high) as one box, centred on the photo's centre:
        >>> detect_rotated(WholeImageDetector(), np.zeros((40, 60), np.uint8), 90.0)
        [FaceBox(x=10, y=-10, width=40, height=60, score=1.0, landmarks=None)]
    """
    import cv2

    image = np.asarray(image)
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    cosine, sine = abs(matrix[0, 0]), abs(matrix[0, 1])
    # (The small tolerance keeps a right angle's 1e-16 of rounding from adding a pixel.)
    turned_width = int(np.ceil(height * sine + width * cosine - 1e-6))
    turned_height = int(np.ceil(height * cosine + width * sine - 1e-6))
    matrix[:, 2] += (turned_width - width) / 2, (turned_height - height) / 2
    turned = cv2.warpAffine(np.ascontiguousarray(image), matrix, (turned_width, turned_height),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    back = cv2.invertAffineTransform(matrix)
    faces = []
    for box in detector.detect(turned):
        centre = back[:, :2] @ (box.x + box.width / 2, box.y + box.height / 2) + back[:, 2]
        landmarks = None
        if box.landmarks is not None:
            points = np.asarray(box.landmarks, np.float64) @ back[:, :2].T + back[:, 2]
            landmarks = tuple(map(tuple, points))
        faces.append(FaceBox(round(centre[0] - box.width / 2), round(centre[1] - box.height / 2),
                             box.width, box.height, box.score, landmarks))  # fmt: skip
    return faces


def non_maximum_suppression(boxes: list[FaceBox], overlap: float = 0.3) -> list[FaceBox]:
    """``boxes`` without those overlapping a higher-scoring one by more than ``overlap`` (IoU).

    Example:
        >>> boxes = [FaceBox(0, 0, 10, 10, 0.5), FaceBox(1, 0, 10, 10, 0.9)]
        >>> non_maximum_suppression(boxes)
        [FaceBox(x=1, y=0, width=10, height=10, score=0.9, landmarks=None)]
    """
    import cv2

    if not boxes:
        return []
    kept = cv2.dnn.NMSBoxes([[box.x, box.y, box.width, box.height] for box in boxes],
                            [box.score for box in boxes], 0.0, overlap)  # fmt: skip
    return [boxes[index] for index in np.asarray(kept, int).reshape(-1)]
