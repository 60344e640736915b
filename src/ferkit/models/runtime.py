"""Where and how models run: device, precision (autocast), memory layout, batched forward.

Shared by training, evaluation and inference, so a face goes through the same code path in
``fit``'s validation, ``ferkit evaluate`` and ``Predictor``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ferkit.data.preprocessing import normalize_batch
from ferkit.utils.choices import TTA_MODES
from ferkit.utils.errors import FerkitError


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda|mps`` to an available ``torch.device``.

    Example:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if name == "auto" or name.startswith("cuda"):
        # Faces have one fixed size, so cuDNN's per-shape kernel autotuning pays off at once.
        torch.backends.cudnn.benchmark = True
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda:") and name[5:].isdigit():
        if not torch.cuda.is_available() or int(name[5:]) >= torch.cuda.device_count():
            raise FerkitError(f"device {name!r} requested but that GPU is not available")
        return torch.device(name)
    if name == "cuda" and not torch.cuda.is_available():
        raise FerkitError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise FerkitError("device 'mps' requested but MPS is not available; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise FerkitError(f"unknown device {name!r}; choose one of: auto, cpu, cuda, mps")
    return torch.device(name)


#: glibc ``mallopt`` settings for CPU training (malloc.h's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD,
#: M_TOP_PAD): allocations up to 256 MiB (a batch's activations) come from the heap instead of
#: a fresh ``mmap`` each, and freed memory stays in the process (up to 1 GiB) for the next
#: step, with the heap grown 512 MiB at a time. glibc's defaults give every large tensor new
#: pages from the kernel and hand them back when it is freed: training the notebook's CNN
#: then page-faulted ~2 million times in 11 steps, and keeping the memory made it 20-27 %
#: faster (docs/benchmarks.md).
ALLOCATOR_SETTINGS = {-3: 256 * 2**20, -1: 2**30, -2: 2**29}
_allocator_tuned = False


def tune_allocator() -> bool:
    """Make glibc's malloc keep freed tensor memory for reuse (Linux; once per process).

    PyTorch's CPU tuning guide advises a caching allocator (jemalloc, tcmalloc) for the same
    reason; these ``mallopt`` calls get most of the gain without preloading a library. The
    process keeps its peak memory instead of returning it between steps, so it is used for
    training, where the next step needs the same memory again.

    Returns:
        True when the settings are in force (now or from an earlier call), False where there is
        no glibc (macOS, Windows, musl).

    Example:
        >>> tune_allocator() in (True, False)
        True
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ALLOCATOR_SETTINGS.items()
    _allocator_tuned = all(mallopt(option, value) == 1 for option, value in settings)
    return _allocator_tuned


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
    if precision == "fp16":
        if device.type != "cuda":
            raise FerkitError("precision 'fp16' needs a CUDA device; on CPU use bf16 or fp32")
        return torch.float16
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


def tta_views(inputs: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a batch that test-time augmentation averages over.

    ``none``: the batch; ``flip``: it and its mirror image; ``shift``: the flip pair, each also
    shifted by 2 px towards the four corners (10 views), like the multi-crop TTA of FER
    papers but without changing the input size.

    Example:
        >>> len(tta_views(torch.zeros(1, 1, 48, 48), "shift"))
        10
    """
    if tta not in TTA_MODES:
        raise FerkitError(f"unknown tta {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    views = [inputs]
    if tta in ("flip", "shift"):
        views.append(torch.flip(inputs, dims=[3]))
    if tta == "shift":
        margin = 2
        height, width = inputs.shape[-2:]
        for view in list(views):
            padded = torch.nn.functional.pad(view, (margin,) * 4, mode="replicate")
            for top, left in ((0, 0), (0, 2 * margin), (2 * margin, 0), (2 * margin, 2 * margin)):
                views.append(padded[..., top : top + height, left : left + width])
    return views


def view_logits(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    tta: str = "none",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits (N, classes) of a normalised batch (N, 1, H, W), averaged over its TTA views.

    The one model call of evaluation and inference: :func:`batched_logits` (training's
    validation) and :class:`ferkit.inference.graph.ProbabilityGraph` (predict, evaluate,
    export) both go through it. Under ``autocast_dtype`` the logits come back as float32.

    Example:
        >>> from ferkit.models import create_model
        >>> model = create_model("classic", channels=[4, 4, 4]).eval()
        >>> view_logits(model, torch.zeros(2, 1, 48, 48), "flip").shape
        torch.Size([2, 7])
    """
    views = tta_views(inputs, tta)
    # One forward pass over all views stacked: fewer, larger batches run faster.
    if autocast_dtype is None:
        logits = model(torch.cat(views))
    else:
        with autocast(inputs.device, autocast_dtype):
            logits = model(torch.cat(views)).float()
    # shape[0], not len(): an ONNX export keeps the batch axis symbolic.
    return logits.view(len(views), inputs.shape[0], -1).mean(dim=0)


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

    Training's validation forward: eval preprocessing (:func:`normalize_batch`), then the model
    in eval mode (:func:`view_logits`). With ``tta`` (see :func:`tta_views`) the logits of the
    views are averaged.

    Example:
        >>> from ferkit.models import create_model
        >>> model = create_model("classic", channels=[4, 4, 4])
        >>> batched_logits(model, np.zeros((3, 48, 48), np.uint8)).shape
        torch.Size([3, 7])
    """
    device = device or next(model.parameters()).device
    model.eval()
    if not torch.is_tensor(faces):
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        if not faces.flags.writeable:  # e.g. arrays from PIL; torch wants writable memory
            faces = faces.copy()
        faces = torch.from_numpy(faces)
    chunks = []
    for first in range(0, len(faces), batch_size):
        inputs = prepare_batch(
            normalize_batch(faces[first : first + batch_size], normalization),
            device,
            channels_last,
        )
        chunks.append(view_logits(model, inputs, tta, autocast_dtype).float().cpu())
    if not chunks:
        arguments = getattr(model, "ferkit_arguments", {})
        return torch.zeros(0, arguments.get("num_classes", 0))
    return torch.cat(chunks)
