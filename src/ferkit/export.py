"""Export a trained model (or ensemble) to ONNX, with a parity check against PyTorch.

The exported graph takes raw grayscale faces and does everything after the resize: input
normalisation, the model(s), test-time augmentation and softmax. Its metadata carries the
class names, the input layout and the model card, so an ONNX consumer needs nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ferkit import __version__
from ferkit.errors import FerkitError
from ferkit.io import atomic_write

#: ONNX opset of exported graphs (recorded in the file and its metadata).
DEFAULT_OPSET = 18
#: Largest allowed |PyTorch - ONNX Runtime| probability difference.
PARITY_TOLERANCE = 1e-4


class ProbabilityGraph(torch.nn.Module):
    """Raw faces (N, 1, H, W, float 0-255) → class probabilities, for one or more members."""

    def __init__(self, predictor):
        super().__init__()
        from ferkit.runtime import tta_views

        self.tta_views = tta_views
        self.models = torch.nn.ModuleList(model for model, _ in predictor.members)
        self.settings = []
        for _, card in predictor.members:
            tta = predictor.tta if predictor.tta is not None else card.get("tta", "none")
            normalization = card["normalization"]
            self.settings.append((normalization["mean"], normalization["std"], tta))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Average of the members' softmax outputs over their TTA views."""
        total = None
        for model, (mean, std, tta) in zip(self.models, self.settings):
            inputs = faces * (1.0 / (255.0 * std)) - mean / std
            views = self.tta_views(inputs, tta)
            logits = model(torch.cat(views)).view(len(views), faces.shape[0], -1).mean(dim=0)
            probabilities = torch.softmax(logits, dim=1)
            total = probabilities if total is None else total + probabilities
        return total / len(self.models)


def export_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    tta: str | None = None,
    check_batch: int = 16,
    tolerance: float = PARITY_TOLERANCE,
) -> dict:
    """Export ``model`` (run folder, checkpoint, ensemble or bundled name) to ONNX.

    The file is written only when ONNX Runtime reproduces the PyTorch probabilities within
    ``tolerance`` on a batch of faces (random and constant images).

    Returns:
        ``{"path", "opset", "max_abs_difference", "class_names"}``.

    Raises:
        FerkitError: when ONNX packages are missing or parity fails.

    Example:
        >>> export_onnx("runs/demo", "model.onnx")["max_abs_difference"] < 1e-4  # doctest: +SKIP
        True
    """
    from ferkit.inference import Predictor

    predictor = Predictor.from_run(model, device="cpu", tta=tta, backend="torch")
    return export_predictor(predictor, out, opset, check_batch, tolerance, name=str(model))


def export_predictor(
    predictor,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    check_batch: int = 16,
    tolerance: float = PARITY_TOLERANCE,
    name: str = "model",
) -> dict:
    """Export a loaded (PyTorch) :class:`~ferkit.inference.Predictor`; see :func:`export_onnx`."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise FerkitError(
            f"ONNX export needs the onnx extras: pip install 'ferkit[onnx]' ({error})"
        ) from error
    model = name
    graph = ProbabilityGraph(predictor).eval()
    size = predictor.input_size
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
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
    card = predictor.card
    metadata = {
        "ferkit_version": __version__,
        "class_names": json.dumps(list(predictor.class_names)),
        "input": f"faces: float32 (N, 1, {size}, {size}), grayscale pixels 0-255, "
        "face crop resized to the input size",
        "normalization": "applied inside the graph: " + json.dumps(predictor.normalization),
        "output": "probabilities: float32 (N, classes), softmax over class_names",
        "opset": str(opset),
        "tta": json.dumps([setting[2] for setting in graph.settings]),
        "model_card": json.dumps(card),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value

    # Parity: PyTorch (Predictor, fp32) vs ONNX Runtime on the same faces.
    random = np.random.default_rng(0)
    faces = random.integers(0, 256, (check_batch, size, size), dtype=np.uint8)
    faces[0], faces[1] = 0, 255
    expected = predictor.predict_proba(faces)
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
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
        "class_names": list(predictor.class_names),
    }


class OnnxPredictor:
    """Probabilities from an exported ``.onnx`` file with ONNX Runtime (no torch needed).

    Example:
        >>> OnnxPredictor("model.onnx").predict_proba(faces)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FerkitError(f"{path}: no such file")
        options = onnxruntime.SessionOptions()
        # ONNX Runtime's worker threads spin after each run by default; in predict/serve the
        # face detector (OpenCV) runs next on the same cores, and the spinning cost it more
        # than it saves (docs/benchmarks.md: photo latency).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise FerkitError(f"{path}: not a readable ONNX model ({error})") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in metadata:
            raise FerkitError(f"{path}: not a ferkit ONNX export (no class_names metadata)")
        self.class_names = tuple(json.loads(metadata["class_names"]))
        self.card = json.loads(metadata.get("model_card", "{}"))

    def predict_proba(self, faces, batch_size: int = 512) -> np.ndarray:
        """Probabilities (N, classes) for uint8 faces (N, H, W) at the model's input size."""
        faces = np.asarray(faces, dtype=np.float32)
        outputs = [
            self.session.run(None, {"faces": faces[first : first + batch_size, None]})[0]
            for first in range(0, len(faces), batch_size)
        ]
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(outputs)
