"""The face pipeline of ``ferkit predict``: detect → align → crop → classify → track.

For each input the detector (YuNet by default) finds faces and their landmarks, each face is
aligned to FER2013's framing (or cropped square with a margin when it has no landmarks) and goes
through the eval preprocessing; crops from many images go through the model together. Results
come back per face (box, landmarks, detector score, emotion, all probabilities) and name the
detector that ran, as a table, JSON or CSV (:mod:`ferkit.inference.results`), and optionally
as annotated copies of the images and videos.
"""

from __future__ import annotations

import glob
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np

from ferkit.data.preprocessing import IMAGE_EXTENSIONS, read_photos, to_face_array
from ferkit.faces.alignment import face_crop
from ferkit.faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_SIDE,
    create_detector,
    detect_in_copy,
    detect_rotated,
    downscale,
    non_maximum_suppression,
)
from ferkit.faces.face_check import FACE_CHECK_SIZE, bundled_face_check
from ferkit.inference.abstention import check_min_confidence
from ferkit.inference.predictor import Predictor
from ferkit.inference.results import MediaResult, annotate, predictions_from
from ferkit.inference.tracking import (
    DEFAULT_SMOOTHING,
    FaceTracker,
    check_smoothing,
    track_faces,
    write_track_outputs,
)
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import atomic_write

#: Inference engine for predict and serve: torch | onnx | auto | bf16 | int8 (Predictor.from_run).
INFERENCE_BACKEND = "auto"

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: Images whose crops are classified together (bounded memory, one batched forward pass).
IMAGES_PER_CHUNK = 32
#: YuNet's first look: in a copy at most this long (its own limit: the faces found at full
#: size), the second in one at most SEARCH_SIDE long (the size it was tuned at); boxes and
#: landmarks map back to the photo, whose pixels give the crops. ``predict`` decodes JPEGs
#: reduced (1/2, 1/4, 1/8) to at least DECODE_SIDE (docs/deployment.md). None: full size.
DETECTION_SIDE, SEARCH_SIDE, DECODE_SIDE = DEFAULT_MAX_SIDE, 640, 1600


def expand_inputs(inputs) -> tuple[list[Path], list[str]]:
    """Files to analyse from paths, folders (recursive, by extension) and glob patterns.

    Returns:
        (files in input order, one error message per input that matched nothing).

    Example:
        >>> files, errors = expand_inputs(["/nonexistent/*.png"])
        >>> files, errors
        ([], ['/nonexistent/*.png: no such file, folder or matching files'])
    """
    extensions = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    files, errors = [], []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file() and candidate.suffix.lower() in extensions
            )
            if not found:
                errors.append(f"{path}: folder has no images or videos ({', '.join(extensions)})")
            files += found
        else:
            matches = sorted(Path(match) for match in glob.glob(item, recursive=True))
            matches = [
                match for match in matches if match.is_file() and match.suffix.lower() in extensions
            ]
            if not matches:
                errors.append(f"{item}: no such file, folder or matching files")
            files += matches
    return files, errors


