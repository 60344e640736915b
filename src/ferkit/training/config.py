"""The training job's one typed config. Saved, resolved, as ``config.json`` in the run folder.

Each field carries its help text (and its choices, where it has a fixed list) as dataclass field
metadata, so the CLI options of ``ferkit train`` and ``ferkit cv`` are generated from the fields
(:mod:`ferkit.training.arguments`) and cannot drift from them. This module stays torch-free: the
CLI parser is built from it for ``ferkit --help``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ferkit.utils.choices import (
    DEVICES,
    DISTILL_MODES,
    MODEL_ALIASES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    SPLITS,
    TARGETS,
    TTA_MODES,
)
from ferkit.utils.errors import FerkitError

TTAS = TTA_MODES  # the name this module used to export

_logger = logging.getLogger(__name__)


def option(default, help: str, *, choices=None, flag: str | None = None, cv: bool = True, **more):
    """A config field whose CLI option is generated from it.

    Args:
        default: the default value (lists and dicts are copied per instance).
        help: the option's help text (the generated help adds the default).
        choices: the valid values, checked by argparse and by :meth:`TrainConfig.validate`.
        flag: the option's name when it is not ``--field-name``.
        cv: False for fields that ``ferkit cv`` does not take (folds replace the split).
        **more: more metadata for the option builder (``positional``, ``required``).

    Example:
        >>> option(0.1, "a fraction").metadata["help"]
        'a fraction'
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "cv": cv, **more}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a training run needs; the defaults reproduce the classic notebook's schedule.

    Example:
        >>> config = TrainConfig(data="faces.csv", out="runs/demo", epochs=[2, 1])
        >>> config.validate().total_epochs
        3
    """

    # --- data ---
    data: str = option("", "FER2013 CSV (.csv or .csv.gz) or image folder", positional=True)
    out: str = option(
        "runs/train", "run folder to write (config, weights, history, plots)", required=True
    )
    split: str = option(
        "stratified",
        "stratified: a seeded random split; usage: FER2013's Usage column",
        choices=SPLITS,
        cv=False,
    )
    val_fraction: float = option(0.2, "validation share of the stratified split (0-1)", cv=False)
    skip_bad_rows: bool = option(
        False, "skip invalid rows/images (and report them) instead of stopping"
    )
    # --- model ---
    arch: str = option(
        "classic", "architecture: classic, vgg, resnet, mobile (ferkit.models.list_models())"
    )
    model_args: dict = option(
        {},
        "architecture argument KEY=VALUE, VALUE in JSON (e.g. channels=[32,64,32]); repeatable",
        flag="--model-arg",
    )
    init: str = option(
        "", "start from 'pretrained' (the bundled default model) or a run folder/checkpoint"
    )
    # --- schedule ---
    epochs: list[int] = option([20, 20], "epochs per learning-rate phase")
    lr: float = option(1e-3, "learning rate of the first phase")
    lr_drop: float = option(0.1, "LR multiplier at each phase boundary (step schedule)")
    schedule: str = option(
        "step",
        "step: LR x lr-drop per phase; cosine: cosine decay over all epochs",
        choices=SCHEDULES,
    )
    warmup_epochs: int = option(0, "epochs of linear LR warm-up at the start")
    min_lr_ratio: float = option(0.0, "the cosine schedule's final LR, as a fraction of --lr")
    batch_size: int = option(256, "training faces per step (over all processes)")
    # --- optimisation ---
    optimizer: str = option("adam", "optimizer (SGD uses Nesterov momentum)", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum (ignored by Adam/AdamW)")
    weight_decay: float = option(0.0, "L2 (adam, sgd) or decoupled (adamw) weight decay")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing (0-1)")
    # votes: Barsoum et al.'s "probability" scheme (cross-entropy against the distribution)
    targets: str = option(
        "majority",
        "majority: one label per face; votes: FER+'s vote distributions",
        choices=TARGETS,
    )
    class_weighting: bool = option(
        False, "weight the loss by the inverse class frequency of the training set"
    )
    ema_decay: float = option(
        0.0, "exponential moving average of the weights per step (0: off; e.g. 0.999)"
    )
    teacher: str = option(
        "", "knowledge distillation from this run/ensemble folder or bundled name ('': off)"
    )
    distill_weight: float = option(0.5, "share of the distillation term in the loss (0-1)")
    distill_temperature: float = option(
        2.0, "softmax temperature of teacher and student for distillation"
    )
    # online: the teacher sees every augmented batch (a teacher forward pass per step);
    # offline: its softened probabilities for each clean training face and its mirror are
    # computed once at the start, which makes distillation nearly free on a CPU
    distill_mode: str = option(
        "online",
        "online: teacher on every augmented batch; offline: once per clean training face",
        choices=DISTILL_MODES,
    )
    # --- augmentation (batched, on tensors) ---
    augment: bool = option(True, "random flip, shift, zoom and rotation of training faces")
    max_shift: float = option(0.1, "largest augmentation shift, as a fraction of the face side")
    max_rotation: float = option(10.0, "largest augmentation rotation, degrees")
    max_scale: float = option(0.1, "largest augmentation zoom in or out (0.1: 0.9x-1.1x)")
    random_erasing: float = option(0.0, "probability of blanking a random box in a face")
    mixup: float = option(0.0, "MixUp Beta(alpha, alpha) parameter (0: off)")
    cutmix: float = option(0.0, "CutMix Beta(alpha, alpha) parameter (0: off)")
    tta: str = option(
        "none",
        "test-time augmentation for validation (and predict/evaluate, via the model card)",
        choices=TTA_MODES,
    )
    # --- machine ---
    seed: int = option(0, "seeds the split, initialisation, shuffling, augmentation, dropout")
    device: str = option("auto", "device to train on", choices=DEVICES)
    precision: str = option(
        "auto", "auto (bf16 where the hardware has it), fp32, bf16, fp16 (CUDA)", choices=PRECISIONS
    )
    compile: bool = option(False, "torch.compile the model (the first epoch pays compile time)")
    channels_last: bool = option(True, "NHWC memory layout (faster convolutions on CPU)")
    eval_batch_size: int = option(512, "faces per step when evaluating")
    resume: bool = option(False, "continue the run in --out from its last checkpoint", cv=False)
    overwrite: bool = option(False, "replace a run already in --out (otherwise an error)")
    progress: bool = option(True, "show progress bars")

    @property
    def total_epochs(self) -> int:
        """Epochs over all phases."""
        return sum(self.epochs)

    def validate(self) -> TrainConfig:
        """Check every field; raise FerkitError naming the bad value and the valid choices.

        An old architecture name (``seed``) is replaced by its current one (``classic``).
        """
        self.epochs = [int(value) for value in self.epochs]
        if self.arch in MODEL_ALIASES:
            _logger.warning(
                "architecture %r is deprecated; it is now called %r",
                self.arch,
                MODEL_ALIASES[self.arch],
            )
            self.arch = MODEL_ALIASES[self.arch]
        for item in dataclasses.fields(self):
            valid, value = item.metadata.get("choices"), getattr(self, item.name)
            if valid is None or value in valid:
                continue
            if item.name == "device" and str(value).startswith("cuda:") and value[5:].isdigit():
                continue  # a specific GPU
            raise FerkitError(
                f"{item.name}={value!r} is not valid; choose one of: {', '.join(valid)}"
            )
        self._validate_numbers()
        return self

    def _validate_numbers(self) -> None:
        if not self.epochs or any(value < 0 for value in self.epochs) or self.total_epochs == 0:
            raise FerkitError(f"epochs={self.epochs} must be non-negative with a positive total")
        positive = {"lr": self.lr, "batch_size": self.batch_size}
        positive["eval_batch_size"] = self.eval_batch_size
        for name, value in positive.items():
            if value <= 0:
                raise FerkitError(f"{name}={value} must be positive")
        if not 0.0 < self.lr_drop <= 1.0:
            raise FerkitError(f"lr_drop={self.lr_drop} must be in (0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise FerkitError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        fractions = {
            "random_erasing": self.random_erasing,
            "ema_decay": self.ema_decay,
            "min_lr_ratio": self.min_lr_ratio,
        }
        for name, value in fractions.items():
            if not 0.0 <= value < 1.0 + (name == "min_lr_ratio"):
                raise FerkitError(f"{name}={value} must be in [0, 1)")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise FerkitError(
                f"distill_weight={self.distill_weight} must be in [0, 1] and "
                f"distill_temperature={self.distill_temperature} positive"
            )
        for name in ("mixup", "cutmix", "warmup_epochs", "max_shift", "max_rotation", "max_scale"):
            if getattr(self, name) < 0:
                raise FerkitError(f"{name}={getattr(self, name)} must be >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise FerkitError(f"val_fraction={self.val_fraction} must be in (0, 1)")

    def to_dict(self) -> dict:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> TrainConfig:
        """Build from a dict (e.g. a saved ``config.json``); unknown keys are an error.

        Example:
            >>> TrainConfig.from_dict({"epochs": [3]}).epochs
            [3]
        """
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise FerkitError(f"{source}: unknown config field(s): {', '.join(unknown)}")
        return cls(**values)


def field_names() -> list[str]:
    """The names of :class:`TrainConfig`'s fields, in order.

    Example:
        >>> field_names()[:2]
        ['data', 'out']
    """
    return [item.name for item in dataclasses.fields(TrainConfig)]


def read_config_file(path: str | os.PathLike) -> dict:
    """The config fields a recipe file sets (JSON; a ``description`` key documents it).

    A recipe is a partial config: ``{"arch": "vgg", "epochs": [80], ...}``; a run's
    ``config.json`` is a complete one and works too.

    Raises:
        FerkitError: naming the file when it is missing, not JSON, not an object, or has a key
            that is not a config field.

    Example:
        >>> read_config_file("recipes/fer2013-default.json")["arch"]  # doctest: +SKIP
        'vgg'
    """
    import json

    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FerkitError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FerkitError(f"{path}: not a readable JSON config ({error})") from None
    if not isinstance(values, dict):
        raise FerkitError(f"{path}: a config file holds a JSON object of config fields")
    values.pop("description", None)
    TrainConfig.from_dict(values, source=str(path))  # names the unknown keys
    return values
