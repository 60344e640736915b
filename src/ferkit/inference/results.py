"""What inference answers: one :class:`Prediction` per face, one :class:`MediaResult` per image.

A :class:`Prediction` is a face's emotion (label, confidence, margin, all probabilities, see
:mod:`ferkit.inference.abstention`), with, when it was found in a photo or video, its box and
landmarks (``box``) and, in a video, its track id. :func:`write_csv` and :func:`annotate` turn
media results into a CSV table and annotated pictures.

Example:
    >>> face = predictions_from([[0.7, 0.3]], ["Happy", "Sad"])[0]
    >>> face.label, face.confidence, round(face.margin, 2)
    ('Happy', 0.7, 0.4)
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ferkit.faces.detection import LANDMARK_NAMES, FaceBox
from ferkit.inference.abstention import decide
from ferkit.utils.io import write_text


@dataclass
class Prediction:
    """The emotion of one face (a crop, or a face found in an image or video frame).

    Attributes:
        label: the most probable class name, or ``"uncertain"`` when its probability is below
            the ``min_confidence`` asked for.
        score: the top probability (calibrated when the model card has a temperature).
        probabilities: every class name → probability (they sum to 1).
        margin: top-1 minus top-2 probability.
        uncertain: True when the model abstained (``label == "uncertain"``).
        best_guess: the most probable class name, even when uncertain.
        source: the file it came from, when a face crop came from a file.
        box: where the face is (with its landmarks and detector score), for a detected face.
        track: in a video, the person's track id (:mod:`ferkit.inference.tracking`).
    """

    label: str
    score: float
    probabilities: dict[str, float] = field(default_factory=dict)
    margin: float = 0.0
    uncertain: bool = False
    best_guess: str = ""
    source: str | None = None
    box: FaceBox | None = None
    track: int | None = None

    @property
    def confidence(self) -> float:
        """The top probability (the same as ``score``)."""
        return self.score

    @property
    def landmarks(self):
        """The 5 landmarks (x, y) of a detected face, or None."""
        return self.box.landmarks if self.box is not None else None

    def to_dict(self) -> dict:
        """JSON-able form: a crop's (``label``, ``score``) or a detected face's (``box``,
        ``landmarks``, ``emotion``, ``emotion_score``, and ``track`` in a video)."""
        if self.box is None:
            return {"source": self.source, "label": self.label, "score": self.score,
                    "confidence": self.score, "margin": self.margin,
                    "uncertain": self.uncertain, "best_guess": self.best_guess,
                    "probabilities": self.probabilities}  # fmt: skip
        result = {"box": self.box.to_dict(), "landmarks": self.box.landmarks_dict(),
                  "emotion": self.label, "emotion_score": self.score,
                  "confidence": self.score, "margin": self.margin, "uncertain": self.uncertain,
                  "best_guess": self.best_guess, "probabilities": self.probabilities}  # fmt: skip
        if self.track is not None:
            result = {"track": self.track, **result}
        return result


def predictions_from(
    probabilities,
    class_names,
    min_confidence: float | None = None,
    sources: list[str | None] | None = None,
    boxes: list[FaceBox] | None = None,
) -> list[Prediction]:
    """One :class:`Prediction` per row of probabilities (N, classes): the one place where
    probabilities become predictions (labels by :func:`ferkit.inference.abstention.decide`).

    Example:
        >>> [p.label for p in predictions_from([[0.9, 0.1], [0.45, 0.55]], ["a", "b"], 0.6)]
        ['a', 'uncertain']
    """
    decisions = decide(probabilities, class_names, min_confidence)
    results = []
    for index, (row, decision) in enumerate(zip(probabilities, decisions)):
        results.append(
            Prediction(
                label=decision.label,
                score=decision.confidence,
                probabilities={name: float(value) for name, value in zip(class_names, row)},
                margin=decision.margin,
                uncertain=decision.uncertain,
                best_guess=decision.best_guess,
                source=sources[index] if sources is not None else None,
                box=boxes[index] if boxes is not None else None,
            )
        )
    return results


@dataclass
class MediaResult:
    """The faces found in one image or one video frame (an empty list: no face)."""

    source: str
    width: int
    height: int
    faces: list[Prediction] = field(default_factory=list)
    frame: int | None = None
    timestamp: float | None = None
    detector: str | None = None  # the detector that ran (after any fallback)
    #: Detections the face check rejected as not faces (None: no check ran).
    rejected_faces: int | None = None

    def to_dict(self) -> dict:
        """JSON-able form."""
        result = {"source": self.source, "width": self.width, "height": self.height,
                  "detector": self.detector}  # fmt: skip
        if self.frame is not None:
            result.update(frame=self.frame, timestamp=self.timestamp)
        result["faces"] = [face.to_dict() for face in self.faces]
        if self.rejected_faces is not None:
            result["rejected_faces"] = self.rejected_faces
        return result

    def scaled(self, factor: float, *, width: int, height: int) -> MediaResult:
        """This result for the image at ``factor`` times the size it was analysed at,
        ``width`` x ``height`` (a photo decoded reduced); itself when nothing changes.

        Example:
            >>> face = Prediction("Happy", 0.9, box=FaceBox(10, 10, 20, 20, 0.9))
            >>> result = MediaResult("a.jpg", 100, 80, [face])
            >>> result.scaled(2.0, width=200, height=160).faces[0].box.x
            20
        """
        if factor == 1 and (width, height) == (self.width, self.height):
            return self
        faces = [replace(face, box=face.box and face.box.scaled(factor)) for face in self.faces]
        return replace(self, width=width, height=height, faces=faces)


def annotate(image: np.ndarray, faces: list[Prediction]) -> np.ndarray:
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
