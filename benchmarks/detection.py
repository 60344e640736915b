"""Benchmark: face detectors (YuNet, Haar settings) — recall, false positives, time per photo.

Usage:
    .venv/bin/python benchmarks/detection.py [--data ../shared/data/fer2013-train-publictest.csv.gz]
        [--photos 80] [--seed 0] [--cascades default,alt2]
        [--haar-settings 1.1/5/640,1.2/3/320] [--yunet-sides 640,480,320]
        [--yunet-file ../shared/models/face_detection_yunet_2023mar.onnx]
        [--end-to-end default,small] [--tracking] [--face-check]

The photo set is built from real pictures only: real faces (FER2013 ``PublicTest`` crops, many
people, poses and lighting conditions, upscaled to 48-200 px) pasted at known positions onto
real non-face photographs shipped with scikit-image (coffee, cat, rocket, galaxies, retina,
motorcycle, coins, brick...), 640x480, one to three faces each; plus scikit-image's astronaut
photograph (one face with its real head, hair and background) pasted at several scales. A
detection counts as a hit when its intersection-over-union with a pasted face is at least 0.3
(Haar boxes are tighter than FER2013's crops); every other detection is a false positive.

For each Haar setting (scale factor, minimum neighbours, longest side the photo is shrunk to
for detection) and for YuNet at each longest side it prints recall, false positives per photo,
the median milliseconds per photo and the share of single-face photos where exactly that one
face was found, so the default can be chosen on measured numbers (docs/benchmarks.md).

YuNet's file comes through ferkit's real lookup: ``--yunet-file`` is installed (SHA-256
checked) into a temporary user cache, from where ``YuNetDetector`` loads it offline.
``--end-to-end`` times the whole photo (detect, align, classify; ``Analyzer.analyze_image``)
with the named models; ``--tracking`` counts the video tracker's id switches on made videos
of two faces crossing paths; ``--face-check`` adds the faces the pipeline keeps with and
without the face check (:mod:`ferkit.faces.face_check`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import cv2
import numpy as np

from ferkit.faces.detection import intersection_over_union

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


def evaluate_detector(photos, detector):
    """(recall, false positives per photo, median ms per photo, exactly-one rate) of a detector.

    The exactly-one rate is over photos with one true face: the share where the detector
    returned one box and it matched that face.
    """
    found = total = false_positives = 0
    seconds, exactly_one = [], []
    for photo, truth in photos:
        start = time.perf_counter()
        boxes = detector.detect(photo)
        seconds.append(time.perf_counter() - start)
        matched, photo_false = set(), 0
        for box in boxes:
            box = (box.x, box.y, box.width, box.height)
            hits = [i for i, true in enumerate(truth) if intersection_over_union(box, true) >= 0.3]
            if hits:
                matched.update(hits)
            else:
                photo_false += 1
        false_positives += photo_false
        found += len(matched)
        total += len(truth)
        if len(truth) == 1:
            exactly_one.append(len(boxes) == 1 and len(matched) == 1)
    return (found / total, false_positives / len(photos), statistics.median(seconds) * 1000,
            float(np.mean(exactly_one)))  # fmt: skip


def evaluate(photos, scale_factor: float, min_neighbors: int, max_side: int, cascade: str):
    """:func:`evaluate_detector` of one Haar setting."""
    from ferkit.faces.detection import HaarDetector

    detector = HaarDetector(
        scale_factor=scale_factor,
        min_neighbors=min_neighbors,
        max_side=max_side,
        cascade=cascade,
    )
    return evaluate_detector(photos, detector)


def use_yunet_file(path: str) -> None:
    """Install ``path`` into a temporary user cache (checksum checked), downloads off."""
    import os
    import tempfile

    from ferkit.faces.detector_files import install_yunet_model

    os.environ["FERKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="ferkit-cache-")
    os.environ["FERKIT_OFFLINE"] = "1"
    os.environ.pop("FERKIT_YUNET_MODEL", None)
    install_yunet_model(path)


class PipelineFaces:
    """The faces ``ferkit predict`` keeps (YuNet at the face check's threshold, then the
    check) behind the ``detect`` interface; its time includes the aligned crops."""

    def __init__(self, face_check: bool):
        from ferkit.inference.pipeline import Analyzer

        self.analyzer = Analyzer("small", "yunet", face_check=face_check, backend="torch")

    def detect(self, image):
        return self.analyzer.find_faces([image])[0][0]


def faceless_photos(pipeline_faces) -> None:
    """False faces and time on the backgrounds alone (each also mirrored and upside down), where
    the face check's second look (turned copies) runs on every photo it leaves empty."""
    photos = [variant for background in background_photos() for variant in (
        background, background[:, ::-1], background[::-1], background[::-1, ::-1])]  # fmt: skip
    photos = [np.ascontiguousarray(photo) for photo in photos]
    for face_check in (False, True):
        finder, false_faces, seconds = pipeline_faces(face_check), 0, []
        for photo in photos[:4]:  # warm-up: the first look at each turned copy's size allocates
            finder.detect(photo)
        for photo in photos:
            started = time.perf_counter()
            false_faces += len(finder.detect(photo))
            seconds.append(time.perf_counter() - started)
        print(f"{len(photos)} photos without a face, {'checked' if face_check else 'pipeline'}: "
              f"{false_faces / len(photos):.2f} false faces a photo, "
              f"{statistics.median(seconds) * 1000:.1f} ms a photo (median)")  # fmt: skip


