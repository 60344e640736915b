"""Benchmark: emotion accuracy through the photo pipeline, with and without face alignment.

Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/alignment.py [--faces 300] [--model default]
        [--data PATH] [--detector-model ../shared/models/face_detection_yunet_2023mar.onnx]
        [--no-face-check]

Validation faces (held out from training) in the model's own labels: for a FER+ model
(``default``, ``small``) FER+ ``FER2013Valid`` with its majority votes, for a FER2013 model
(``fer2013``) FER2013 ``PublicTest``. ``--data`` names either; in the other label set, classes
are matched by name (a FER2013 model on FER+ votes: FER+'s Contempt faces left out). FER+
Valid relabels FER2013's PublicTest faces (its PNGs in ../shared differ in contrast from the
CSV's). The faces are upscaled to 96-200 px and pasted at random positions into 640x480 real
non-face photographs (benchmarks/detection.py's backgrounds), once upright and once rotated by
a random angle in [-25, 25] degrees. Each scene goes through
``ferkit.inference.pipeline.Analyzer`` (YuNet, then the classifier) twice: with alignment (the
default, crops from the landmarks) and without (square box crop with a 0.2 margin). The
reference is the same model on the original 48x48 crops ("direct").

Printed per condition: scenes where exactly one face was found at the pasted position,
accuracy on those faces (pipeline vs direct on the same faces, their gap in points with its
paired standard error), and accuracy over all faces counting a missed face as wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import CANVAS, background_photos  # noqa: E402


def paste(background: np.ndarray, face: np.ndarray, rng, angle: float, sides=(96, 200)):
    """(scene, face centre, side): ``face`` upscaled to a random side in ``sides`` (pixels,
    inclusive), rotated by ``angle`` degrees, pasted at a random place."""
    side = int(rng.integers(sides[0], sides[1] + 1))
    patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    # Rotate inside a larger square so the corners survive; paste only the rotated face.
    big = int(np.ceil(side * 1.5))
    offset = (big - side) // 2
    canvas_patch = np.zeros((big, big), np.uint8)
    canvas_patch[offset : offset + side, offset : offset + side] = patch
    mask = np.zeros((big, big), np.uint8)
    mask[offset : offset + side, offset : offset + side] = 255
    matrix = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    canvas_patch = cv2.warpAffine(canvas_patch, matrix, (big, big), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, matrix, (big, big), flags=cv2.INTER_NEAREST)
    x = int(rng.integers(0, CANVAS[1] - big))
    y = int(rng.integers(0, CANVAS[0] - big))
    scene = background.copy()
    region = scene[y : y + big, x : x + big]
    region[mask > 0] = canvas_patch[mask > 0]
    return scene, (x + big / 2, y + big / 2), side


def found_face(result, centre, side):
    """The one detected face whose box centre is within a third of the face side of ``centre``."""
    near = [
        face
        for face in result.faces
        if np.hypot(face.box.x + face.box.width / 2 - centre[0],
                    face.box.y + face.box.height / 2 - centre[1]) < side / 3
    ]  # fmt: skip
    return near[0] if len(result.faces) == 1 and len(near) == 1 else None


def validation_faces(data: str | None, class_names: list[str]):
    """(faces, labels, usage): validation faces labelled in ``class_names``' label set."""
    from ferkit.data import load_fer2013
    from ferkit.data.ferplus import load_ferplus

    if data is None:
        data = "../shared/data/" + (
            "ferplus/FER2013Valid"
            if "Contempt" in class_names
            else "fer2013-train-publictest.csv.gz"
        )
    dataset = load_ferplus(data) if Path(data).is_dir() else load_fer2013(data)
    if list(dataset.class_names) == class_names:
        return dataset.images, dataset.labels, dataset.usage
    # Another label set (a FER2013 model on FER+ votes): classes matched by name, faces of a
    # class the model lacks (FER+'s Contempt) left out and counted.
    index = np.array(
        [class_names.index(n) if n in class_names else -1 for n in dataset.class_names]
    )
    labels = index[dataset.labels]
    known = labels >= 0
    print(f"{data}: {np.sum(~known)} faces of classes the model lacks left out")
    return dataset.images[known], labels[known], dataset.usage[known]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        help="the validation faces (default: FER+ FER2013Valid for a FER+ model, else FER2013 "
        "PublicTest, from ../shared/data)",
    )
    parser.add_argument(
        "--detector-model", default="../shared/models/" + "face_detection_yunet_2023mar.onnx"
    )
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-angle", type=float, default=25.0)
    parser.add_argument("--no-face-check", action="store_true", help="YuNet alone (0.6)")
    args = parser.parse_args()

    from ferkit.inference.pipeline import Analyzer

    backgrounds = background_photos()
    analyzers = {
        align: Analyzer(
            args.model,
            "yunet",
            args.detector_model,
            align=align,
            backend="torch",
            face_check=not args.no_face_check,
        )
        for align in (True, False)
    }
    names = list(analyzers[True].predictor.class_names)
    images, all_labels, usage = validation_faces(args.data, names)
    public = np.flatnonzero(usage == "PublicTest")
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(public, min(args.faces, len(public)), replace=False)
    faces, labels = images[chosen], all_labels[chosen]
    direct = analyzers[True].predictor.predict_proba(faces).argmax(1)
    print(f"{len(chosen)} validation faces, model {args.model}, YuNet; "
          f"direct accuracy on the original crops {np.mean(direct == labels):.1%}")  # fmt: skip
    print(f"{'scenes':<9} {'alignment':<9} {'1 face found':>12} {'pipeline':>9} {'direct':>7} "
          f"{'gap±se':>9} {'all faces':>9} {'ms/scene':>9}")  # fmt: skip
    for condition in ("upright", "rotated"):
        angles = np.zeros(len(faces)) if condition == "upright" else rng.uniform(
            -args.max_angle, args.max_angle, len(faces))  # fmt: skip
        scenes = [paste(backgrounds[index % len(backgrounds)], face, rng, angle)
                  for index, (face, angle) in enumerate(zip(faces, angles))]  # fmt: skip
        for align, analyzer in analyzers.items():
            started = time.perf_counter()
            results = []  # in chunks, as ``ferkit predict`` batches photos
            for start in range(0, len(scenes), 32):
                chunk = [scene for scene, _, _ in scenes[start : start + 32]]
                results += analyzer.analyze_images(chunk, ["scene"] * len(chunk))
            milliseconds = (time.perf_counter() - started) * 1000 / len(scenes)
            hits = [found_face(result, centre, side)
                    for result, (_, centre, side) in zip(results, scenes)]  # fmt: skip
            found = np.array([hit is not None for hit in hits])
            predicted = np.array([names.index(hit.label) if hit else -1 for hit in hits])
            pipeline = np.mean(predicted[found] == labels[found])
            reference = np.mean(direct[found] == labels[found])
            # The gap's standard error: the two are paired (the same faces).
            paired = (predicted[found] == labels[found]).astype(float) - (
                direct[found] == labels[found])  # fmt: skip
            error = paired.std() / np.sqrt(max(found.sum(), 1))
            print(f"{condition:<9} {'on' if align else 'off':<9} {found.mean():12.1%} "
                  f"{pipeline:9.1%} {reference:7.1%} {100 * (pipeline - reference):+5.1f}"
                  f"±{100 * error:.1f} {np.mean(predicted == labels):9.1%} "
                  f"{milliseconds:9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
