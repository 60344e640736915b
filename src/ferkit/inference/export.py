"""Export a trained model (or ensemble) to ONNX, with a parity check against PyTorch.

The exported graph is :class:`ferkit.inference.graph.ProbabilityGraph`, the module the PyTorch
engines run: it takes raw grayscale faces and does everything after the resize: input
normalisation, the model(s), test-time augmentation, softmax and the model card's
temperature scaling (probability calibration, see ferkit.inference.calibration). Its metadata
carries the
class names, the input layout and the model card, so an ONNX consumer needs nothing else.

``quantize="int8"`` adds static INT8 quantization with ONNX Runtime (QDQ format, per-channel
weights, activation ranges calibrated on real faces the caller passes in), checked by top-1
agreement with PyTorch fp32 instead of the fp32 parity bound.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ferkit import __version__
from ferkit.inference.graph import ProbabilityGraph
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import atomic_write
from ferkit.utils.quiet import onnxruntime_session_options, quiet_third_party

#: ONNX opset of exported graphs (recorded in the file and its metadata).
DEFAULT_OPSET = 18
#: Largest allowed |PyTorch - ONNX Runtime| probability difference.
PARITY_TOLERANCE = 1e-4
#: Quantization schemes of :func:`export_onnx` (``quantize=``).
QUANTIZATIONS = ("int8",)
#: Smallest allowed top-1 agreement of an INT8 export with PyTorch fp32 on the check faces.
MIN_INT8_AGREEMENT = 0.98
#: Operators quantized to INT8 (the rest - normalisation, TTA views, pooling means, softmax -
#: stays fp32, so the probabilities keep their resolution).
INT8_OP_TYPES = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool")


def load_graph(model: str | os.PathLike, tta: str | None = None) -> ProbabilityGraph:
    """The :class:`~ferkit.inference.graph.ProbabilityGraph` of a model location, on the CPU.

    Raises:
        FerkitError: for a location without a PyTorch model (e.g. an ``.onnx`` file).

    Example:
        >>> load_graph("small").class_names[:2]  # doctest: +SKIP
        ('Neutral', 'Happy')
    """
    from ferkit.models import hub

    loaded = hub.load(model, device="cpu")
    if not loaded.members:
        raise FerkitError(
            f"{model}: an ONNX file is already exported; export the model it came from"
        )
    return ProbabilityGraph(loaded.members, loaded.card, tta).eval()


@torch.no_grad()
def graph_probabilities(graph: ProbabilityGraph, faces: np.ndarray, batch_size: int = 256):
    """The PyTorch fp32 reference: ``graph``'s probabilities for uint8 faces (N, H, W)."""
    return np.concatenate([
        graph(torch.from_numpy(faces[first : first + batch_size, None].astype(np.float32))).numpy()
        for first in range(0, len(faces), batch_size)
    ])  # fmt: skip


def export_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    tta: str | None = None,
    check_batch: int = 16,
    tolerance: float = PARITY_TOLERANCE,
    quantize: str | None = None,
    calibration=None,
    check_faces=None,
    min_agreement: float = MIN_INT8_AGREEMENT,
    calibration_size: int = 1024,
) -> dict:
    """Export ``model`` (run folder, checkpoint, ensemble or bundled name) to ONNX.

    The file is written only when ONNX Runtime reproduces the PyTorch probabilities within
    ``tolerance`` on a batch of faces (random and constant images).

    With ``quantize="int8"`` the file is quantized statically (see :func:`quantize_graph`):
    ``calibration`` (uint8 faces N x H x W, real preprocessed faces such as FER2013 Training
    rows) sets the activation ranges, and the file is written only when its top-1 class agrees
    with PyTorch fp32 on at least ``min_agreement`` of ``check_faces`` (default: the
    calibration faces). ``calibration`` may also be a FER2013 CSV or image folder: then
    :func:`load_calibration_faces` draws ``calibration_size`` of its faces (Training rows only)
    and other faces of it for the check.

    Returns:
        ``{"path", "opset", "max_abs_difference", "class_names"}``; for INT8 also
        ``"quantization"``, ``"agreement"``, ``"check_faces"``, ``"calibration_faces"`` and,
        for calibration data given as a path, ``"calibration_description"``.

    Raises:
        FerkitError: when ONNX packages are missing, parity or agreement fails, or the
            calibration faces are missing or malformed.

    Example:
        >>> export_onnx("runs/demo", "model.onnx")["max_abs_difference"] < 1e-4  # doctest: +SKIP
        True
        >>> export_onnx("default", "q.onnx", quantize="int8", calibration=faces)  # doctest: +SKIP
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise FerkitError(
            f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}"
        )
    if quantize is not None and calibration is None:
        raise FerkitError(
            f"--quantize {quantize} needs --calibration DATA (calibration=): real faces "
            "(FER2013 CSV or image folder; only its Training rows are used when it has them)"
        )
    if quantize is None and calibration is not None:
        raise FerkitError("--calibration (calibration=) is for --quantize int8 only")
    description = None
    if isinstance(calibration, (str, os.PathLike)):
        calibration, loaded_check_faces, description = load_calibration_faces(
            calibration, calibration_size
        )
        check_faces = loaded_check_faces if check_faces is None else check_faces
    graph = load_graph(model, tta)
    if quantize is None:
        return export_graph(graph, out, opset, check_batch, tolerance, name=str(model))
    result = quantize_graph(
        graph, out, calibration, check_faces, opset, min_agreement, name=str(model)
    )
    if description is not None:
        result["calibration_description"] = description
    return result


def load_calibration_faces(
    data: str | os.PathLike, count: int = 1024, check: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Calibration and check faces for an INT8 export, from a FER2013 CSV or image folder.

    Only ``Training`` rows are used when the data has a Usage column with them (a test split
    must not tune the model it will measure). ``count`` faces are drawn at random (seeded);
    up to ``check`` other faces are the agreement-check faces (None when no face is left).

    Returns:
        ``(calibration, check_faces, description)``.

    Raises:
        FerkitError: when the data is missing, unreadable or empty, or ``count`` < 1.
    """
    from ferkit.data import load_fer2013

    if count < 1:
        raise FerkitError(f"--calibration-size must be at least 1, got {count}")
    if not Path(data).exists():
        raise FerkitError(f"{data}: no such calibration file or folder")
    dataset = load_fer2013(data)
    images, rows = dataset.images, "all rows"
    if dataset.usage is not None and (dataset.usage == "Training").any():
        images, rows = images[dataset.usage == "Training"], "Training rows"
    if len(images) == 0:
        raise FerkitError(f"{data}: no faces to calibrate with")
    order = np.random.default_rng(seed).permutation(len(images))
    calibration = images[order[:count]]
    rest = order[count : count + check]
    check_faces = images[rest] if len(rest) else None
    description = f"{len(calibration)} calibration faces from {data} ({rows})"
    if check_faces is not None:
        description += f", {len(check_faces)} other faces for the agreement check"
    return calibration, check_faces, description


