"""The engines a :class:`~ferkit.inference.Predictor` runs on, chosen once at construction.

* :class:`TorchEngine`: PyTorch running the :class:`~ferkit.inference.graph.ProbabilityGraph`,
  in fp32 (``torch``: reproducible across machines, the reference) or with bfloat16 autocast
  and channels_last memory (``bf16``: several times faster on CPUs with AVX-512-BF16/AMX and on
  GPUs; probabilities differ from fp32 by about 1e-2 at most).
* :class:`OnnxEngine`: ONNX Runtime running an exported graph: a user's ``.onnx`` file, or the
  same graph exported once into the user cache (``onnx``; same probabilities within 1e-4), or
  its INT8 variant (``int8``: built once, agreement-checked, see :mod:`ferkit.inference.int8`).

``--backend auto`` (:func:`_auto_backend`) picks ONNX Runtime when it is installed and the
device is the CPU, else PyTorch; for a bundled model on a CPU with VNNI/AMX, its INT8 variant.

Example:
    >>> from ferkit.models import hub
    >>> from ferkit.inference.graph import ProbabilityGraph
    >>> graph = ProbabilityGraph(hub.load("small").members)  # doctest: +SKIP
    >>> create_engine(graph, "torch").predict_proba(np.zeros((1, 48, 48), np.uint8)).shape
    ... # doctest: +SKIP
    (1, 8)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import torch

from ferkit.inference.graph import ProbabilityGraph
from ferkit.utils.choices import BACKENDS
from ferkit.utils.errors import FerkitError


def _onnxruntime_installed() -> bool:
    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx", "onnxscript"))


def _auto_backend(location, device) -> tuple[str, str]:
    """``--backend auto``: (the backend, why) for a model on ``device``."""
    from ferkit.inference.int8 import cpu_runs_int8_fast, int8_instructions
    from ferkit.pretrained import BUNDLED_MODELS

    if device.type != "cpu" or not _onnxruntime_installed():
        return "torch", "auto: PyTorch (not the CPU, or ONNX Runtime is not installed)"
    if str(location) in BUNDLED_MODELS and not Path(location).exists():
        if cpu_runs_int8_fast():
            instructions = ", ".join(int8_instructions())
            return "int8", f"auto: ONNX Runtime INT8 (bundled model; this CPU has {instructions})"
        return "onnx", "auto: ONNX Runtime fp32 (this CPU has no VNNI/AMX for fast INT8)"
    return "onnx", "auto: ONNX Runtime fp32 (INT8 is automatic for the bundled models only)"


def _empty(class_count: int) -> np.ndarray:
    return np.zeros((0, class_count), dtype=np.float32)


class TorchEngine:
    """PyTorch running a :class:`ProbabilityGraph` in batches (fp32, or bf16 autocast).

    Example:
        >>> engine = TorchEngine(graph, torch.device("cpu"), bfloat16=True)  # doctest: +SKIP
        >>> engine.backend  # doctest: +SKIP
        'bf16'
    """

    quantization = None

    def __init__(self, graph: ProbabilityGraph, device=None, bfloat16: bool = False):
        self.graph = graph.eval()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.graph.to(self.device)
        self.channels_last = bfloat16
        if bfloat16:
            self.graph.to(memory_format=torch.channels_last)
            self.graph.autocast_dtype = torch.bfloat16
        self.backend = "bf16" if bfloat16 else "torch"

    @torch.no_grad()
    def member_logits(self, faces, batch_size: int = 512) -> list[torch.Tensor]:
        """Each member's float32 logits (N, classes) on the CPU, for uint8 faces (N, H, W)."""
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        chunks = []
        for first in range(0, len(faces), batch_size):
            batch = torch.from_numpy(faces[first : first + batch_size].astype(np.float32))
            batch = batch.unsqueeze(1).to(self.device, non_blocking=True)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            chunks.append([logits.float().cpu() for logits in self.graph.member_logits(batch)])
        return [torch.cat(member) for member in zip(*chunks)]

    def predict_proba(self, faces, batch_size: int = 512, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, classes) for uint8 faces (N, H, W) at the model's input size."""
        if len(faces) == 0:
            return _empty(len(self.graph.class_names))
        return self.graph.probabilities(self.member_logits(faces, batch_size), calibrated).numpy()


