"""Benchmark: Haar face-detection settings — recall, false positives and time per photo.

Usage:
    .venv/bin/python benchmarks/detection.py [--data ../shared/data/fer2013-train-publictest.csv.gz]
        [--photos 80] [--seed 0] [--cascades default,alt2]

The photo set is built from real pictures only: real faces (FER2013 ``PublicTest`` crops, many
people, poses and lighting conditions, upscaled to 48-200 px) pasted at known positions onto
real non-face photographs shipped with scikit-image (coffee, cat, rocket, galaxies, retina,
motorcycle, coins, brick...), 640x480, one to three faces each; plus scikit-image's astronaut
photograph (one face with its real head, hair and background) pasted at several scales. A
detection counts as a hit when its intersection-over-union with a pasted face is at least 0.3
(Haar boxes are tighter than FER2013's crops); every other detection is a false positive.

For each setting (scale factor, minimum neighbours, longest side the photo is shrunk to for
detection) it prints recall, false positives per photo and the median milliseconds per photo,
so the default can be chosen on measured numbers (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import cv2
import numpy as np

from ferkit.detection import intersection_over_union

BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "stereo_motorcycle",
               "coins", "brick", "grass", "gravel", "horse", "page", "text", "clock")  # fmt: skip
CANVAS = (480, 640)  # photo height, width in pixels
# The astronaut's face box in skimage.data.astronaut() (x, y, width, height), measured once
# with the default Haar cascade; pasted together with the surrounding head.
ASTRONAUT_FACE = (177, 66, 95, 95)


def background_photos() -> list[np.ndarray]:
    """Real non-face photographs from scikit-image, gray, resized to the canvas."""
    import skimage.data

    photos = []
    for name in BACKGROUNDS:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image
        if image.ndim == 3:
            image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
        image = cv2.resize(image.astype(np.uint8), CANVAS[::-1], interpolation=cv2.INTER_AREA)
        photos.append(image)
    return photos


def build_photos(faces: np.ndarray, count: int, seed: int) -> list[tuple[np.ndarray, list]]:
    """(gray 640x480 photo, list of true face boxes) pairs."""
    import skimage.data

    rng = np.random.default_rng(seed)
    backgrounds = background_photos()
    photos = []
    for index in range(count):
        canvas = backgrounds[index % len(backgrounds)].copy()
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            side = int(rng.integers(48, 201))
            for _attempt in range(20):  # find a spot that does not overlap earlier faces
                x = int(rng.integers(0, CANVAS[1] - side))
                y = int(rng.integers(0, CANVAS[0] - side))
                if all(intersection_over_union((x, y, side, side), box) == 0 for box in boxes):
                    break
            else:
                continue
            face = faces[int(rng.integers(len(faces)))]
            canvas[y : y + side, x : x + side] = cv2.resize(face, (side, side), cv2.INTER_CUBIC)
            boxes.append((x, y, side, side))
        photos.append((canvas, boxes))
    # The astronaut with her real surroundings: a tight crop around the head, at 4 scales.
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    face_x, face_y, face_side, _ = ASTRONAUT_FACE
    head = astronaut[face_y - 40 : face_y + face_side + 40, face_x - 40 : face_x + face_side + 40]
    for index, face_target in enumerate((40, 60, 100, 160)):
        factor = face_target / face_side
        scaled = cv2.resize(head, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        canvas = backgrounds[index].copy()
        x, y = (40, 400, 120, 300)[index], (60, 200, 250, 120)[index]
        canvas[y : y + scaled.shape[0], x : x + scaled.shape[1]] = scaled
        offset = round(40 * factor)
        photos.append((canvas, [(x + offset, y + offset, face_target, face_target)]))
    return photos


def evaluate(photos, scale_factor: float, min_neighbors: int, max_side: int, cascade: str):
    """(recall, false positives per photo, median ms per photo) of one Haar setting."""
    from ferkit.detection import HaarDetector

    detector = HaarDetector(
        scale_factor=scale_factor,
        min_neighbors=min_neighbors,
        max_side=max_side,
        cascade=cascade,
    )
    found = total = false_positives = 0
    seconds = []
    for photo, truth in photos:
        start = time.perf_counter()
        boxes = detector.detect(photo)
        seconds.append(time.perf_counter() - start)
        matched = set()
        for box in boxes:
            box = (box.x, box.y, box.width, box.height)
            hits = [i for i, true in enumerate(truth) if intersection_over_union(box, true) >= 0.3]
            if hits:
                matched.update(hits)
            else:
                false_positives += 1
        found += len(matched)
        total += len(truth)
    return found / total, false_positives / len(photos), statistics.median(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013-train-publictest.csv.gz")
    parser.add_argument("--photos", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-factors", default="1.05,1.1,1.15,1.2,1.3")
    parser.add_argument("--min-neighbors", default="3,4,5,6")
    parser.add_argument("--max-sides", default="640,480,320")
    parser.add_argument("--cascades", default="default", help="comma list of: default,alt,alt2")
    args = parser.parse_args()

    from ferkit.data import load_fer2013

    dataset = load_fer2013(args.data)
    faces = dataset.images[dataset.usage == "PublicTest"]
    photos = build_photos(faces, args.photos, args.seed)
    count = sum(len(truth) for _, truth in photos)
    print(f"{len(photos)} photos 640x480, {count} faces; OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} threads")  # fmt: skip
    print(f"{'cascade':>8} {'scale':>6} {'neigh':>6} {'side':>5} {'recall':>7} {'FP/photo':>9} "
          f"{'ms/photo':>9}")  # fmt: skip
    settings = itertools.product(
        args.cascades.split(","),
        [float(value) for value in args.scale_factors.split(",")],
        [int(value) for value in args.min_neighbors.split(",")],
        [int(value) for value in args.max_sides.split(",")],
    )
    for cascade, scale_factor, min_neighbors, max_side in settings:
        recall, false_positives, milliseconds = evaluate(
            photos, scale_factor, min_neighbors, max_side, cascade
        )
        print(f"{cascade:>8} {scale_factor:6.2f} {min_neighbors:6d} {max_side:5d} {recall:7.1%} "
              f"{false_positives:9.2f} {milliseconds:9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