def _as_faces(faces, size: int, what: str) -> np.ndarray:
    """``faces`` as uint8 (N, size, size); other sizes are resized like the Predictor does."""
    from ferkit.data.preprocessing import to_face_array

    try:
        array = np.asarray(faces)
    except (TypeError, ValueError) as error:
        raise FerkitError(f"{what}: not an array of faces ({error})") from error
    if array.ndim != 3 or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise FerkitError(
            f"{what}: expected grayscale faces as an array (N, H, W) with N >= 1, "
            f"got shape {array.shape} of {array.dtype}"
        )
    if array.shape[1:] != (size, size):
        array = np.stack([to_face_array(face, size) for face in array])
    return np.clip(array, 0, 255).astype(np.uint8)


def _quantize_static(fp32_path: Path, int8_path: Path, faces: np.ndarray, name: str) -> None:
    """ONNX Runtime's static quantization of ``fp32_path`` into ``int8_path`` (QDQ, per-channel
    int8 weights with a 7-bit range, uint8 activations with MinMax ranges from ``faces``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Faces(CalibrationDataReader):
        def __init__(self, batch_size: int = 64):
            self.batches = iter(
                {"faces": faces[first : first + batch_size, None].astype(np.float32)}
                for first in range(0, len(faces), batch_size)
            )

        def get_next(self):
            return next(self.batches, None)

    # quantize_static logs a "consider pre-processing" warning on the root logger: the
    # pre-processing (shape inference, graph optimisation) changes nothing for these graphs.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with quiet_third_party():
            quantize_static(
                str(fp32_path),
                str(int8_path),
                Faces(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(INT8_OP_TYPES),
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    except Exception as error:  # ONNX Runtime raises many types; say which model failed
        raise FerkitError(f"{name}: INT8 quantization failed: {error}") from error
    finally:
        root.setLevel(level)


def _onnx_probabilities(proto, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """ONNX Runtime's probabilities of an in-memory ONNX model for uint8 faces (N, H, W)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), onnxruntime_session_options(), providers=["CPUExecutionProvider"]
    )
    return np.concatenate([
        session.run(None, {"faces": faces[first : first + batch_size, None].astype(np.float32)})[0]
        for first in range(0, len(faces), batch_size)
    ])  # fmt: skip