class _VideoOutput:
    """The annotated copy of a video, written to a temporary name and renamed when complete."""

    def __init__(self, folder: Path | None, name: str, fps: float):
        self.folder, self.name, self.fps = folder, name, fps
        self.writer, self.temporary = None, None

    def write(self, frame: np.ndarray, result: MediaResult) -> None:
        import cv2

        if self.folder is None:
            return
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.temporary = self.folder / f".{self.name}.tmp.mp4"
            self.writer = cv2.VideoWriter(
                str(self.temporary), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                (frame.shape[1], frame.shape[0]),
            )  # fmt: skip
        self.writer.write(cv2.cvtColor(annotate(frame, result.faces), cv2.COLOR_RGB2BGR))

    def close(self, complete: bool) -> None:
        """Release the writer; keep the file when ``complete``, else remove it."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.temporary is not None:
            if complete:
                os.replace(self.temporary, self.folder / self.name)
            else:
                self.temporary.unlink(missing_ok=True)  # no half-written video stays behind


def _video_frames(capture, every: int, bar, counted: list[int]):
    """(index, RGB frame) of every ``every``-th frame of an open ``cv2.VideoCapture``;
    ``counted[0]`` and ``bar`` count every frame read."""
    import cv2

    while True:
        ok, frame = capture.read()
        if not ok:
            return
        index = counted[0]
        if index % every == 0:
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        counted[0] += 1
        bar.update(1)


class Analyzer:
    """A predictor plus a detector, loaded once, for many images and videos.

    Example:
        >>> analyzer = Analyzer("runs/demo", detector="none")  # doctest: +SKIP
        >>> analyzer.analyze_image(image).faces[0].label  # doctest: +SKIP
        'Happy'
    """

    def __init__(
        self,
        model: str | os.PathLike = "default",
        detector: str = DEFAULT_DETECTOR,
        detector_model: str | os.PathLike | None = None,
        margin: float = 0.2,
        device: str = "auto",
        tta: str | None = None,
        batch_size: int = 256,
        backend: str = INFERENCE_BACKEND,
        offline: bool = False,
        align: bool = True,
        min_confidence: float | None = None,
        face_check: bool = True,
        progress: bool = True,
    ):
        self.min_confidence = check_min_confidence(min_confidence)

        self.predictor = Predictor.from_run(model, device=device, tta=tta, backend=backend)
        # YuNet faces go through the face check (ferkit.faces.face_check), which was tuned together
        # with a lower YuNet threshold: more candidates, the false ones rejected.
        self.face_check = bundled_face_check() if face_check and detector == "yunet" else None
        self.score_threshold = self.face_check and self.face_check.detector_score_threshold
        # OpenCV detectors are not documented as thread-safe: each thread gets its own.
        self._local = threading.local()
        self._local.detector = create_detector(
            detector, detector_model, offline, score_threshold=self.score_threshold,
            progress=progress,
        )  # fmt: skip
        if self._local.detector.name != "yunet":  # fell back to Haar: no landmarks to check
            self.face_check = None
        # Threads' detectors reuse what this one resolved (yunet: the file checked or
        # downloaded once; haar after a fallback), so they never download, re-hash or re-warn.
        self.detector_name = self._local.detector.name
        self.detector_model = getattr(self._local.detector, "model_path", None)
        # A face crop given with --detector none is used as it is.
        self.margin = 0.0 if detector == "none" else margin
        self.align = align
        self.batch_size = batch_size

    @property
    def detector(self):
        """This thread's detector (created on first use in the thread)."""
        if not hasattr(self._local, "detector"):
            self._local.detector = create_detector(
                self.detector_name, self.detector_model, score_threshold=self.score_threshold
            )
        return self._local.detector

    def find_faces(self, images: list[np.ndarray]):
        """Per image: (faces found, their classifier crops, false faces the check rejected).

        With the face check, an image left with no face is searched again in copies turned
        by the check's ``search_angles`` (YuNet finds some faces, upright ones too, only
        there); the rejected count covers both looks. It is None when no face check ran
        (``face_check=False``, or a detector other than YuNet).

        Example:
            >>> boxes, crops, rejected = Analyzer("small").find_faces([photo])  # doctest: +SKIP
            >>> len(boxes[0]), crops[0][0].shape, rejected[0]  # doctest: +SKIP
            (1, (48, 48), 0)
        """
        side = DETECTION_SIDE if self.detector_name == "yunet" else None
        copies = [downscale(image, side) for image in images]
        boxes = [detect_in_copy(self.detector.detect, copy) for copy in copies]
        check_crops, rejected = None, [None] * len(images)
        if self.face_check is not None:
            boxes, check_crops, rejected = self._checked(images, boxes)
            if self.face_check.search_angles:
                self._look_again(images, copies, boxes, check_crops, rejected)
        return boxes, self._classifier_crops(images, boxes, check_crops), rejected

    def _look_again(self, images, copies, boxes, check_crops, rejected) -> None:
        """The check's second look, in place: YuNet in turned detection copies of images the first
        look left with no face (candidates scoring ``search_score_threshold`` or more)."""
        empty = [index for index, image_boxes in enumerate(boxes) if not image_boxes]
        least = self.face_check.search_score_threshold
        searched = {
            index: downscale(copies[index][0], SEARCH_SIDE, factor=copies[index][1])
            for index in empty
        }
        turned = [[box for angle in self.face_check.search_angles
                   for box in detect_in_copy(partial(detect_rotated, self.detector, angle=angle),
                                             searched[index])
                   if box.score >= least] for index in empty]  # fmt: skip
        found = zip(empty, *self._checked([images[index] for index in empty], turned))
        for index, image_boxes, image_crops, count in found:
            # One face found in several turned copies is kept once (the highest score).
            kept = non_maximum_suppression(image_boxes)
            pairs = [pair for pair in zip(image_boxes, image_crops) if pair[0] in kept]
            boxes[index] = [box for box, _ in pairs]
            check_crops[index] = [crop for _, crop in pairs]
            rejected[index] += count

    def _classifier_crops(self, images, boxes, check_crops) -> list[list[np.ndarray]]:
        """The classifier's crop of every face: aligned where it has landmarks and alignment
        is on, else the square box crop (the check's own crops when they are those)."""
        size = self.predictor.input_size
        if self.detector_name == "none":  # a whole-image "detection" is a face crop
            return [[to_face_array(image, size) for _ in image_boxes]
                    for image, image_boxes in zip(images, boxes)]  # fmt: skip
        if check_crops is not None and self.align and size == FACE_CHECK_SIZE:
            return check_crops  # the check read exactly the classifier's crops
        return [[face_crop(image, box, size, self.margin, self.align) for box in image_boxes]
                for image, image_boxes in zip(images, boxes)]  # fmt: skip

    def _checked(self, images: list[np.ndarray], boxes: list[list]):
        """(boxes the face check accepts, their aligned 48x48 crops, rejected count) per
        image, all crops checked in one batch."""
        check_crops = [[face_crop(image, box, FACE_CHECK_SIZE) for box in image_boxes]
                       for image, image_boxes in zip(images, boxes)]  # fmt: skip
        flat = [crop for image_crops in check_crops for crop in image_crops]
        keep = self.face_check.accepts(np.stack(flat)) if flat else np.zeros(0, bool)
        kept_boxes, kept_crops, rejected, position = [], [], [], 0
        for image_boxes, image_crops in zip(boxes, check_crops):
            kept = keep[position : position + len(image_boxes)]
            position += len(image_boxes)
            kept_boxes.append([box for box, accepted in zip(image_boxes, kept) if accepted])
            kept_crops.append([crop for crop, accepted in zip(image_crops, kept) if accepted])
            rejected.append(int(np.sum(~kept)))
        return kept_boxes, kept_crops, rejected

    def analyze_images(
        self, images: list[np.ndarray], sources: list[str], min_confidence: float | None = None
    ) -> list[MediaResult]:
        """Detect and classify faces in several images with one batched forward pass.

        ``min_confidence`` (default: the analyzer's) turns low-confidence faces into
        ``uncertain``. Thread-safe: the model is shared, the detector is per thread.
        """
        if min_confidence is None:
            min_confidence = self.min_confidence
        boxes, crops, rejected = self.find_faces(images)
        crops = [crop for image_crops in crops for crop in image_crops]
        faces = []
        if crops:
            probabilities = self.predictor.predict_proba(np.stack(crops), self.batch_size)
            every_box = [box for image_boxes in boxes for box in image_boxes]
            faces = predictions_from(
                probabilities, self.predictor.class_names, min_confidence, boxes=every_box
            )
        results, position = [], 0
        for image, image_boxes, source, image_rejected in zip(images, boxes, sources, rejected):
            image_faces = faces[position : position + len(image_boxes)]
            position += len(image_boxes)
            results.append(MediaResult(source, image.shape[1], image.shape[0], image_faces,
                                       detector=self.detector_name,
                                       rejected_faces=image_rejected))  # fmt: skip
        return results

    def analyze_image(
        self, image: np.ndarray, source: str = "<array>", min_confidence: float | None = None
    ) -> MediaResult:
        """Faces and emotions in one image array (gray or RGB)."""
        return self.analyze_images([np.asarray(image)], [source], min_confidence)[0]

    def analyze_video(
        self,
        path: Path,
        every: int = 1,
        save: Path | None = None,
        progress=True,
        output_name: str | None = None,
        smoothing: float = DEFAULT_SMOOTHING,
    ):
        """Per analysed frame (every ``every``-th), a :class:`MediaResult` with a timestamp.

        Faces are linked into tracks (``face.track``, stable ids; :mod:`ferkit.inference.tracking`)
        and each track's probabilities are smoothed over time (``smoothing``: weight of the past,
        0 = off). With ``save``, writes an annotated copy of the video (analysed frames
        annotated with track ids) as ``save/output_name`` (default ``<stem>_annotated.mp4``).
        """
        import cv2
        from tqdm import tqdm

        from ferkit.utils.quiet import quiet_third_party

        tracker = FaceTracker(smoothing)
        with quiet_third_party():  # FFmpeg's own line for a broken file; ours follows
            capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise FerkitError(f"{path}: not a readable video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        output = _VideoOutput(save, output_name or f"{path.stem}_annotated.mp4", fps / every)
        bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False)
        results, pending, counted, complete = [], [], [0], False

        def flush():
            frames = [frame for _, frame in pending]
            for result, (index, frame) in zip(
                self.analyze_images(frames, [str(path)] * len(frames)), pending
            ):
                result.frame, result.timestamp = index, round(index / fps, 4)
                track_faces(tracker, result, every, self.min_confidence)  # in frame order
                results.append(result)
                output.write(frame, result)
            pending.clear()

        try:
            for index, frame in _video_frames(capture, every, bar, counted):
                pending.append((index, frame))
                if len(pending) >= IMAGES_PER_CHUNK:
                    flush()
            if pending:
                flush()
            complete = counted[0] > 0
        finally:
            capture.release()
            bar.close()
            output.close(complete)
        if counted[0] == 0:
            raise FerkitError(f"{path}: not a readable video (no frames)")
        return results


