"""``ferkit predict``: faces and emotions in images, folders, globs and videos.

For each input the detector (YuNet by default) finds faces and their landmarks, each face is
aligned to FER2013's framing (or cropped square with a margin when it has no landmarks) and goes
through the eval preprocessing; crops from many images go through the model together. Results
come back per face (box, landmarks, detector score, emotion, all probabilities) and name the
detector that ran, as a table, JSON or CSV, and optionally as annotated copies of the images and
videos.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.abstention import check_min_confidence, decide
from ferkit.alignment import face_crop
from ferkit.detection import DEFAULT_DETECTOR, LANDMARK_NAMES, FaceBox, create_detector
from ferkit.errors import FerkitError
from ferkit.io import atomic_write, write_text
from ferkit.preprocessing import IMAGE_EXTENSIONS, read_image, to_face_array
from ferkit.tracking import DEFAULT_SMOOTHING, FaceTracker, write_track_outputs

#: Inference engine for predict and serve: torch | onnx | auto | bf16 (see Predictor.from_run).
INFERENCE_BACKEND = "auto"

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: Images whose crops are classified together (bounded memory, one batched forward pass).
IMAGES_PER_CHUNK = 32


@dataclass
class FaceResult:
    """One detected face: where it is and what it expresses.

    ``label`` is ``"uncertain"`` when ``score`` (the top, calibrated probability) is below the
    ``min_confidence`` asked for; ``best_guess`` is the top class all the same, ``margin``
    the top-1 minus top-2 probability (see :mod:`ferkit.abstention`).
    """

    box: FaceBox
    label: str
    score: float
    probabilities: dict[str, float]
    margin: float = 0.0
    uncertain: bool = False
    best_guess: str = ""
    track: int | None = None  # video: the person's track id (ferkit.tracking)

    def to_dict(self) -> dict:
        """JSON-able form."""
        result = {"box": self.box.to_dict(), "landmarks": self.box.landmarks_dict(),
                  "emotion": self.label, "emotion_score": self.score,
                  "confidence": self.score, "margin": self.margin, "uncertain": self.uncertain,
                  "best_guess": self.best_guess, "probabilities": self.probabilities}  # fmt: skip
        if self.track is not None:
            result = {"track": self.track, **result}
        return result


@dataclass
class MediaResult:
    """The faces found in one image or one video frame (an empty list: no face)."""

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    frame: int | None = None
    timestamp: float | None = None
    detector: str | None = None  # the detector that ran (after any fallback)

    def to_dict(self) -> dict:
        """JSON-able form."""
        result = {"source": self.source, "width": self.width, "height": self.height,
                  "detector": self.detector}  # fmt: skip
        if self.frame is not None:
            result.update(frame=self.frame, timestamp=self.timestamp)
        result["faces"] = [face.to_dict() for face in self.faces]
        return result


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


def annotate(image: np.ndarray, faces: list[FaceResult]) -> np.ndarray:
    """An RGB copy of ``image`` with a box, the emotion and a probability bar per face.

    Example:
        >>> import numpy as np
        >>> annotate(np.zeros((50, 60), np.uint8), []).shape
        (50, 60, 3)
    """
    import cv2

    canvas = np.ascontiguousarray(
        cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3]
    ).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for face in faces:
        box = face.box
        color = (40, 220, 90)
        cv2.rectangle(canvas, (box.x, box.y), (box.x + box.width, box.y + box.height), color,
                      thickness)  # fmt: skip
        text = f"{face.label} {face.score:.0%}"
        if face.track is not None:
            text = f"#{face.track} {text}"
        scale = max(0.4, box.width / 220)
        (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, box.y - text_height - 8)
        cv2.rectangle(canvas, (box.x, top), (box.x + text_width + 6, top + text_height + 8), color,
                      -1)  # fmt: skip
        cv2.putText(canvas, text, (box.x + 3, top + text_height + 3), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        # Probability bar under the box: its filled part is the top emotion's probability.
        bar_top = min(canvas.shape[0] - 1, box.y + box.height + 3)
        bar_bottom = min(canvas.shape[0] - 1, bar_top + max(4, box.height // 16))
        cv2.rectangle(canvas, (box.x, bar_top), (box.x + box.width, bar_bottom), (70, 70, 70), -1)
        filled = box.x + round(box.width * face.score)
        cv2.rectangle(canvas, (box.x, bar_top), (filled, bar_bottom), color, -1)
    return canvas


def _track(tracker: FaceTracker, result: MediaResult, gap: int) -> None:
    """Give ``result``'s faces their track ids and smoothed probabilities (label follows)."""
    if not result.faces:
        tracker.update([], None, gap)
        return
    names = list(result.faces[0].probabilities)
    raw = np.array([[face.probabilities[name] for name in names] for face in result.faces])
    ids, smoothed = tracker.update([face.box for face in result.faces], raw, gap)
    for face, track, row in zip(result.faces, ids, smoothed):
        best = int(np.argmax(row))
        face.track, face.label, face.score = track, names[best], float(row[best])
        face.probabilities = {name: float(value) for name, value in zip(names, row)}


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
    ):
        from ferkit.inference import Predictor

        self.min_confidence = check_min_confidence(min_confidence)

        self.predictor = Predictor.from_run(model, device=device, tta=tta, backend=backend)
        # OpenCV detectors are not documented as thread-safe: each thread gets its own.
        self._local = threading.local()
        self._local.detector = create_detector(detector, detector_model, offline)
        # Threads' detectors reuse what this one resolved (yunet: the file checked or
        # downloaded once; haar after a fallback), so they never download, re-hash or re-warn.
        self.detector_name = self._local.detector.name
        self.detector_model = getattr(self._local.detector, "model_path", detector_model)
        # A face crop given with --detector none is used as it is.
        self.margin = 0.0 if detector == "none" else margin
        self.align = align
        self.batch_size = batch_size

    @property
    def detector(self):
        """This thread's detector (created on first use in the thread)."""
        if not hasattr(self._local, "detector"):
            self._local.detector = create_detector(self.detector_name, self.detector_model)
        return self._local.detector

    def analyze_images(
        self, images: list[np.ndarray], sources: list[str], min_confidence: float | None = None
    ) -> list[MediaResult]:
        """Detect and classify faces in several images with one batched forward pass.

        ``min_confidence`` (default: the analyzer's) turns low-confidence faces into
        ``uncertain``. Thread-safe: the model is shared, the detector is per thread.
        """
        if min_confidence is None:
            min_confidence = self.min_confidence
        detector = self.detector
        boxes = [detector.detect(image) for image in images]
        size = self.predictor.input_size
        crops = [
            # A whole-image "detection" is a face crop: exactly the Predictor's preprocessing.
            to_face_array(image, size) if detector.name == "none" else face_crop(
                image, box, size, self.margin, self.align)
            for image, image_boxes in zip(images, boxes)
            for box in image_boxes
        ]  # fmt: skip
        probabilities = (
            self.predictor.predict_proba(np.stack(crops), self.batch_size) if crops else []
        )
        names = self.predictor.class_names
        decisions = decide(probabilities, names, min_confidence) if crops else []
        results, position = [], 0
        for image, image_boxes, source in zip(images, boxes, sources):
            faces = []
            for box in image_boxes:
                row, decision = probabilities[position], decisions[position]
                position += 1
                faces.append(
                    FaceResult(box, decision.label, decision.confidence,
                               {name: float(value) for name, value in zip(names, row)},
                               decision.margin, decision.uncertain, decision.best_guess)
                )  # fmt: skip
            results.append(
                MediaResult(source, image.shape[1], image.shape[0], faces, detector=detector.name)
            )
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

        Faces are linked into tracks (``face.track``, stable ids; :mod:`ferkit.tracking`) and
        each track's probabilities are smoothed over time (``smoothing``: weight of the past,
        0 = off). With ``save``, writes an annotated copy of the video (analysed frames
        annotated with track ids) as ``save/output_name`` (default ``<stem>_annotated.mp4``).
        """
        output_name = output_name or f"{path.stem}_annotated.mp4"
        import cv2
        from tqdm import tqdm

        tracker = FaceTracker(smoothing)

        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise FerkitError(f"{path}: not a readable video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        writer, temporary, results = None, None, []
        pending, pending_index = [], []
        bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, leave=False)

        def flush():
            frame_results = self.analyze_images(
                [frame for frame in pending], [str(path)] * len(pending)
            )  # fmt: skip
            for result, index, frame in zip(frame_results, pending_index, pending):
                result.frame, result.timestamp = index, round(index / fps, 4)
                _track(tracker, result, every)  # in frame order, across chunks
                results.append(result)
                if writer is not None:
                    writer.write(cv2.cvtColor(annotate(frame, result.faces), cv2.COLOR_RGB2BGR))
            pending.clear()
            pending_index.clear()

        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    if save is not None and writer is None:
                        save.mkdir(parents=True, exist_ok=True)
                        temporary = save / f".{output_name}.tmp.mp4"
                        writer = cv2.VideoWriter(
                            str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps / every,
                            (frame.shape[1], frame.shape[0]),
                        )  # fmt: skip
                    pending.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    pending_index.append(index)
                    if len(pending) >= IMAGES_PER_CHUNK:
                        flush()
                index += 1
                bar.update(1)
            if pending:
                flush()
        except BaseException:
            if temporary is not None:
                if writer is not None:
                    writer.release()
                    writer = None
                temporary.unlink(missing_ok=True)  # no half-written video stays behind
            raise
        finally:
            capture.release()
            bar.close()
            if writer is not None:
                writer.release()
        if index == 0:
            raise FerkitError(f"{path}: not a readable video (no frames)")
        if temporary is not None:
            os.replace(temporary, save / output_name)
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
) -> tuple[list[MediaResult], list[str]]:
    """Analyse images, folders, globs and videos; ``ferkit predict``'s Python twin.

    A file that cannot be read is reported in the errors and the others still run; an image
    with no face gives a result with an empty ``faces`` list. A face whose top probability is
    below ``min_confidence`` is labelled ``uncertain`` (its probabilities are still given).
    Video faces carry track ids and
    probabilities smoothed over time (``smoothing``, 0 = off; photos are never smoothed); with
    ``save``, each video also gets ``<stem>_tracks.csv``/``.json`` and ``<stem>_timeline.png``.
    ``detector`` defaults to YuNet (Haar with a warning when its file cannot be had and
    downloads are off, ``offline``); ``align`` crops faces from their landmarks.

    Returns:
        (results, errors): one :class:`MediaResult` per image or analysed video frame.

    Example:
        >>> results, errors = analyze(["photos/"], model="default")  # doctest: +SKIP
        >>> [face.label for face in results[0].faces]  # doctest: +SKIP
        ['Happy']
    """
    from tqdm import tqdm

    if every < 1:
        raise FerkitError(f"--every {every}: must be at least 1")
    files, errors = expand_inputs(inputs)
    analyzer = Analyzer(
        model, detector, detector_model, margin, device, tta, batch_size, backend, offline, align,
        min_confidence,
    )  # fmt: skip
    save_dir = Path(save) if save is not None else None
    saved_names: set[str] = set()

    def annotated_name(source: str, suffix: str) -> str:
        # Inputs from different folders may share a file name: never overwrite an output.
        stem, number = Path(source).stem, 1
        name = f"{stem}_annotated{suffix}"
        while name in saved_names:
            number += 1
            name = f"{stem}_{number}_annotated{suffix}"
        saved_names.add(name)
        return name

    results: list[MediaResult] = []
    images, sources = [], []

    def flush():
        for result, image in zip(analyzer.analyze_images(images, sources), images):
            results.append(result)
            if save_dir is not None:
                from PIL import Image

                target = save_dir / annotated_name(result.source, ".png")
                annotated = Image.fromarray(annotate(image, result.faces))
                atomic_write(target, lambda temporary, picture=annotated: picture.save(
                    temporary, format="PNG"))  # fmt: skip
        images.clear()
        sources.clear()

    image_files = [path for path in files if path.suffix.lower() not in VIDEO_EXTENSIONS]
    bar = tqdm(total=len(image_files), unit="image", disable=not progress or len(files) < 2,
               leave=False)  # fmt: skip
    for path in files:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            try:
                name = annotated_name(str(path), ".mp4") if save_dir is not None else None
                video = analyzer.analyze_video(path, every, save_dir, progress, name, smoothing)
                if save_dir is not None:
                    write_track_outputs(video, save_dir, name.removesuffix("_annotated.mp4"))
                results += video
            except FerkitError as error:
                errors.append(str(error))
            continue
        try:
            images.append(read_image(path))
            sources.append(str(path))
        except FerkitError as error:
            errors.append(str(error))
        bar.update(1)
        if len(images) >= IMAGES_PER_CHUNK:
            flush()
    if images:
        flush()
    bar.close()
    return results, errors


LANDMARK_FIELDS = tuple(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy")
CSV_FIELDS = ("source", "frame", "timestamp", "face", "x", "y", "width", "height",
              "detector_score", "detector", "track", *LANDMARK_FIELDS, "emotion",
              "emotion_score", "margin", "best_guess")  # fmt: skip


def write_csv(results: list[MediaResult], path: str | os.PathLike, class_names=None) -> Path:
    """One row per face (images without faces get one row with empty face fields).

    ``emotion`` is ``uncertain`` for a face below ``--min-confidence``; ``best_guess`` is its
    top class all the same, ``margin`` its top-1 minus top-2 probability.
    Landmark columns are empty for detectors without landmarks (Haar); ``track`` is the
    person's id in videos. ``class_names`` names the probability columns (default: taken
    from the first face).

    Example:
        >>> write_csv([MediaResult("a.png", 4, 4)], "faces.csv")  # doctest: +SKIP
    """
    if class_names is None:
        class_names = next(
            (list(face.probabilities) for result in results for face in result.faces), []
        )
    class_names = list(class_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(CSV_FIELDS) + class_names)
    for result in results:
        common = [result.source, result.frame, result.timestamp]
        if not result.faces:
            writer.writerow(common + [""] * (len(CSV_FIELDS) - 3 + len(class_names)))
        for number, face in enumerate(result.faces, start=1):
            box = face.box
            landmarks = ([round(float(value), 1) for point in box.landmarks for value in point]
                         if box.landmarks is not None else [""] * len(LANDMARK_FIELDS))  # fmt: skip
            writer.writerow(
                common
                + [number, box.x, box.y, box.width, box.height, round(box.score, 4),
                   result.detector, face.track, *landmarks, face.label, round(face.score, 6),
                   round(face.margin, 6), face.best_guess]
                + [round(face.probabilities[name], 6) for name in class_names]
            )  # fmt: skip
    return write_text(path, buffer.getvalue())
