"""Benchmark: how faithful the INT8 variant of a model is on real faces, and how fast.

Usage:
    .venv/bin/python benchmarks/int8_agreement.py [--model small] [--data FER2013.csv.gz]
        [--split PublicTest] [--rounds 3]

Builds the INT8 variant the way ``--backend int8``/``auto`` does (calibrated on faces ferkit
draws itself, checked on other drawn faces; ferkit.inference.int8), plus, for comparison, one
calibrated on 1,024 real Training faces of ``--data``, and scores both against PyTorch fp32 on the
``--split`` faces: accuracy, top-1 agreement with fp32, largest probability difference. Then it
times ONNX Runtime fp32 and the drawn-face INT8 variant on one face and at batch 256, in
interleaved rounds (ratios stay fair on a shared machine). Prints whether this CPU has
VNNI/AMX.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit.data.ferplus import FERPLUS_CLASS_NAMES
from ferkit.evaluation import align_labels, load_split
from ferkit.inference.engines import OnnxEngine
from ferkit.inference.export import export_graph, load_calibration_faces, load_graph, quantize_graph
from ferkit.inference.int8 import build_int8_variant, cpu_runs_int8_fast, int8_instructions
from ferkit.inference.predictor import Predictor

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
DEFAULT_DATA = SHARED / "fer2013-train-publictest.csv.gz"
#: The validation data of a FER+ model (its 8 classes); FER2013's CSV for the others.
FERPLUS_DATA = SHARED / "ferplus"


def score(name: str, probabilities: np.ndarray, reference: np.ndarray, labels: np.ndarray):
    accuracy = float((probabilities.argmax(1) == labels).mean())
    agreement = float((probabilities.argmax(1) == reference.argmax(1)).mean())
    difference = float(np.abs(probabilities - reference).max())
    print(f"{name:<38}{accuracy:>9.2%}{agreement:>11.2%}{difference:>10.3f}")


def per_face_ms(session: OnnxEngine, faces: np.ndarray, batch: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(faces), batch):
            session.predict_proba(faces[first : first + batch], batch)
        best = min(best, (time.perf_counter() - start) / len(faces) * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--data", help="default: FER+ for a FER+ model, else the FER2013 CSV")
    parser.add_argument("--split", default="PublicTest")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    predictor = Predictor.from_run(arguments.model, device="cpu", backend="torch")
    ferplus = tuple(predictor.class_names) == FERPLUS_CLASS_NAMES
    arguments.data = arguments.data or str(FERPLUS_DATA if ferplus else DEFAULT_DATA)
    dataset = load_split(arguments.data, arguments.split)
    faces, labels = dataset.images, align_labels(dataset, predictor.class_names)
    fp32 = predictor.predict_proba(faces)
    print(f"model {arguments.model}, {len(faces)} {arguments.split} faces of "
          f"{Path(arguments.data).name}, TTA {predictor.card.get('tta')}; CPU INT8 "
          f"instructions: {', '.join(int8_instructions()) or 'none (no VNNI/AMX)'}; "
          f"--backend auto picks {'INT8' if cpu_runs_int8_fast() else 'fp32'} here")  # fmt: skip
    graph = load_graph(arguments.model)
    with tempfile.TemporaryDirectory() as folder:
        drawn = build_int8_variant(graph, Path(folder) / "drawn.onnx", name=arguments.model)
        calibration, check, description = load_calibration_faces(arguments.data, 1024)
        real = quantize_graph(graph, Path(folder) / "real.onnx", calibration, check)
        export_graph(graph, Path(folder) / "fp32.onnx")
        sessions = {
            "ONNX Runtime fp32": OnnxEngine(Path(folder) / "fp32.onnx"),
            "INT8, drawn-face calibration": OnnxEngine(drawn["path"]),
            "INT8, real Training calibration": OnnxEngine(real["path"]),
        }
        print(f"drawn-face variant: agreement {drawn['agreement']:.2%} on "
              f"{drawn['check_faces']} drawn check faces; real: {description}")  # fmt: skip
        print(f"{'variant':<38}{'accuracy':>9}{'agreement':>11}{'max diff':>10}")
        score("PyTorch fp32 (reference)", fp32, fp32, labels)
        for name, session in sessions.items():
            score(name, session.predict_proba(faces), fp32, labels)
        timed = {name: sessions[name] for name in list(sessions)[:2]}
        single = {name: [] for name in timed}
        batched = {name: [] for name in timed}
        for _ in range(arguments.rounds):  # interleaved: both see the same machine load
            for name, session in timed.items():
                single[name].append(per_face_ms(session, faces[:200], 1, 1))
                batched[name].append(per_face_ms(session, faces[:1024], 256, 1))
    print(f"{'speed (best of rounds)':<38}{'ms/face, 1':>12}{'faces/s, 256':>14}")
    for name in timed:
        print(f"{name:<38}{min(single[name]):>12.3f}{1000 / min(batched[name]):>14.0f}")
    first, second = list(timed)
    print(f"INT8 / fp32 speed: one face {min(single[first]) / min(single[second]):.2f}x, "
          f"batch 256 {min(batched[first]) / min(batched[second]):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