def end_to_end(photos, model: str, detector: str) -> tuple[float, float]:
    """Median and 90th-percentile ms for a whole photo: detect, align, classify."""
    from ferkit.inference.pipeline import Analyzer

    analyzer = Analyzer(model, detector)
    for photo, _ in photos[:5]:  # warm-up (first calls allocate)
        analyzer.analyze_image(photo)
    seconds = []
    for photo, _ in photos:
        start = time.perf_counter()
        analyzer.analyze_image(photo)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1000, float(np.percentile(seconds, 90)) * 1000


def crossing_video(path, offset: int, speed: float) -> list:
    """Two copies of the astronaut's head crossing paths horizontally, ``offset`` px apart
    vertically (the second passes in front). Returns the true face centres per frame."""
    import skimage.data

    head = cv2.resize(skimage.data.astronaut()[23:216, 138:308], None, fx=0.7, fy=0.7,
                      interpolation=cv2.INTER_AREA)  # fmt: skip
    height, width = head.shape[:2]
    frames = int(np.ceil((CANVAS[1] - width - 40) / speed)) + 6  # until they are apart again
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, CANVAS[::-1])
    truth = []
    for index in range(frames):
        frame = np.full((*CANVAS, 3), 70, np.uint8)
        travel = min(1.0, index * speed / (CANVAS[1] - width - 40))
        xs = (20 + travel * (CANVAS[1] - width - 40), CANVAS[1] - width - 20 - travel * (
            CANVAS[1] - width - 40))  # fmt: skip
        centres = []
        for x, y in zip(xs, (150, 150 + offset)):
            frame[y : y + height, round(x) : round(x) + width] = head
            centres.append((round(x) + width / 2, y + height / 2 - 5))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        truth.append(centres)
    writer.release()
    return truth


def id_switches(results, truth) -> tuple[int, int, int]:
    """(id switches, faces found, faces shown): a switch is a person whose track id changes."""
    switches, found, last = 0, 0, {}
    for result, centres in zip(results, truth):
        for face in result.faces:
            centre = (face.box.x + face.box.width / 2, face.box.y + face.box.height / 2)
            person = int(np.argmin([np.hypot(centre[0] - x, centre[1] - y) for x, y in centres]))
            if person in last and last[person] != face.track:
                switches += 1
            last[person] = face.track
            found += 1
    return switches, found, 2 * len(truth)


