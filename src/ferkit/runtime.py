"""Where and how models run: device, precision (autocast), memory layout, batched forward.

Shared by training, evaluation and inference, so a face goes through the same code path in
``fit``'s validation, ``ferkit evaluate`` and ``Predictor``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ferkit.errors import FerkitError
from ferkit.preprocessing import normalize_batch


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda|mps`` to an available ``torch.device``.

    Example:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FerkitError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise FerkitError("device 'mps' requested but MPS is not available; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise FerkitError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, mps")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix math natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means plain fp32).

    Example:
        >>> resolve_precision("fp32", torch.device("cpu")) is None
        True
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_batch(batch: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """Move a batch to ``device``, in channels-last layout when asked."""
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


@torch.no_grad()
def batched_logits(
    model: torch.nn.Module,
    faces,
    normalization: dict | None = None,
    batch_size: int = 512,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    tta: str = "none",
) -> torch.Tensor:
    """Float32 logits (N, classes) on the CPU for uint8 faces (N, H, W), in batches.

    The one forward path of ferkit: eval preprocessing (:func:`normalize_batch`), then the model
    in eval mode. ``tta="flip"`` averages the logits of each face and its mirror image.

    Example:
        >>> from ferkit.models import create_model
        >>> model = create_model("seed", channels=[4, 4, 4])
        >>> batched_logits(model, np.zeros((3, 48, 48), np.uint8)).shape
        torch.Size([3, 7])
    """
    device = device or next(model.parameters()).device
    model.eval()
    if not torch.is_tensor(faces):
        faces = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.uint8))
    chunks = []
    for first in range(0, len(faces), batch_size):
        inputs = prepare_batch(
            normalize_batch(faces[first : first + batch_size], normalization),
            device,
            channels_last,
        )
        with autocast(device, autocast_dtype):
            logits = model(inputs).float()
            if tta == "flip":
                logits = (logits + model(torch.flip(inputs, dims=[3])).float()) / 2
            elif tta != "none":
                raise FerkitError(f"unknown tta {tta!r}; choose one of: none, flip")
        chunks.append(logits.cpu())
    if not chunks:
        arguments = getattr(model, "ferkit_arguments", {})
        return torch.zeros(0, arguments.get("num_classes", 0))
    return torch.cat(chunks)
