"""Every fixed list of choices in ferkit, in one torch-free module.

The CLI builds its parser from these (without importing torch or OpenCV, so ``ferkit --help``
stays instant) and the library validates against the same tuples, so a choice cannot be added
in one place and forgotten in another.

Example:
    >>> from ferkit.utils.choices import OPTIMIZERS
    >>> "sgd" in OPTIMIZERS
    True
"""

from __future__ import annotations

#: Training optimizers (SGD uses Nesterov momentum).
OPTIMIZERS = ("adam", "adamw", "sgd")
#: Devices a model runs on ("cuda:N" names one GPU and is accepted where noted).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Training precisions: auto (bf16 where the hardware has it), fp32, bf16, fp16 (CUDA only).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: How training data is split: a seeded stratified split, or FER2013's Usage column.
SPLITS = ("stratified", "usage")
#: Learning-rate schedules (see ferkit.training.schedule).
SCHEDULES = ("step", "cosine")
#: Knowledge distillation: teacher on every augmented batch, or once per clean face.
DISTILL_MODES = ("online", "offline")
#: Training targets: each face's one label, or FER+'s annotator vote distribution.
TARGETS = ("majority", "votes")
#: Test-time augmentations: the views whose logits are averaged (ferkit.models.runtime.tta_views).
TTA_MODES = ("none", "flip", "shift")
#: Face detectors (ferkit.faces.detection).
DETECTORS = ("haar", "haar-fast", "yunet", "none")
#: Calibration maps of ``ferkit calibrate --method`` (ferkit.inference.calibration): one temperature
#: (keeps every top class), per-class scale and bias (vector scaling), or a regularised full
#: matrix and bias on the log-probabilities (Dirichlet scaling; Kull et al., 2019).
CALIBRATION_METHODS = ("temperature", "vector", "dirichlet")
#: Inference engines of a Predictor (ferkit.inference).
BACKENDS = ("torch", "onnx", "auto", "bf16", "int8")

#: Old architecture names still accepted, and the names they now go by.
MODEL_ALIASES = {"seed": "classic"}


def canonical_model_name(name: str) -> str:
    """The current name of architecture ``name`` (old aliases map to their new name).

    Example:
        >>> canonical_model_name("seed"), canonical_model_name("vgg")
        ('classic', 'vgg')
    """
    return MODEL_ALIASES.get(name, name)