class _Outputs:
    """``--save``: annotated copies under unique names (inputs may share a file name)."""

    def __init__(self, save: str | os.PathLike | None):
        self.folder = Path(save) if save is not None else None
        self.names: set[str] = set()

    def name(self, source: str, suffix: str) -> str:
        stem, number = Path(source).stem, 1
        name = f"{stem}_annotated{suffix}"
        while name in self.names:
            number += 1
            name = f"{stem}_{number}_annotated{suffix}"
        self.names.add(name)
        return name

    def save_image(self, result: MediaResult, image: np.ndarray) -> None:
        from PIL import Image

        if self.folder is None:
            return
        target = self.folder / self.name(result.source, ".png")
        annotated = Image.fromarray(annotate(image, result.faces))
        atomic_write(target, lambda temporary: annotated.save(temporary, format="PNG"))

    def video(self, analyzer: Analyzer, path: Path, every, progress, smoothing) -> list:
        """A video's results; with ``--save`` also its annotated copy and track outputs."""
        name = self.name(str(path), ".mp4") if self.folder is not None else None
        video = analyzer.analyze_video(path, every, self.folder, progress, name, smoothing)
        if self.folder is not None:
            write_track_outputs(video, self.folder, name.removesuffix("_annotated.mp4"))
        return video


