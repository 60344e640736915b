"""Benchmark: ``ferkit predict`` on large photos (up to 4352x2903 JPEGs), time and faces found.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/large_photos.py [--model default]
        [--detector-model ../shared/models/face_detection_yunet_2023mar.onnx] [--repeats 3]
        [--variant DETECTION_SIDE=640 ...] [--crowds] [--keep DIR]

It makes ten JPEG photos (quality 92) from scikit-image's pictures, as a phone or a camera
would give them: the astronaut as a portrait (2903x4352), a landscape (4352x2903), a 12 MP
phone shot (4032x3024), far away (3000x2000) and mid-size (2048x1365); a couple and a group
selfie (astronaut heads, mirrored, turned, gray or darkened, 350-900 px, pasted onto
scikit-image's rocket and brick); the cameraman (2903x2903); and two photos with no human face
(coffee; the chelsea cat), all upscaled with bicubic interpolation. ``--crowds`` makes three
crowd photos instead (36 heads each, faces of 66-108 px in 4352x2903). Then it times the
library call of ``ferkit predict`` (:func:`ferkit.inference.pipeline.analyze`) on the folder:

- ``full size``: the path before issue 25: every photo decoded at full size, YuNet's first
  look at its own 1280-px limit, the second look in turned copies of the full photo
  (``pipeline.DECODE_SIDE``, ``DETECTION_SIDE`` and ``SEARCH_SIDE`` set to None);
- ``now``: what ``ferkit predict`` does: JPEGs decoded reduced by DCT scaling while their
  longer side stays at least ``DECODE_SIDE``, the first look in a copy of ``DETECTION_SIDE``
  px, the second in one of ``SEARCH_SIDE``, boxes and landmarks mapped back to the photo;
- each ``--variant KNOB=VALUE[,KNOB=VALUE]``: ``now`` with those sides changed (to weigh them).

For each it prints the wall and CPU seconds per 10 photos (the call on the folder, less the
same call on no photo: model and detector loading), then per photo the faces in it, those
each path found and, for the faces both found (matched by IoU ≥ 0.5), how many have the same
emotion, the largest difference of a probability and of a landmark (in % of the box width).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# The astronaut's head in skimage.data.astronaut() (x, y, width, height): her face box
# (177, 66, 95, 95) of benchmarks/detection.py with 50-70 px of hair, helmet and background.
ASTRONAUT_HEAD = (120, 10, 210, 230)
#: The human faces in each photo (the cameraman's is real; the cat's face is not a human one).
FACES = {
    "portrait_2903x4352": 1,
    "landscape_4352x2903": 1,
    "phone_4032x3024": 1,
    "far_3000x2000": 1,
    "mid_2048x1365": 1,
    "couple_4032x3024": 2,
    "group_4352x2903": 8,
    "cameraman_2903x2903": 1,
    "coffee_4352x2903": 0,
    "chelsea_4352x2903": 0,
}


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def _head(astronaut: np.ndarray, side: int, variant: int) -> np.ndarray:
    """The astronaut's head ``side`` px high, in one of several looks (mirrored, turned by
    ±15°, gray, darkened), as a person in a group photo."""
    x, y, width, height = ASTRONAUT_HEAD
    head = astronaut[y : y + height, x : x + width]
    if variant % 2:
        head = head[:, ::-1]
    if variant % 3 == 1:
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), 15 if variant % 2 else -15, 1.0)
        head = cv2.warpAffine(
            np.ascontiguousarray(head), turn, (width, height), borderMode=cv2.BORDER_REPLICATE
        )
    if variant % 4 == 2:
        head = np.repeat(
            cv2.cvtColor(np.ascontiguousarray(head), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2
        )
    if variant % 5 == 3:
        head = (head * 0.6).astype(np.uint8)
    return _resized(np.ascontiguousarray(head), round(side * width / height), side)


def _pasted(background: np.ndarray, astronaut: np.ndarray, places) -> np.ndarray:
    """``background`` with heads pasted at ``places``: (x, y, head height, look)."""
    photo = background.copy()
    for x, y, side, variant in places:
        head = _head(astronaut, side, variant)
        photo[y : y + head.shape[0], x : x + head.shape[1]] = head
    return photo


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def build_photos(folder: Path) -> list[Path]:
    """Write the ten photos as JPEGs into ``folder``; their paths."""
    import skimage.data
    from PIL import Image

    astronaut = skimage.data.astronaut()
    rocket = _rgb(skimage.data.rocket())
    brick = _rgb(skimage.data.brick())
    photos = {
        "portrait_2903x4352": _resized(astronaut[:, 85:427], 2903, 4352),
        "landscape_4352x2903": _resized(astronaut[:341], 4352, 2903),
        "phone_4032x3024": _resized(astronaut[40:424], 4032, 3024),
        "far_3000x2000": _pasted(_resized(brick, 3000, 2000), astronaut, [(1300, 700, 300, 0)]),
        "mid_2048x1365": _resized(astronaut[:341], 2048, 1365),
        "couple_4032x3024": _pasted(
            _resized(rocket, 4032, 3024), astronaut, [(900, 900, 900, 0), (2300, 1000, 820, 1)]
        ),
        "group_4352x2903": _pasted(
            _resized(brick, 4352, 2903),
            astronaut,
            [
                (200, 300, 600, 0),
                (1000, 200, 700, 1),
                (2000, 350, 550, 2),
                (2900, 250, 650, 3),
                (400, 1300, 800, 4),
                (1500, 1350, 900, 5),
                (2700, 1200, 750, 6),
                (3700, 1500, 350, 7),
            ],
        ),
        "cameraman_2903x2903": _resized(_rgb(skimage.data.camera()), 2903, 2903),
        "coffee_4352x2903": _resized(skimage.data.coffee(), 4352, 2903),
        "chelsea_4352x2903": _resized(skimage.data.chelsea(), 4352, 2903),
    }
    paths = []
    for name, pixels in photos.items():
        path = folder / f"{name}.jpg"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path, quality=92)
        paths.append(path)
    return paths


def build_crowds(folder: Path) -> tuple[list[Path], dict[str, int]]:
    """Three crowd photos, 36 heads each (faces of 66, 83 and 108 px at full size), and the
    faces each holds."""
    import skimage.data
    from PIL import Image

    astronaut, brick = skimage.data.astronaut(), _rgb(skimage.data.brick())
    paths = []
    for side in (160, 200, 260):
        places = [
            (100 + (index % 12) * 350, 100 + (index // 12) * 900, side, index)
            for index in range(36)
        ]
        paths.append(folder / f"crowd{side}_4352x2903.jpg")
        photo = _pasted(_resized(brick, 4352, 2903), astronaut, places)
        Image.fromarray(photo).save(paths[-1], quality=92)
    return paths, {path.stem: 36 for path in paths}


def _iou(first, second) -> float:
    from ferkit.faces.detection import intersection_over_union

    return intersection_over_union(first.box, second.box)


def _timed_runs(paths, model: str, detector_model: str, repeats: int) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds) per 10 photos, and the results of the last run: medians of
    the call on the folder less the same call on no photo (loading the model and detector)."""
    from ferkit.inference.pipeline import analyze

    def call(inputs):
        wall, cpu = time.perf_counter(), time.process_time()
        results, errors = analyze(
            inputs, model=model, detector_model=detector_model, progress=False
        )
        assert not errors, errors
        return time.perf_counter() - wall, time.process_time() - cpu, results

    call(paths)  # warm-up: the model's ONNX graph into the cache, first allocations
    loading = [call([]) for _ in range(repeats)]
    runs = [call(paths) for _ in range(repeats)]
    per_ten = [
        (
            statistics.median(run[part] for run in runs)
            - statistics.median(run[part] for run in loading)
        )
        / len(paths)
        * 10
        for part in (0, 1)
    ]
    return per_ten[0], per_ten[1], runs[-1][2]


