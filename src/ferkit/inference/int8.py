"""INT8 where it is safe: which CPUs run INT8 fast, and the cached INT8 variant of a model.

ONNX Runtime's INT8 kernels beat fp32 clearly on CPUs with integer dot-product instructions
(AVX-512 VNNI, AVX-VNNI, AMX): ``--backend auto`` picks INT8 there, for the bundled models,
whose INT8 variants were measured on real faces (docs/accuracy.md). Elsewhere it keeps ONNX
Runtime fp32. ``--backend int8`` asks for INT8 on any CPU and any PyTorch model.

The variant is built once per model into the user cache: the fp32 export (parity-checked) is
quantized statically (:func:`ferkit.inference.export.quantize_graph`) with activation ranges from
faces that ferkit draws itself (:func:`ferkit.data.synth.generate_faces`), so no dataset is
needed at run time, and it is kept only when its top-1 class agrees with PyTorch fp32 on other
drawn faces (:data:`ferkit.inference.export.MIN_INT8_AGREEMENT`).

Example:
    >>> cpu_runs_int8_fast({"avx2", "avx512_vnni"})
    True
    >>> cpu_runs_int8_fast({"avx2", "fma"})
    False
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: /proc/cpuinfo flags of instructions that make INT8 matrix products fast.
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Drawn faces for the activation ranges, and other drawn faces for the agreement check.
CALIBRATION_FACES = 256
CHECK_FACES = 256
#: Bump when the calibration recipe changes, so cached variants are rebuilt.
CALIBRATION_RECIPE = "synth-v1"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of this CPU (empty where /proc/cpuinfo is missing).

    Example:
        >>> isinstance(cpu_flags(), set)
        True
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return set(value.split())
    return set()


def cpu_runs_int8_fast(flags: set[str] | None = None) -> bool:
    """True when the CPU has VNNI or AMX (see :data:`INT8_CPU_FLAGS`).

    Example:
        >>> cpu_runs_int8_fast({"amx_int8"})
        True
    """
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in INT8_CPU_FLAGS)


def int8_instructions(flags: set[str] | None = None) -> list[str]:
    """The INT8 instruction flags this CPU has, for messages (``[]`` when none).

    Example:
        >>> int8_instructions({"avx2", "avx_vnni"})
        ['avx_vnni']
    """
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in INT8_CPU_FLAGS if flag in flags]


def calibration_faces(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Drawn faces for INT8 calibration and, different ones, for the agreement check.

    Example:
        >>> calibration, check = calibration_faces(48)  # doctest: +SKIP
        >>> calibration.shape, check.shape  # doctest: +SKIP
        ((256, 48, 48), (256, 48, 48))
    """
    from ferkit.data.preprocessing import to_face_array
    from ferkit.data.synth import generate_faces

    faces, _ = generate_faces(CALIBRATION_FACES + CHECK_FACES, seed=seed)
    if size != faces.shape[-1]:
        faces = np.stack([to_face_array(face, size) for face in faces])
    return faces[:CALIBRATION_FACES], faces[CALIBRATION_FACES:]


def build_int8_variant(graph, path: str | Path, name: str = "model") -> dict:
    """Quantize a :class:`~ferkit.inference.graph.ProbabilityGraph` into ``path`` (see the
    module docstring); ``name`` names the model in messages.

    Raises:
        FerkitError: when the onnx extras are missing or the agreement check fails (then
            nothing is written).

    Example:
        >>> from ferkit.inference.export import load_graph  # doctest: +SKIP
        >>> build_int8_variant(load_graph("small"), "small_int8.onnx")  # doctest: +SKIP
    """
    from ferkit.inference.export import quantize_graph

    calibration, check = calibration_faces(graph.input_size)
    return quantize_graph(graph, path, calibration, check, name=name)


def cached_int8_variant(graph, path: str | Path, name: str = "model") -> Path:
    """The INT8 variant at ``path`` (a cache entry), built on the first call.

    Says so in one line when it builds. A variant refused by the agreement check is remembered
    beside ``path`` (``.refused.txt``), so later calls fail at once instead of rebuilding.

    Raises:
        FerkitError: when the variant is (or was) refused, or cannot be built.
    """
    from ferkit.utils.errors import FerkitError
    from ferkit.utils.io import write_text
    from ferkit.utils.quiet import announce

    path = Path(path)
    refused = path.with_suffix(".refused.txt")
    if path.is_file():
        return path
    if refused.is_file():
        raise FerkitError(refused.read_text().strip())
    announce(f"preparing the model for ONNX Runtime INT8 (first use; cached in {path.parent})")
    try:
        build_int8_variant(graph, path, name=name)
    except FerkitError as error:
        if "agreement check failed" in str(error):  # not for missing packages: those get fixed
            write_text(refused, f"{error}\n")
        raise
    return path


def backend_info(predictor) -> dict:
    """Which engine runs a predictor and why, for ``/v1/model`` and ``predict --verbose``.

    Example:
        >>> backend_info(Predictor.from_run("small", backend="auto"))  # doctest: +SKIP
        {'backend': 'onnx', 'quantization': None, 'reason': 'auto: ONNX Runtime fp32 (...)',
         'cpu_int8_instructions': []}
    """
    return {
        "backend": getattr(predictor, "backend", None),
        "quantization": getattr(predictor, "quantization", None),
        "reason": getattr(predictor, "backend_reason", None),
        "cpu_int8_instructions": int8_instructions(),
    }


def describe_backend(predictor) -> str:
    """One line: the engine, its precision and why it was chosen.

    Example:
        >>> describe_backend(Predictor.from_run("small", backend="onnx"))  # doctest: +SKIP
        'backend: onnx (fp32) - --backend onnx; CPU INT8 instructions: none'
    """
    info = backend_info(predictor)
    precision = info["quantization"] or ("bf16" if info["backend"] == "bf16" else "fp32")
    instructions = ", ".join(info["cpu_int8_instructions"]) or "none"
    return (
        f"backend: {info['backend']} ({precision}) - {info['reason'] or 'as loaded'}; "
        f"CPU INT8 instructions: {instructions}"
    )
