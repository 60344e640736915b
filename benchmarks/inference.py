"""Benchmark: inference speed — faces/s at batch 256, single-face latency, photo latency.

Usage:
    .venv/bin/python benchmarks/inference.py [--model default] [--model RUN ...] [--repeats 20]

For each model: PyTorch (fp32, and ``--backend bf16`` where the CPU has native bf16; emulated
bf16 is several times slower than fp32 and is skipped), ONNX Runtime
(when installed; the model is exported with ``ferkit.inference.export``, parity-checked), ONNX
Runtime INT8 (``export_onnx(quantize="int8")``, calibrated on 1,024 FER2013 Training rows of
``--calibration``, by default ``../shared/data/fer2013-train-publictest.csv.gz`` when it
exists; agreement-checked on 512 other Training rows), then the
end-to-end latency of ``ferkit predict``'s pipeline (Haar detection + crop + classification)
with each of those engines on a 640x480 photo with one face (scikit-image's astronaut, pasted
on a gray canvas).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(function, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def report(backend: str, batch_seconds: float, single_seconds: float) -> None:
    """One line: throughput at batch 256 and latency at batch 1."""
    print(
        f"  {backend:<13}{256 / batch_seconds:10.0f} faces/s (batch 256)   "
        f"{single_seconds * 1000:7.2f} ms/face (batch 1)"
    )


def time_backend(name: str, predict, faces: np.ndarray, repeats: int) -> None:
    """Time ``predict`` (a predict_proba) on a batch of 256 faces and on one face."""
    batch = timed(lambda: predict(faces), repeats)
    single = timed(lambda: predict(faces[:1]), repeats * 5)
    report(name, batch, single)


def main() -> None:
    from skimage.data import astronaut

    from ferkit.models.runtime import cpu_has_fast_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model(s) to time (default: default)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--calibration",
        default=str(
            Path(__file__).resolve().parents[2] / "shared/data/fer2013-train-publictest.csv.gz"
        ),
        help="FER2013 CSV for the INT8 row (its Training rows); skipped when missing",
    )
    parser.add_argument("--no-photo", action="store_true", help="skip the photo latencies")
    arguments = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    faces = np.random.default_rng(0).integers(0, 256, (256, 48, 48), dtype=np.uint8)
    photo = np.full((480, 640, 3), 110, np.uint8)
    photo[0:480, 64:576] = astronaut()[16:496]
    native_bf16 = cpu_has_fast_bf16()
    print(f"native bf16: {native_bf16} (PyTorch bf16 rows are skipped without it: emulated)")
    for model in arguments.model or ["default"]:
        with tempfile.TemporaryDirectory() as folder:
            benchmark_model(model, arguments, faces, photo, Path(folder), native_bf16)


def benchmark_model(model, arguments, faces, photo, folder: Path, native_bf16: bool) -> None:
    """Every row for one model; exported ONNX files live in ``folder`` until the photo rows."""
    from ferkit.inference.pipeline import Analyzer
    from ferkit.inference.predictor import Predictor
    from ferkit.models import model_cost

    predictor = Predictor.from_run(model, device="cpu")
    cost = model_cost(predictor.model)
    tta = predictor.tta or predictor.card.get("tta", "none")
    print(
        f"\nmodel {model}: {predictor.card['architecture']}, {cost['parameters']:,} "
        f"parameters, {cost['mflops']:.1f} MFLOPs/face, TTA {tta}"
    )
    time_backend("PyTorch", predictor.predict_proba, faces, arguments.repeats)
    if native_bf16:
        fast = Predictor.from_run(model, device="cpu", backend="bf16")
        time_backend("PyTorch bf16", fast.predict_proba, faces, arguments.repeats)
    # (label, model location, backend) of each engine the photo rows run with.
    photo_engines = [("PyTorch", model, "torch")]
    if native_bf16:
        photo_engines.append(("PyTorch bf16", model, "bf16"))
    try:
        from ferkit.inference.engines import OnnxEngine
        from ferkit.inference.export import export_onnx, load_calibration_faces

        path = folder / "model.onnx"
        export_onnx(model, path)
        onnx = OnnxEngine(path)
        time_backend("ONNX Runtime", onnx.predict_proba, faces, arguments.repeats)
        photo_engines.append(("ONNX Runtime", path, "auto"))
        if Path(arguments.calibration).is_file():
            calibration, check, _ = load_calibration_faces(arguments.calibration)
            int8_path = folder / "model_int8.onnx"
            result = export_onnx(
                model, int8_path, quantize="int8", calibration=calibration, check_faces=check
            )
            int8 = OnnxEngine(int8_path)
            time_backend("ONNX int8", int8.predict_proba, faces, arguments.repeats)
            print(
                f"    (int8 top-1 agreement with PyTorch fp32 {result['agreement']:.2%} "
                f"on {result['check_faces']} Training faces, max probability "
                f"difference {result['max_abs_difference']:.3f})"
            )
            photo_engines.append(("ONNX int8", int8_path, "auto"))
        else:
            print(f"  ONNX int8     skipped: no {arguments.calibration}")
    except ImportError:
        print("  ONNX Runtime  not installed")
    if arguments.no_photo:
        return
    for detector_name in ("haar", "haar-fast"):
        for label, location, backend in photo_engines:
            analyzer = Analyzer(location, detector=detector_name, device="cpu", backend=backend)
            latency = timed(
                lambda analyzer=analyzer: analyzer.analyze_image(photo), arguments.repeats
            )
            found = len(analyzer.analyze_image(photo).faces)
            print(
                f"  photo 640x480, {found} face(s), {detector_name} + classify "
                f"({label}): {latency * 1000:.1f} ms"
            )
        detector = analyzer.detector
        detection = timed(lambda detector=detector: detector.detect(photo), arguments.repeats)
        print(f"  of which {detector_name} detection alone: {detection * 1000:.1f} ms")


if __name__ == "__main__":
    main()