def _analyze_files(analyzer: Analyzer, files, outputs: _Outputs, errors: list[str], every,
                   progress, smoothing) -> list[MediaResult]:  # fmt: skip
    """Images in chunks of :data:`IMAGES_PER_CHUNK`, videos one by one; errors collected."""
    from tqdm import tqdm

    results: list[MediaResult] = []
    photos, sources = [], []

    def flush():
        images = [photo.pixels for photo in photos]
        for result, photo in zip(analyzer.analyze_images(images, sources), photos):
            outputs.save_image(result, photo.pixels)  # drawn at the size it was decoded at
            results.append(result.scaled(photo.scale, width=photo.width, height=photo.height))
        del photos[:], sources[:]

    image_files = [path for path in files if path.suffix.lower() not in VIDEO_EXTENSIONS]
    reads = read_photos(image_files, DECODE_SIDE)  # decoded in threads, in order
    bar = tqdm(total=len(image_files), unit="image", disable=not progress or len(files) < 2,
               leave=False)  # fmt: skip
    for path in files:
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                results += outputs.video(analyzer, path, every, progress, smoothing)
                continue
            photo = next(reads)
            bar.update(1)
            if isinstance(photo, FerkitError):
                raise photo
            photos.append(photo)
            sources.append(str(path))
        except FerkitError as error:
            errors.append(str(error))
        if len(photos) >= IMAGES_PER_CHUNK:
            flush()
    if photos:
        flush()
    bar.close()
    return results