def quantize_graph(
    graph: ProbabilityGraph,
    out: str | os.PathLike,
    calibration,
    check_faces=None,
    opset: int = DEFAULT_OPSET,
    min_agreement: float = MIN_INT8_AGREEMENT,
    name: str = "model",
) -> dict:
    """Export a probability graph to a statically quantized INT8 ONNX file.

    The fp32 export (parity-checked) is quantized with ONNX Runtime's ``quantize_static``:
    QDQ format, weights int8 per output channel with a 7-bit range (``reduce_range``: exact on
    CPUs without VNNI, whose u8 x s8 instructions can saturate), activations uint8 with
    min/max ranges from ``calibration``. The file keeps the fp32 export's metadata and adds
    ``quantization: int8`` and how it was calibrated. It is written (atomically) only if its
    top-1 agreement with PyTorch fp32 on ``check_faces`` (default: the calibration faces) is at
    least ``min_agreement``.
    """
    try:
        import onnx
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401  (checked here, used in _quantize_static)
    except ImportError as error:
        raise FerkitError(
            f"INT8 export needs the onnx extras: pip install 'ferkit[onnx]' ({error})"
        ) from error
    size = graph.input_size
    faces = _as_faces(calibration, size, "calibration faces")
    checked = faces if check_faces is None else _as_faces(check_faces, size, "check faces")

    with tempfile.TemporaryDirectory(prefix="ferkit-int8-") as folder:
        fp32_path, int8_path = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        fp32 = export_graph(graph, fp32_path, opset, name=name)
        _quantize_static(fp32_path, int8_path, faces, name)
        proto = onnx.load(str(int8_path))
    settings = {
        "format": "QDQ",
        "weights": "int8, per channel, reduce_range (7-bit)",
        "activations": "uint8, MinMax calibration",
        "operators": list(INT8_OP_TYPES),
        "calibration_faces": len(faces),
        "onnxruntime": onnxruntime.__version__,
    }
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    metadata.update({"quantization": "int8", "quantization_settings": json.dumps(settings)})
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value

    # Agreement: PyTorch fp32 (the reference) vs the INT8 graph, on real faces.
    expected = graph_probabilities(graph, checked)
    actual = _onnx_probabilities(proto, checked)
    agreement = float((actual.argmax(axis=1) == expected.argmax(axis=1)).mean())
    difference = float(np.abs(actual - expected).max())
    if not agreement >= min_agreement:
        raise FerkitError(
            f"{name}: INT8 agreement check failed: top-1 agreement with PyTorch fp32 "
            f"{agreement:.2%} on {len(checked)} faces < {min_agreement:.0%} (max probability "
            f"difference {difference:.3f}); nothing written"
        )
    path = atomic_write(out, lambda temporary: onnx.save(proto, temporary))
    return {
        "path": str(path),
        "opset": opset,
        "quantization": "int8",
        "agreement": agreement,
        "min_agreement": min_agreement,
        "max_abs_difference": difference,
        "check_faces": len(checked),
        "calibration_faces": len(faces),
        "fp32_max_abs_difference": fp32["max_abs_difference"],
        "class_names": list(graph.class_names),
    }


def export_graph(
    graph: ProbabilityGraph,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    check_batch: int = 16,
    tolerance: float = PARITY_TOLERANCE,
    name: str = "model",
) -> dict:
    """Export a :class:`~ferkit.inference.graph.ProbabilityGraph` (fp32, on the CPU) to ONNX,
    written only when ONNX Runtime matches PyTorch within ``tolerance``; see
    :func:`export_onnx`."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise FerkitError(
            f"ONNX export needs the onnx extras: pip install 'ferkit[onnx]' ({error})"
        ) from error
    model = name
    size = graph.input_size
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with quiet_third_party():  # the exporter's warnings are not the user's business
            program = torch.onnx.export(
                graph,
                (example,),
                input_names=["faces"],
                output_names=["probabilities"],
                dynamic_shapes={"faces": {0: batch}},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; report which model failed
        raise FerkitError(f"{model}: ONNX export failed: {error}") from error
    proto = program.model_proto
    metadata = {
        "ferkit_version": __version__,
        "class_names": json.dumps(list(graph.class_names)),
        "input": f"faces: float32 (N, 1, {size}, {size}), grayscale pixels 0-255, "
        "face crop resized to the input size",
        "normalization": "applied inside the graph: " + json.dumps(graph.normalization),
        "output": "probabilities: float32 (N, classes), softmax over class_names, "
        "calibrated as the model card's calibration says (temperature or map)",
        "opset": str(opset),
        "tta": json.dumps([setting[2] for setting in graph.settings]),
        "temperature_scaling": json.dumps(
            {"member_temperatures": graph.member_temperatures, "temperature": graph.temperature},
            default=dataclasses.asdict,  # vector/Dirichlet maps (ferkit.inference.calibration)
        ),
        "model_card": json.dumps(graph.card),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value

    # Parity: PyTorch (the same graph, fp32) vs ONNX Runtime on the same faces.
    random = np.random.default_rng(0)
    faces = random.integers(0, 256, (check_batch, size, size), dtype=np.uint8)
    faces[0], faces[1] = 0, 255
    expected = graph_probabilities(graph, faces)
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), onnxruntime_session_options(), providers=["CPUExecutionProvider"]
    )
    actual = session.run(None, {"faces": faces[:, None].astype(np.float32)})[0]
    difference = float(np.abs(actual - expected).max())
    if not difference <= tolerance:
        raise FerkitError(
            f"{model}: ONNX parity check failed: max probability difference {difference:.2e} "
            f"> {tolerance:.0e}; nothing written"
        )
    path = atomic_write(out, lambda temporary: onnx.save(proto, temporary))
    return {
        "path": str(path),
        "opset": opset,
        "max_abs_difference": difference,
        "parity_faces": check_batch,
        "tolerance": tolerance,
        "class_names": list(graph.class_names),
    }