def compare(before, after, expected: dict[str, int]) -> None:
    """Per photo: the faces in it, those each path found; for the faces both found, how many
    have the same emotion, the largest difference of a probability and of a landmark (in % of
    the face's box width)."""
    print(
        f"{'photo':<22}{'size':>11}{'faces':>7}{'full size':>11}{'reduced':>9}"
        f"{'same label':>12}{'max |Δp|':>10}{'landmarks':>11}"
    )
    for old, new in zip(before, after):
        assert old.source == new.source and (old.width, old.height) == (new.width, new.height)
        pairs = []
        for face in old.faces:
            best = max(new.faces, key=lambda other: _iou(face, other), default=None)
            if best is not None and _iou(face, best) >= 0.5:
                pairs.append((face, best))
        same = sum(face.label == other.label for face, other in pairs)
        delta = max(
            (
                abs(face.probabilities[name] - other.probabilities[name])
                for face, other in pairs
                for name in face.probabilities
            ),
            default=0.0,
        )
        shift = max(
            (
                np.abs(np.subtract(face.box.landmarks, other.box.landmarks)).max() / face.box.width
                for face, other in pairs
            ),
            default=0.0,
        )
        name = Path(old.source).stem
        print(
            f"{name:<22}{f'{old.width}x{old.height}':>11}{expected[name]:>7}"
            f"{len(old.faces):>11}{len(new.faces):>9}{f'{same}/{len(pairs)}':>12}"
            f"{delta:>10.4f}{shift:>10.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--detector-model", default="../shared/models/face_detection_yunet_2023mar.onnx"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="write the photos here and keep them")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="also time now with these sides, e.g. DETECTION_SIDE=640,DECODE_SIDE=1088",
    )
    parser.add_argument(
        "--crowds",
        action="store_true",
        help="three crowd photos instead (36 heads of 160/200/260 px in 4352x2903)",
    )
    args = parser.parse_args()

    from ferkit.inference import pipeline

    folder = Path(args.keep or tempfile.mkdtemp(prefix="ferkit-large-photos-"))
    folder.mkdir(parents=True, exist_ok=True)
    paths, faces = build_crowds(folder) if args.crowds else (build_photos(folder), FACES)
    print(f"{len(paths)} photos in {folder}, {os.cpu_count()} CPUs; model {args.model}")
    knobs = ("DECODE_SIDE", "DETECTION_SIDE", "SEARCH_SIDE")
    now = {knob: getattr(pipeline, knob) for knob in knobs}
    settings = {"full size": dict.fromkeys(knobs), "now": now}
    for variant in args.variant:
        changed = dict(item.split("=") for item in variant.split(","))
        assert set(changed) <= set(knobs), f"--variant sets {knobs} only"
        settings[variant] = {**now, **{knob: int(value) for knob, value in changed.items()}}
    results = {}
    for name, values in settings.items():
        for knob, value in values.items():
            setattr(pipeline, knob, value)
        wall, cpu, results[name] = _timed_runs(paths, args.model, args.detector_model, args.repeats)
        found = sum(len(result.faces) for result in results[name])
        sides = ", ".join(f"{knob.lower()} {value}" for knob, value in values.items())
        print(f"{name} ({sides}): {wall:.2f} s per 10 photos ({cpu:.2f} s of CPU), {found} faces")
    for name in list(settings)[1:]:
        print(f"\nfull size against {name}:")
        compare(results["full size"], results[name], faces)


if __name__ == "__main__":
    main()
