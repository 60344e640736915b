"""Faces across video frames: tracks with stable ids, and emotions smoothed over time.

:class:`FaceTracker` links each frame's detections to the tracks of earlier frames. A track
predicts where its face will be (constant velocity), and detections are matched to tracks by
the distance between predicted and detected landmarks (box centres for detectors without
landmarks), in face widths, with an optimal one-to-one assignment; a detection too far from
every prediction starts a new track (a new person), and a track that finds no face for more
than ``max_missed`` frames ends. Predicting motion is what keeps two people's ids apart when
they cross paths: at the crossing both boxes overlap, but each moves on its own course.

Each track's probabilities are smoothed with an exponential moving average
(``smoothing`` = weight of the past, 0 = off), so labels do not flicker from frame to frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.faces.detection import FaceBox

#: Weight of the past in the per-track moving average of probabilities (videos; 0 = off).
DEFAULT_SMOOTHING = 0.6
#: Frames a track survives without a matching face (occlusion, a missed detection).
DEFAULT_MAX_MISSED = 10
#: A detection farther than this from a track's prediction (in face widths) is someone else;
#: the limit grows by a quarter for each frame the track went unseen (its prediction is less
#: sure the longer the face was hidden).
MAX_MATCH_DISTANCE = 0.6
#: Weight of the newest step in a track's velocity (a moving average: the landmarks of a half
#: hidden face jitter, and one bad step must not send the prediction astray).
VELOCITY_UPDATE = 0.3


def _points(box: FaceBox) -> np.ndarray:
    """Landmarks (5, 2), or the box centre (1, 2) for detectors without landmarks."""
    if box.landmarks is not None:
        return np.asarray(box.landmarks, dtype=np.float64)
    return np.array([[box.x + box.width / 2, box.y + box.height / 2]], dtype=np.float64)


def _crowded(boxes: list[FaceBox]) -> list[bool]:
    """Per box: is another face within 1.5 mean face widths (heads are wider than face boxes)?

    Such a face may be partly hidden or hiding another: its landmarks jitter, so its step must
    not teach the track's velocity, which has to carry it through a crossing.
    """
    centres = np.array([[box.x + box.width / 2, box.y + box.height / 2] for box in boxes])
    widths = np.array([box.width for box in boxes], dtype=np.float64)
    crowded = []
    for index in range(len(boxes)):
        distances = np.hypot(*(centres - centres[index]).T)
        near = distances < 0.75 * (widths + widths[index])
        near[index] = False
        crowded.append(bool(near.any()))
    return crowded


@dataclass
class Track:
    """One person's face over time."""

    id: int
    points: np.ndarray  # last landmarks (or box centre)
    width: float  # last face width (distances are measured in face widths)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # pixels per frame
    missed: int = 0  # frames since the last match
    probabilities: np.ndarray | None = None  # smoothed


def check_smoothing(smoothing: float) -> float:
    """``smoothing`` if it is a valid weight of the past (0 <= smoothing < 1), else a clear error.

    Example:
        >>> check_smoothing(0.6)
        0.6
    """
    if not 0.0 <= smoothing < 1.0:
        from ferkit.utils.errors import FerkitError

        raise FerkitError(f"--smoothing {smoothing}: must be at least 0 and below 1 (0 = off)")
    return smoothing


