"""Benchmark: ``ferkit explain`` on a 640x480 photo — detection, prediction and the map.

Usage:
    .venv/bin/python benchmarks/explain.py [--model default] [--repeats 5] [--detector yunet]
        [--detector-model ../shared/models/face_detection_yunet_2023mar.onnx] [--backend auto]

The photo is scikit-image's astronaut (one face) resized to 640x480. For each method it runs
:func:`ferkit.evaluation.explain.explain_image` (detection with ``ferkit explain``'s defaults:
YuNet and the face check, the aligned crop, prediction, map) once to warm up,
then ``--repeats`` times, and prints the median and slowest wall-clock seconds; the target of
issue 16 is at most 1 s on 2 cores. Writing the overlay PNG and JSON is not included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import torch

from ferkit.evaluation.explain import explain_image
from ferkit.inference.pipeline import Analyzer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detector", default="yunet")
    parser.add_argument(
        "--detector-model", default="../shared/models/face_detection_yunet_2023mar.onnx"
    )
    parser.add_argument("--backend", default="auto", help="as ferkit explain's --backend")
    arguments = parser.parse_args()
    from skimage import data

    photo = cv2.resize(data.astronaut(), (640, 480), interpolation=cv2.INTER_AREA)
    detector_model = arguments.detector_model if arguments.detector == "yunet" else None
    analyzer = Analyzer(arguments.model, arguments.detector, detector_model, device="cpu",
                        backend=arguments.backend)  # fmt: skip
    threads = torch.get_num_threads()
    print(f"model {arguments.model}, backend {arguments.backend}, detector "
          f"{analyzer.detector_name}, {threads} threads, 640x480 photo")  # fmt: skip
    for method in ("gradcam", "occlusion"):
        explain_image(analyzer, photo, method)  # warm-up
        times = []
        for _ in range(arguments.repeats):
            started = time.perf_counter()
            faces = explain_image(analyzer, photo, method)
            times.append(time.perf_counter() - started)
        labels = ", ".join(f"{face.label} {face.score:.0%}" for face in faces)
        print(f"{method:<10} median {statistics.median(times):.3f} s   slowest {max(times):.3f} s"
              f"   ({len(faces)} face(s): {labels})")  # fmt: skip


if __name__ == "__main__":
    main()