class OnnxEngine:
    """Probabilities from an exported ``.onnx`` file with ONNX Runtime (no torch needed).

    Args:
        path: a ferkit ONNX export (fp32 or INT8).
        fallback: the PyTorch engine it was exported from, if any: it answers
            ``calibrated=False``, since the graph has the temperature inside.
        backend: the name it reports (``onnx`` or ``int8``).

    Example:
        >>> OnnxEngine("model.onnx").predict_proba(faces)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fallback: TorchEngine | None = None,
        backend: str = "onnx",
    ):
        import onnxruntime

        from ferkit.utils.quiet import onnxruntime_session_options

        path = Path(path)
        if not path.is_file():
            raise FerkitError(f"{path}: no such file")
        options = onnxruntime_session_options()
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
        self.path = path
        self.fallback = fallback
        self.backend = backend
        self.class_names = tuple(json.loads(metadata["class_names"]))
        self.card = json.loads(metadata.get("model_card", "{}"))
        #: "int8" for a quantized export, else None (fp32).
        self.quantization = metadata.get("quantization")
        #: TTA inside the graph, one entry per member (e.g. ["flip"]).
        self.tta = json.loads(metadata.get("tta", "[]"))
        shape = self.session.get_inputs()[0].shape
        self.input_size = (
            int(shape[-1]) if isinstance(shape[-1], int) else int(self.card["input_size"][0])
        )

    def predict_proba(self, faces, batch_size: int = 512, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, classes) for uint8 faces (N, H, W) at the model's input size.

        Raises:
            FerkitError: ``calibrated=False`` for a file with a temperature inside its graph
                and no PyTorch model to answer instead.
        """
        from ferkit.inference.calibration import is_calibrated

        if not calibrated and is_calibrated(self.card):
            # The ONNX graph has the temperature inside; without it, only PyTorch can answer.
            if self.fallback is None:
                raise FerkitError(
                    f"{self.path}: the ONNX graph applies the temperature; uncalibrated "
                    "probabilities need the PyTorch model it was exported from"
                )
            return self.fallback.predict_proba(faces, batch_size, calibrated)
        faces = np.asarray(faces, dtype=np.float32)
        outputs = [
            self.session.run(None, {"faces": faces[first : first + batch_size, None]})[0]
            for first in range(0, len(faces), batch_size)
        ]
        return np.concatenate(outputs) if outputs else _empty(len(self.class_names))


def _cache_path(graph: ProbabilityGraph, quantize: str | None) -> Path:
    """The cache file of ``graph``'s export: one per model content, TTA, temperatures, INT8."""
    from ferkit.data.cache import default_cache_dir

    digest = hashlib.sha256()
    for model, card in zip(graph.models, graph.cards):
        digest.update(json.dumps(card, sort_keys=True, default=str).encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(graph.tta).encode())
    digest.update(json.dumps(graph.temperatures(), default=repr).encode())
    if quantize is not None:
        from ferkit.inference.int8 import CALIBRATION_RECIPE

        digest.update(f"{quantize} {CALIBRATION_RECIPE}".encode())
    return default_cache_dir() / "onnx" / f"{digest.hexdigest()[:32]}.onnx"


def onnx_engine(graph: ProbabilityGraph, quantize: str | None = None, name: str = "model"):
    """ONNX Runtime over ``graph``, exported once (parity-checked) into the user cache.

    ``quantize="int8"`` uses the INT8 variant instead
    (:func:`ferkit.inference.int8.cached_int8_variant`:
    built once, kept only if it passes the agreement check).

    Raises:
        FerkitError: when the export or the INT8 variant fails (or was refused before).
    """
    from ferkit.utils.quiet import announce

    path = _cache_path(graph, quantize)
    fallback = TorchEngine(graph, "cpu")
    if not path.is_file():
        if quantize is None:
            from ferkit.inference.export import export_graph

            # One line on the first use: the export takes seconds; the user should know why.
            announce(f"preparing the model for ONNX Runtime (first use; cached in {path.parent})")
            export_graph(graph, path, name=name)
        else:
            from ferkit.inference.int8 import cached_int8_variant

            cached_int8_variant(graph, path, name=name)
    return OnnxEngine(path, fallback, backend=quantize or "onnx")


def create_engine(
    graph: ProbabilityGraph,
    backend: str = "torch",
    device=None,
    location=None,
) -> tuple[TorchEngine | OnnxEngine, str]:
    """The engine ``backend`` names for ``graph``, and why it runs (``backend_reason``).

    Args:
        graph: the models, cards and TTA.
        backend: one of :data:`ferkit.utils.choices.BACKENDS`.
        device: the PyTorch device (ONNX Runtime runs on the CPU).
        location: where the model came from (``auto`` picks INT8 for bundled names).

    Raises:
        FerkitError: for an unknown backend, or an ONNX/INT8 engine that cannot be had
            (``auto`` falls back from a refused INT8 variant to ONNX Runtime fp32).
    """
    if backend not in BACKENDS:
        raise FerkitError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    name = str(location or "model")
    reason = f"--backend {backend}"
    if backend == "auto":
        backend, reason = _auto_backend(location, device)
    if backend in ("torch", "bf16"):
        return TorchEngine(graph, device, bfloat16=backend == "bf16"), reason
    try:
        engine = onnx_engine(graph, "int8" if backend == "int8" else None, name)
    except FerkitError as error:
        if not reason.startswith("auto") or backend != "int8":
            raise
        engine = onnx_engine(graph, None, name)  # auto never fails for want of INT8
        reason = f"auto: ONNX Runtime fp32 (the INT8 variant was refused: {error})"
    return engine, reason
