"""Face detection for photos: find faces, then crop them for the eval preprocessing.

One interface, several detectors (``create_detector(name)``):

- ``haar``: OpenCV's frontal-face Haar cascade, shipped inside ``opencv-python-headless`` 4.x;
  offline, the default; ``haar-fast``: the same cascade on a smaller image with coarser scale
  steps (about 6x faster, lower recall on small faces);
- ``yunet``: OpenCV's ``FaceDetectorYN`` with a YuNet ONNX file: the user's, or OpenCV zoo's
  ``face_detection_yunet_2023mar.onnx`` from the user cache, downloaded there once (SHA-256
  checked) only when the user allows it;
- ``none``: the whole image is one face (already-cropped faces, FER2013-style).

Large images are downscaled for detection and boxes are mapped back to the original pixels.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.choices import DETECTORS  # the one list, shared with the CLI
from ferkit.errors import FerkitError
from ferkit.preprocessing import FACE_SIZE, to_face_array

#: ``haar-fast``: the Haar setting for real time, chosen on benchmarks/detection.py's real-photo
#: grid (docs/benchmarks.md): a 640x480 photo in ~15 ms instead of ~88 ms, for 62.5 % recall
#: instead of 72.8 % (faces under ~48 px in a 640-px photo are missed).
FAST_HAAR = {"scale_factor": 1.2, "min_neighbors": 3, "max_side": 320}
#: OpenCV's frontal-face cascades (``haarcascade_frontalface_<name>.xml``) HaarDetector can load.
HAAR_CASCADES = ("default", "alt", "alt2")
#: Images whose longer side exceeds this are downscaled before detection (pixels).
DEFAULT_MAX_SIDE = 1280

#: OpenCV zoo's YuNet model, used when ``--detector yunet`` comes without ``--detector-model``.
YUNET_FILE_NAME = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/" + YUNET_FILE_NAME
)
# Pinned because the URL follows a branch: a changed or damaged file must never be loaded.
# Provenance: not computed from the file here (the build machines cannot reach GitHub); it is
# the digest (of a 232,589-byte file) that many unrelated projects pin for this exact file,
# among them four PyPI packages (alchemyface 1.2.0, detekface 0.1.0, moca-face-matcher 0.2.2,
# unicorner-face-detector 0.1.0), some fetching it from OpenCV's Hugging Face mirror instead.
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
#: Environment variable that, set to ``1``, allows the one-time YuNet download.
ALLOW_DOWNLOAD_VARIABLE = "FERKIT_ALLOW_DOWNLOAD"
#: Seconds without an answer before the download gives up.
DOWNLOAD_TIMEOUT = 60


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


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _how_to_get_yunet(target: Path) -> str:
    return (
        f"download {YUNET_URL} yourself and put it at {target}, or pass any YuNet ONNX file "
        "with --detector-model PATH"
    )


def download_allowed(allow_download: bool = False) -> bool:
    """Whether the YuNet model may be downloaded: asked for, or ``$FERKIT_ALLOW_DOWNLOAD=1``.

    Example:
        >>> download_allowed(True)
        True
    """
    return allow_download or os.environ.get(ALLOW_DOWNLOAD_VARIABLE) == "1"


def _download_yunet(target: Path) -> Path:
    """Stream :data:`YUNET_URL` to a temporary file beside ``target``, check it, rename it."""
    from ferkit.io import atomic_write

    def write(temporary: str) -> None:
        digest = hashlib.sha256()
        try:
            with (
                urllib.request.urlopen(YUNET_URL, timeout=DOWNLOAD_TIMEOUT) as response,
                open(temporary, "wb") as handle,
            ):
                while block := response.read(1 << 16):
                    digest.update(block)
                    handle.write(block)
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise FerkitError(
                f"could not download the YuNet face detector from {YUNET_URL} ({error}); "
                + _how_to_get_yunet(target)
            ) from error
        if digest.hexdigest() != YUNET_SHA256:
            # atomic_write deletes the temporary file: nothing unchecked stays in the cache.
            raise FerkitError(
                f"{YUNET_URL}: downloaded file has SHA-256 {digest.hexdigest()}, expected "
                f"{YUNET_SHA256}; it was not kept. Try again later, or " + _how_to_get_yunet(target)
            )

    try:
        return atomic_write(target, write)
    except OSError as error:  # the cache folder cannot be created or written
        raise FerkitError(
            f"could not save the YuNet face detector in {target.parent} ({error}); "
            + _how_to_get_yunet(target)
        ) from error


def yunet_model_path(allow_download: bool = False) -> Path:
    """OpenCV zoo's YuNet model in the user cache, downloaded there first if allowed.

    The file lives at ``<cache>/models/face_detection_yunet_2023mar.onnx`` (``<cache>`` is
    ``$FERKIT_CACHE_DIR``, else ``~/.cache/ferkit``) and is checked against
    :data:`YUNET_SHA256` before every use, so a damaged or replaced file is never loaded.

    Args:
        allow_download: fetch the file from :data:`YUNET_URL` when it is missing or damaged
            (``$FERKIT_ALLOW_DOWNLOAD=1`` allows it too).

    Raises:
        FerkitError: the file is missing or damaged and may not be downloaded, the download
            failed, or the downloaded file does not have the pinned SHA-256.
    """
    from ferkit.data.cache import default_cache_dir

    target = default_cache_dir() / "models" / YUNET_FILE_NAME
    problem = f"{target} not found"
    if target.is_file():
        actual = _sha256(target)
        if actual == YUNET_SHA256:
            return target
        problem = f"{target} has SHA-256 {actual}, expected {YUNET_SHA256} (damaged or replaced)"
    if download_allowed(allow_download):
        return _download_yunet(target)
    raise FerkitError(
        f"detector 'yunet' needs the YuNet model {YUNET_FILE_NAME}: {problem}. Allow a "
        f"one-time download into the cache with --download-detector (or "
        f"{ALLOW_DOWNLOAD_VARIABLE}=1), or " + _how_to_get_yunet(target)
    )


class YuNetDetector:
    """OpenCV's ``FaceDetectorYN`` (YuNet, a small CNN detector) from an ONNX file.

    Args:
        model_path: the user's YuNet ONNX file (any YuNet version; not hash-checked), or None
            for OpenCV zoo's model from the user cache (see :func:`yunet_model_path`).
        score_threshold: faces scoring lower are dropped (0-1).
        max_side: larger images are downscaled for detection.
        allow_download: with no ``model_path``, download the zoo model if it is not cached.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        score_threshold: float = 0.6,
        max_side: int = DEFAULT_MAX_SIDE,
        allow_download: bool = False,
    ):
        import cv2

        if model_path is None or str(model_path) == "":
            model_path = yunet_model_path(allow_download)
        elif not Path(model_path).is_file():
            raise FerkitError(
                f"detector 'yunet' needs its model file (--detector-model PATH); "
                f"{model_path} not found. Get {YUNET_FILE_NAME} from the OpenCV model zoo "
                f"(opencv/opencv_zoo, models/face_detection_yunet: {YUNET_URL})"
            )
        try:
            self.detector = cv2.FaceDetectorYN.create(
                str(model_path), "", (320, 320), score_threshold
            )
        except cv2.error as error:
            raise FerkitError(f"{model_path}: not a YuNet ONNX model ({error})") from error
        self.model_path = Path(model_path)
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


def create_detector(
    name: str = "haar",
    model_path: str | os.PathLike | None = None,
    allow_download: bool = False,
):
    """Build a detector by name (``haar``, ``haar-fast``, ``yunet``, ``none``).

    Args:
        name: which detector.
        model_path: ``yunet``'s ONNX file; None for OpenCV zoo's model from the user cache.
        allow_download: ``yunet`` without ``model_path`` may download the zoo model once.

    Example:
        >>> create_detector("none").name
        'none'
    """
    if name == "haar":
        return HaarDetector()
    if name == "haar-fast":
        detector = HaarDetector(**FAST_HAAR)
        detector.name = "haar-fast"
        return detector
    if name == "yunet":
        return YuNetDetector(model_path, allow_download=allow_download)
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