def tracking_benchmark() -> None:
    """Id switches of ``ferkit predict``'s tracker on crossing-faces videos."""
    import tempfile
    from pathlib import Path

    from ferkit.inference.pipeline import Analyzer

    analyzer = Analyzer("small", "yunet")
    print(f"{'offset':>6} {'px/frame':>8} {'found':>11} {'id switches':>11}")
    for offset in (0, 30, 60):
        for speed in (8, 16):
            with tempfile.TemporaryDirectory() as folder:
                video = Path(folder) / "crossing.mp4"
                truth = crossing_video(video, offset, speed)
                results = analyzer.analyze_video(video, progress=False)
            switches, found, shown = id_switches(results, truth)
            print(f"{offset:6d} {speed:8d} {found:5d}/{shown:<5d} {switches:11d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013-train-publictest.csv.gz")
    parser.add_argument("--photos", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-factors", default="1.05,1.1,1.15,1.2,1.3")
    parser.add_argument("--min-neighbors", default="3,4,5,6")
    parser.add_argument("--max-sides", default="640,480,320")
    parser.add_argument("--cascades", default="default", help="comma list of: default,alt,alt2")
    parser.add_argument(
        "--haar-settings",
        help="comma list of scale/neighbours/side (e.g. 1.1/5/640,1.2/3/320) instead of the "
        "grid; none: no Haar rows",
    )
    parser.add_argument("--yunet-sides", default="", help="comma list, e.g. 640,480,320")
    parser.add_argument(
        "--yunet-file", default="../shared/models/face_detection_yunet_2023mar.onnx"
    )
    parser.add_argument("--end-to-end", default="", help="comma list of models, e.g. default")
    parser.add_argument("--tracking", action="store_true")
    parser.add_argument(
        "--face-check", action="store_true",
        help="also the pipeline's faces with and without the face check (YuNet, full size)",
    )  # fmt: skip
    args = parser.parse_args()

    from ferkit.data import load_fer2013

    if args.yunet_sides or args.end_to_end or args.tracking or args.face_check:
        use_yunet_file(args.yunet_file)
    dataset = load_fer2013(args.data)
    faces = dataset.images[dataset.usage == "PublicTest"]
    photos = build_photos(faces, args.photos, args.seed)
    count = sum(len(truth) for _, truth in photos)
    single = sum(len(truth) == 1 for _, truth in photos)
    print(f"{len(photos)} photos 640x480, {count} faces ({single} photos with one face); "
          f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")  # fmt: skip
    print(f"{'detector':>8} {'scale':>6} {'neigh':>6} {'side':>5} {'recall':>7} {'FP/photo':>9} "
          f"{'ms/photo':>9} {'exactly 1':>9}")  # fmt: skip
    if args.haar_settings == "none":
        settings = []
    elif args.haar_settings:
        settings = [
            (cascade, float(scale), int(neighbours), int(side))
            for cascade in args.cascades.split(",")
            for scale, neighbours, side in (
                item.split("/") for item in args.haar_settings.split(",")
            )
        ]
    else:
        settings = itertools.product(
            args.cascades.split(","),
            [float(value) for value in args.scale_factors.split(",")],
            [int(value) for value in args.min_neighbors.split(",")],
            [int(value) for value in args.max_sides.split(",")],
        )
    for cascade, scale_factor, min_neighbors, max_side in settings:
        recall, false_positives, milliseconds, one = evaluate(
            photos, scale_factor, min_neighbors, max_side, cascade
        )
        print(f"{cascade:>8} {scale_factor:6.2f} {min_neighbors:6d} {max_side:5d} {recall:7.1%} "
              f"{false_positives:9.2f} {milliseconds:9.1f} {one:9.1%}")  # fmt: skip
    for side in filter(None, args.yunet_sides.split(",")):
        from ferkit.faces.detection import YuNetDetector

        detector = YuNetDetector(max_side=int(side), offline=True)  # the cached, checked file
        recall, false_positives, milliseconds, one = evaluate_detector(photos, detector)
        print(f"{'yunet':>8} {'':>6} {'':>6} {int(side):5d} {recall:7.1%} "
              f"{false_positives:9.2f} {milliseconds:9.1f} {one:9.1%}")  # fmt: skip
    for face_check in (False, True) if args.face_check else ():
        recall, false_positives, milliseconds, one = evaluate_detector(
            photos, PipelineFaces(face_check)
        )
        name = "checked" if face_check else "pipeline"
        print(f"{name:>8} {'':>6} {'':>6} {640:5d} {recall:7.1%} "
              f"{false_positives:9.2f} {milliseconds:9.1f} {one:9.1%}")  # fmt: skip
    if args.face_check:
        faceless_photos(PipelineFaces)
    for model in filter(None, args.end_to_end.split(",")):
        for detector in ("yunet", "haar", "haar-fast"):
            median, p90 = end_to_end(photos, model, detector)
            print(f"whole photo, {model} + {detector}: median {median:.1f} ms, p90 {p90:.1f} ms")
    if args.tracking:
        tracking_benchmark()


if __name__ == "__main__":
    main()
