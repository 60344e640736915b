"""Choose the face check's second look: the turned copies it searches when it found no face.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/experiments/face_search.py [--scenes 1200]
        [--faceless 400] [--write] [--data ../shared/data/fer2013-train-publictest.csv.gz]
        [--detector-model ../shared/models/face_detection_yunet_2023mar.onnx]

YuNet misses some faces, upright ones too, that it finds in a copy of the photo turned by
20-40 degrees. With the face check on, ``Analyzer.find_faces`` looks again in turned copies of
a photo where it found no face (``search_angles`` in the check's card) and keeps what YuNet
scores at least ``search_score_threshold`` (its own default, 0.6, not the first look's 0.3:
more looks give false faces more chances) and the check accepts.

Measured here on pictures no benchmark uses: single-face scenes of the check's held-out Training
faces (the 10 % benchmarks/experiments/train_face_check.py holds out) pasted into real pictures that
are not the benchmarks' backgrounds (its ``selection_backgrounds``), half upright, half turned by up
to 25 degrees; and photos without a face (those pictures, also zoomed 1.5x and 2x, each mirrored and
upside down, and generated scenes). At YuNet's 0.6, the chosen angles find exactly the one face most
often; within 3 scenes of the best, the fewest angles.
``--write`` stores them in the bundled card; the printed table has every candidate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/ (alignment.paste) and this folder (train_face_check's scenes).
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from alignment import paste  # noqa: E402
from train_face_check import (  # noqa: E402
    generated_background,
    selection_backgrounds,
    split_training,
)

#: YuNet scores the second look was measured at; it keeps YuNet's own default (0.6): the lower
#: first-look threshold (0.3) was set for one look, and the selection pictures have too few
#: hard false faces to set a threshold for four more looks by measurement.
SCORES = (0.3, 0.6)
ANGLE_SETS = ((-15, 15), (-20, 20), (-25, 25), (-30, 30), (-40, 40), (-20, 20, -40, 40))


def selection_photos(data: str, count: int, faceless: int, seed: int):
    """(single-face scenes as (scene, centre, side), faceless photos)."""
    from ferkit.data import load_fer2013

    dataset = load_fer2013(data)
    # The same 10 % as the bundled check's training held out (its --seed 0).
    _, held_out = split_training(dataset, np.random.default_rng(0))
    rng = np.random.default_rng(seed)
    backgrounds = selection_backgrounds()
    scenes = []
    for index, face in enumerate(held_out[rng.choice(len(held_out), count, replace=False)]):
        background = backgrounds[rng.integers(len(backgrounds))]
        if rng.random() < 0.5:
            background = np.ascontiguousarray(background[:, ::-1])
        angle = rng.uniform(-25, 25) if index % 2 else 0.0
        scenes.append(paste(background, face, rng, angle))
    empty = [np.ascontiguousarray(variant) for picture in backgrounds
             for background in (picture, *zoomed(picture))
             for variant in (background, background[:, ::-1], background[::-1],
                             background[::-1, ::-1])]  # fmt: skip
    empty += [generated_background(rng) for _ in range(faceless)]
    return scenes, empty


def zoomed(picture: np.ndarray) -> list[np.ndarray]:
    """The picture's centre blown up 1.5x and 2x to its size (more real textures, at the
    scales faces are found at)."""
    import cv2

    height, width = picture.shape[:2]
    views = []
    for factor in (1.5, 2.0):
        top, left = round(height * (1 - 1 / factor) / 2), round(width * (1 - 1 / factor) / 2)
        centre = picture[top : height - top, left : width - left]
        views.append(cv2.resize(centre, (width, height), interpolation=cv2.INTER_CUBIC))
    return views


def second_look_candidates(analyzer, images: list, angles) -> dict:
    """{angle: per image, [(box, check logit)]} of YuNet in copies turned by each angle."""
    from ferkit.faces.alignment import face_crop
    from ferkit.faces.detection import detect_rotated

    found = {}
    for angle in angles:
        boxes = [detect_rotated(analyzer.detector, image, angle) for image in images]
        crops = [face_crop(image, box) for image, image_boxes in zip(images, boxes)
                 for box in image_boxes]  # fmt: skip
        logits = iter(analyzer.face_check.logits(np.stack(crops)) if crops else [])
        found[angle] = [[(box, next(logits)) for box in image_boxes] for image_boxes in boxes]
    return found


def second_look(candidates: dict, index: int, angles, threshold: float, score: float) -> list:
    """What the pipeline keeps for image ``index``: candidates YuNet scores ``score`` or more
    and the check accepts, one per face."""
    from ferkit.faces.detection import non_maximum_suppression

    kept = [box for angle in angles for box, logit in candidates[angle][index]
            if logit >= threshold and box.score >= score]  # fmt: skip
    return non_maximum_suppression(kept)


def is_the_face(boxes, centre, side) -> bool:
    """Exactly one face, within a third of the face's side of its centre."""
    return (
        len(boxes) == 1
        and np.hypot(
            boxes[0].x + boxes[0].width / 2 - centre[0],
            boxes[0].y + boxes[0].height / 2 - centre[1],
        )
        < side / 3
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013-train-publictest.csv.gz")
    parser.add_argument(
        "--detector-model", default="../shared/models/" + "face_detection_yunet_2023mar.onnx"
    )
    parser.add_argument("--scenes", type=int, default=1200, help="single-face scenes")
    parser.add_argument("--faceless", type=int, default=400, help="generated faceless photos")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="store the choice in the card")
    args = parser.parse_args()

    from ferkit.faces.detection import YUNET_SCORE_THRESHOLD
    from ferkit.faces.face_check import FACE_CHECK_STEM
    from ferkit.inference.pipeline import Analyzer

    started = time.time()
    scenes, empty_photos = selection_photos(args.data, args.scenes, args.faceless, args.seed)
    analyzer = Analyzer("fer2013", "yunet", args.detector_model, backend="torch")
    check = analyzer.face_check
    check.search_angles = ()  # the first look only
    images = [scene for scene, _, _ in scenes] + empty_photos
    first = [box for start in range(0, len(images), 32)
             for box in analyzer.find_faces(images[start : start + 32])[0]]  # fmt: skip
    again = [index for index, boxes in enumerate(first) if not boxes]
    angles = sorted({angle for angle_set in ANGLE_SETS for angle in angle_set})
    candidates = second_look_candidates(analyzer, [images[index] for index in again], angles)
    position = {index: place for place, index in enumerate(again)}
    faceless = range(len(scenes), len(images))
    first_false = np.mean([len(first[index]) for index in faceless])
    print(f"{len(scenes)} single-face scenes, {len(empty_photos)} photos without a face "
          f"(non-benchmark pictures, held-out Training faces); {len(again)} left empty by the "
          f"first look, which finds {first_false:.3f} false faces a faceless photo "
          f"({time.time() - started:.0f} s)")  # fmt: skip
    print(f"{'angles':<20} {'YuNet score':>11} {'exactly one':>11} {'added FP/photo':>14}")
    results = []
    for angle_set, score in [((), 0.0)] + [
            (angle_set, score) for angle_set in ANGLE_SETS for score in SCORES]:  # fmt: skip
        found = [
            second_look(candidates, position[index], angle_set, check.threshold, score)
            if index in position
            else first[index]
            for index in range(len(images))
        ]
        rate = float(
            np.mean(
                [
                    is_the_face(found[index], centre, side)
                    for index, (_, centre, side) in enumerate(scenes)
                ]
            )
        )
        added = float(np.mean([len(found[index]) for index in faceless])) - first_false
        results.append((rate, added, angle_set, score))
        print(f"{str(angle_set):<20} {score:11.2f} {rate:11.1%} {added:14.3f}")
    chosen = [result for result in results if result[3] == YUNET_SCORE_THRESHOLD]
    top = max(rate for rate, *_ in chosen)
    rate, added, angle_set, score = min(
        (result for result in chosen if result[0] >= top - 3 / len(scenes)),
        key=lambda result: len(result[2]),
    )  # fmt: skip
    print(f"chosen: angles {angle_set}, YuNet score {score:.2f}: exactly one {rate:.1%}, "
          f"{added:+.3f} false faces a faceless photo")  # fmt: skip
    if args.write:
        card_path = FACE_CHECK_STEM.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card.update(search_angles=list(angle_set), search_score_threshold=score)
        card["search_selection"] = {
            "scenes": len(scenes), "faceless_photos": len(empty_photos),
            "exactly_one_face": round(rate, 4), "exactly_one_face_first_look": results[0][0],
            "added_false_faces_a_faceless_photo": round(added, 4),
            "command": "benchmarks/experiments/face_search.py " + " ".join(sys.argv[1:]),
        }  # fmt: skip
        card.pop("search_angles_selection", None)
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote the second look to {card_path}")


if __name__ == "__main__":
    main()