class FaceTracker:
    """Assigns track ids to each frame's faces and smooths their probabilities.

    Args:
        smoothing: weight of the past in the moving average of probabilities (0-1; 0 = off).
        max_missed: frames a track waits for its face before it ends.
        max_distance: largest prediction-to-detection distance for a match, in face widths.

    Example:
        >>> from ferkit.faces.detection import FaceBox
        >>> tracker = FaceTracker()
        >>> tracker.update([FaceBox(0, 0, 50, 50, 1.0), FaceBox(200, 0, 50, 50, 1.0)])[0]
        [1, 2]
        >>> tracker.update([FaceBox(205, 0, 50, 50, 1.0), FaceBox(4, 2, 50, 50, 1.0)])[0]
        [2, 1]
    """

    def __init__(
        self,
        smoothing: float = DEFAULT_SMOOTHING,
        max_missed: int = DEFAULT_MAX_MISSED,
        max_distance: float = MAX_MATCH_DISTANCE,
    ):
        self.smoothing = check_smoothing(smoothing)
        self.max_missed, self.max_distance = max_missed, max_distance
        self.tracks: list[Track] = []
        self.next_id = 1

    def _costs(self, boxes: list[FaceBox], gap: int) -> np.ndarray:
        """(tracks, detections) distances between predicted and detected points, face widths."""
        costs = np.full((len(self.tracks), len(boxes)), np.inf)
        for row, track in enumerate(self.tracks):
            # Missed frames count too: an occluded face keeps moving while it is hidden.
            predicted = track.points + track.velocity * (gap + track.missed)
            for column, box in enumerate(boxes):
                points = _points(box)
                if len(points) != len(predicted):  # landmarks on one side only: use centres
                    points, reference = (
                        points.mean(0, keepdims=True),
                        predicted.mean(0, keepdims=True),
                    )
                else:
                    reference = predicted
                scale = (track.width + box.width) / 2
                costs[row, column] = np.linalg.norm(points - reference, axis=1).mean() / scale
        return costs

    def _match(self, costs: np.ndarray) -> list[tuple[int, int]]:
        from scipy.optimize import linear_sum_assignment

        if costs.size == 0:
            return []
        missed = np.array([track.missed for track in self.tracks], dtype=np.float64)[:, None]
        limit = self.max_distance * (1.0 + 0.25 * missed)
        gated = np.where(costs <= limit, costs, 1e6)
        rows, columns = linear_sum_assignment(gated)
        return [(row, column) for row, column in zip(rows, columns) if gated[row, column] < 1e6]

    def update(self, boxes: list[FaceBox], probabilities=None, gap: int = 1):
        """Link one frame's faces to tracks.

        Args:
            boxes: the frame's detections.
            probabilities: (len(boxes), classes) array, or None.
            gap: frames since the previous call (``--every``), for the motion prediction.

        Returns:
            (track id per box, smoothed probabilities per box or None).
        """
        costs = self._costs(boxes, gap)
        matches = self._match(costs)
        assigned: dict[int, Track] = {column: self.tracks[row] for row, column in matches}
        matched_tracks = {id(track) for track in assigned.values()}
        for track in self.tracks:
            if id(track) not in matched_tracks:
                track.missed += gap
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        ids, smoothed = [], []
        crowded = _crowded(boxes)
        for column, box in enumerate(boxes):
            points = _points(box)
            track = assigned.get(column)
            if track is None:
                track = Track(self.next_id, points, float(box.width))
                self.next_id += 1
                self.tracks.append(track)
            else:
                if len(points) == len(track.points) and not crowded[column]:
                    step = (points - track.points).mean(0) / (gap + track.missed)
                    track.velocity += VELOCITY_UPDATE * (step - track.velocity)
                track.points, track.width, track.missed = points, float(box.width), 0
            if probabilities is not None:
                current = np.asarray(probabilities[column], dtype=np.float64)
                if track.probabilities is None or self.smoothing == 0:
                    track.probabilities = current
                else:
                    weight = self.smoothing**gap  # the past fades per frame, not per call
                    track.probabilities = weight * track.probabilities + (1 - weight) * current
                smoothed.append(track.probabilities.copy())
            ids.append(track.id)
        return ids, (np.array(smoothed) if probabilities is not None else None)


def track_faces(
    tracker: FaceTracker, result, gap: int = 1, min_confidence: float | None = None
) -> None:
    """Give a video frame's faces (a :class:`ferkit.inference.results.MediaResult`, in place)
    their track ids and smoothed probabilities. Label, confidence, margin and abstention are
    decided again from the smoothed probabilities (:func:`ferkit.inference.abstention.decide`, the
    one place that does it), so ``min_confidence`` applies to what is shown.

    Example:
        >>> from ferkit.inference.results import MediaResult, predictions_from
        >>> faces = predictions_from([[0.7, 0.3]], ["a", "b"], boxes=[FaceBox(0, 0, 40, 40, 1.0)])
        >>> frame = MediaResult("clip.mp4", 100, 100, faces)
        >>> track_faces(FaceTracker(), frame, min_confidence=0.8)
        >>> frame.faces[0].track, frame.faces[0].label, frame.faces[0].best_guess
        (1, 'uncertain', 'a')
    """
    from ferkit.inference.abstention import decide

    if not result.faces:
        tracker.update([], None, gap)
        return
    names = list(result.faces[0].probabilities)
    raw = np.array([[face.probabilities[name] for name in names] for face in result.faces])
    ids, smoothed = tracker.update([face.box for face in result.faces], raw, gap)
    for face, track, row, decision in zip(
        result.faces, ids, smoothed, decide(smoothed, names, min_confidence)
    ):
        face.track, face.label, face.score = track, decision.label, decision.confidence
        face.margin, face.uncertain = decision.margin, decision.uncertain
        face.best_guess = decision.best_guess
        face.probabilities = {name: float(value) for name, value in zip(names, row)}


def write_track_outputs(results, folder: str | os.PathLike, stem: str) -> list[Path]:
    """A video's per-frame, per-track outputs: ``<stem>_tracks.csv``, ``<stem>_tracks.json``
    and ``<stem>_timeline.png`` (each person's emotion probabilities over time).

    Args:
        results: the video's :class:`ferkit.inference.results.MediaResult` list (tracked).
        folder: where to write.
        stem: file name prefix.

    Example:
        >>> write_track_outputs(results, "out", "clip")  # doctest: +SKIP
        [PosixPath('out/clip_tracks.csv'), PosixPath('out/clip_tracks.json'), ...]
    """
    from ferkit.inference.results import write_csv
    from ferkit.plots import emotion_timeline_figure, save_figure
    from ferkit.utils.io import write_json

    folder = Path(folder)
    written = [
        write_csv(results, folder / f"{stem}_tracks.csv"),
        write_json(folder / f"{stem}_tracks.json", [result.to_dict() for result in results]),
    ]
    figure = emotion_timeline_figure(results, title=stem)
    written.append(save_figure(figure, folder / f"{stem}_timeline.png"))
    return written
