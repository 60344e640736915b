"""Face tracks in video: stable ids (two faces crossing paths), smoothing, per-video outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.faces.detection import FaceBox
from ferkit.inference.tracking import FaceTracker

skimage_data = pytest.importorskip("skimage.data")


def _box(center_x, center_y, side=60):
    return FaceBox(round(center_x - side / 2), round(center_y - side / 2), side, side, 1.0)


def test_two_boxes_crossing_keep_their_ids_even_where_they_coincide():
    tracker = FaceTracker(smoothing=0.0)
    history = []
    for step in range(21):  # they meet exactly at step 10
        left_to_right, right_to_left = _box(100 + 20 * step, 200), _box(500 - 20 * step, 200)
        ids, _ = tracker.update([right_to_left, left_to_right] if step % 2 else
                                [left_to_right, right_to_left])  # fmt: skip
        history.append(ids if step % 2 == 0 else ids[::-1])
    assert all(ids == [1, 2] for ids in history)


def test_a_hidden_face_keeps_its_id_and_a_new_face_gets_a_new_one():
    tracker = FaceTracker(smoothing=0.0, max_missed=3)
    assert tracker.update([_box(100, 100)])[0] == [1]
    for _ in range(2):  # hidden for two frames
        assert tracker.update([])[0] == []
    assert tracker.update([_box(100, 100), _box(400, 300)])[0] == [1, 2]
    for _ in range(4):  # gone for longer than max_missed: the track ends
        tracker.update([_box(400, 300)])
    assert tracker.update([_box(100, 100), _box(400, 300)])[0] == [3, 2]


def test_probabilities_are_smoothed_per_track_and_not_when_off():
    happy, sad = np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]])
    tracker = FaceTracker(smoothing=0.5)
    tracker.update([_box(100, 100)], happy)
    _, smoothed = tracker.update([_box(102, 100)], sad)
    np.testing.assert_allclose(smoothed, [[0.5, 0.5]])
    _, unsmoothed = FaceTracker(smoothing=0.0).update([_box(100, 100)], sad)
    np.testing.assert_allclose(unsmoothed, sad)
    with pytest.raises(Exception, match="smoothing 1.0"):
        FaceTracker(smoothing=1.0)


def make_crossing_video(path, frames=36, fps=12.0):
    """Two copies of the astronaut's head crossing paths (the second passes in front).

    Returns each frame's true face centres: [(x, y) of the left-to-right face, (x, y) of the
    right-to-left face].
    """
    astronaut = skimage_data.astronaut()
    head = cv2.resize(astronaut[23:216, 138:308], None, fx=0.7, fy=0.7,
                      interpolation=cv2.INTER_AREA)  # fmt: skip
    height, width = head.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    truth = []
    for index in range(frames):
        frame = np.full((480, 640, 3), 70, np.uint8)
        progress = index / (frames - 1)
        xs = (20 + progress * (620 - width - 20), 620 - width - progress * (620 - width - 20))
        ys = (150, 180)  # 30 px apart: at the crossing one head hides most of the other
        centres = []
        for x, y in zip(xs, ys):
            x = round(x)
            frame[y : y + height, x : x + width] = head
            # the face is at the head's centre, a little above (measured on the photo)
            centres.append((x + width / 2, y + height / 2 - 5))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        truth.append(centres)
    writer.release()
    return truth


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run


def test_faces_crossing_paths_in_a_video_keep_their_ids(run_dir, tmp_path, shared_yunet):
    from ferkit.inference.pipeline import analyze

    video = tmp_path / "crossing.mp4"
    truth = make_crossing_video(video)
    results, errors = analyze([video], model=run_dir, detector_model=shared_yunet,
                              save=tmp_path / "out", progress=False)  # fmt: skip
    assert errors == [] and len(results) == len(truth)
    people_of_track: dict[int, set] = {}
    found = 0
    for result, centres in zip(results, truth):
        assert result.detector == "yunet"
        for face in result.faces:
            centre = (face.box.x + face.box.width / 2, face.box.y + face.box.height / 2)
            person = int(np.argmin([np.hypot(centre[0] - x, centre[1] - y) for x, y in centres]))
            people_of_track.setdefault(face.track, set()).add(person)
            found += 1
    assert found >= 0.9 * 2 * len(truth)  # both faces found in nearly every frame
    assert all(len(people) == 1 for people in people_of_track.values())  # no id switch
    assert sorted(people_of_track) == [1, 2]  # and no new id after the crossing

    out = tmp_path / "out"
    rows = (out / "crossing_tracks.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"timestamp", "track", "right_eye_x", "left_mouth_y"} <= set(header)
    assert len(rows) == 1 + found
    records = json.loads((out / "crossing_tracks.json").read_text())
    assert records[5]["faces"][0]["track"] in (1, 2) and records[5]["faces"][0]["landmarks"]
    timeline = cv2.imread(str(out / "crossing_timeline.png"))
    assert timeline is not None and timeline.shape[0] > 200
    annotated = cv2.VideoCapture(str(out / "crossing_annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == len(truth)


def test_timeline_figure_has_one_panel_per_person():
    from ferkit.inference.results import MediaResult, Prediction
    from ferkit.plots import emotion_timeline_figure

    probabilities = dict.fromkeys(FER2013_CLASS_NAMES, 1 / 7)
    results = [
        MediaResult("v.mp4", 64, 64,
                    [Prediction("Happy", 0.2, probabilities, box=_box(10, 10), track=track)
                     for track in (1, 2)], frame=index, timestamp=index / 10)
        for index in range(5)
    ]  # fmt: skip
    figure = emotion_timeline_figure(results)
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == len(FER2013_CLASS_NAMES)


def _noise_video(path, frames=12, side=96):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (side, side))
    rng = np.random.default_rng(0)
    for index in range(frames):  # brightness changes so that the tiny model's answers do
        base = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        frame = cv2.resize(base, (side, side), interpolation=cv2.INTER_NEAREST)
        writer.write(np.clip(frame.astype(int) * (0.3 + index / frames), 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_min_confidence_applies_to_the_smoothed_video_probabilities(tiny_run, tmp_path):
    from ferkit.inference.pipeline import analyze

    video = _noise_video(tmp_path / "noise.mp4")
    plain, errors = analyze([video], model=tiny_run, detector="none", progress=False)
    assert errors == [] and all(len(result.faces) == 1 for result in plain)
    tops = [max(result.faces[0].probabilities.values()) for result in plain]
    threshold = float(np.median(tops))  # some frames above, some below
    results, _ = analyze([video], model=tiny_run, detector="none", progress=False,
                         min_confidence=threshold)  # fmt: skip
    uncertain = []
    for result in results:
        face = result.faces[0]
        names = list(face.probabilities)
        ordered = sorted(face.probabilities.values())
        best = names[int(np.argmax([face.probabilities[name] for name in names]))]
        assert face.track == 1 and face.best_guess == best
        assert face.score == pytest.approx(ordered[-1])
        assert face.margin == pytest.approx(ordered[-1] - ordered[-2])
        assert face.uncertain == (ordered[-1] < threshold)
        assert face.label == ("uncertain" if face.uncertain else best)
        uncertain.append(face.uncertain)
    assert any(uncertain) and not all(uncertain)


def test_smoothing_is_checked_before_any_file_is_read(tiny_run, tmp_path):
    from ferkit.inference.pipeline import analyze
    from ferkit.utils.errors import FerkitError

    with pytest.raises(FerkitError, match="--smoothing 1.5: must be at least 0 and below 1"):
        analyze([tmp_path / "photo.png"], model=tiny_run, detector="none", smoothing=1.5)


def test_the_table_shows_track_ids_in_track_order(capsys):
    from ferkit.cli import _print_table
    from ferkit.inference.results import MediaResult, Prediction

    probabilities = dict.fromkeys(FER2013_CLASS_NAMES, 1 / 7)
    faces = [Prediction("Happy", 0.2, probabilities, box=_box(x, 50), track=track)
             for x, track in ((300, 2), (100, 1))]  # fmt: skip
    _print_table([MediaResult("v.mp4", 400, 100, faces, frame=0, timestamp=0.0)])
    lines = capsys.readouterr().out.splitlines()
    assert "track" in lines[0].split()
    assert [line.split()[2] for line in lines[1:]] == ["1", "2"]


def test_the_timeline_draws_the_longest_tracks_and_leaves_gaps_open():
    from ferkit.inference.results import MediaResult, Prediction
    from ferkit.plots import MAX_TIMELINE_TRACKS, emotion_timeline_figure

    probabilities = dict.fromkeys(FER2013_CLASS_NAMES, 1 / 7)
    results = []
    for index in range(20):  # track 1 everywhere but frames 8-9; tracks 2.. one frame each
        tracks = ([1] if index not in (8, 9) else []) + [index + 2]
        faces = [Prediction("Happy", 0.2, probabilities, box=_box(10, 10), track=track)
                 for track in tracks]  # fmt: skip
        results.append(MediaResult("v.mp4", 64, 64, faces, frame=index, timestamp=index / 10))
    figure = emotion_timeline_figure(results, title="v")
    assert len(figure.axes) == MAX_TIMELINE_TRACKS
    assert f"the {MAX_TIMELINE_TRACKS} longest of 21 tracks" in figure.axes[0].get_title()
    assert figure.axes[0].get_ylabel() == "person 1"
    times = figure.axes[0].lines[0].get_xdata()
    assert len(times) == 19 and np.isnan(times).sum() == 1  # 18 frames, one gap