def analyze(
    inputs,
    model: str | os.PathLike = "default",
    detector: str = DEFAULT_DETECTOR,
    detector_model: str | os.PathLike | None = None,
    margin: float = 0.2,
    save: str | os.PathLike | None = None,
    every: int = 1,
    device: str = "auto",
    tta: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
    backend: str = INFERENCE_BACKEND,
    offline: bool = False,
    align: bool = True,
    smoothing: float = DEFAULT_SMOOTHING,
    min_confidence: float | None = None,
    log=None,
    face_check: bool = True,
) -> tuple[list[MediaResult], list[str]]:
    """Analyse images, folders, globs and videos; ``ferkit predict``'s Python twin.

    A file that cannot be read is reported in the errors and the others still run; an image
    with no face gives a result with an empty ``faces`` list. A face whose top probability is
    below ``min_confidence`` is labelled ``uncertain`` (its probabilities are still given).
    Video faces carry track ids and
    probabilities smoothed over time (``smoothing``, 0 = off; photos are never smoothed); with
    ``save``, each video also gets ``<stem>_tracks.csv``/``.json`` and ``<stem>_timeline.png``.
    ``detector`` defaults to YuNet (Haar with a warning when its file cannot be had and
    downloads are off, ``offline``); ``align`` crops faces from their landmarks;
    ``face_check`` (YuNet only) asks YuNet for more candidates and drops those the face check
    (:mod:`ferkit.faces.face_check`) finds are not faces, counting them in ``rejected_faces``.
    ``log`` (a callable taking one line), when given, is told which inference engine runs
    and why (``--verbose``).

    Returns:
        (results, errors): one :class:`MediaResult` per image or analysed video frame.

    Example:
        >>> results, errors = analyze(["photos/"], model="default")  # doctest: +SKIP
        >>> [face.label for face in results[0].faces]  # doctest: +SKIP
        ['Happy']
    """
    if every < 1:
        raise FerkitError(f"--every {every}: must be at least 1")
    check_smoothing(smoothing)  # before any file, photos only or not
    files, errors = expand_inputs(inputs)
    analyzer = Analyzer(
        model, detector, detector_model, margin, device, tta, batch_size, backend, offline, align,
        min_confidence, face_check, progress,
    )  # fmt: skip
    if log is not None:
        from ferkit.inference.int8 import describe_backend

        log(f"model: {model}; {describe_backend(analyzer.predictor)}")
    results = _analyze_files(analyzer, files, _Outputs(save), errors, every, progress, smoothing)
    return results, errors
