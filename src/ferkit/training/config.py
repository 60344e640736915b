"""The training job's one typed config. Saved, resolved, as ``config.json`` in the run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ferkit.errors import FerkitError

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SPLITS = ("stratified", "usage")
SCHEDULES = ("step", "cosine")
DISTILL_MODES = ("online", "offline")
TARGETS = ("majority", "votes")
TTAS = ("none", "flip", "shift")  # = ferkit.runtime.TTA_MODES (kept torch-free here)


@dataclass
class TrainConfig:
    """Everything a training run needs; the defaults reproduce the classic notebook's schedule.

    Example:
        >>> config = TrainConfig(data="faces.csv", out="runs/demo", epochs=[2, 1])
        >>> config.validate().total_epochs
        3
    """

    # --- data ---
    data: str = ""  # dataset: FER2013 CSV (.csv/.csv.gz) or image folder
    out: str = "runs/train"  # run folder: config, weights, history, plots, metrics
    split: str = "stratified"  # "stratified": seeded random split; "usage": the Usage column
    val_fraction: float = 0.2  # validation share for the stratified split (0-1)
    skip_bad_rows: bool = False  # skip invalid rows instead of stopping at the first one
    # --- model ---
    arch: str = "seed"  # registered architecture name (ferkit.models.list_models())
    model_args: dict = field(default_factory=dict)  # extra keyword arguments for the architecture
    init: str = ""  # start from: "" (scratch), "pretrained" (bundled default) or a run/checkpoint
    # --- schedule ---
    epochs: list[int] = field(default_factory=lambda: [20, 20])  # epochs per LR phase
    lr: float = 1e-3  # learning rate of the first phase
    lr_drop: float = 0.1  # LR multiplier at each phase boundary ("step" schedule)
    schedule: str = "step"  # step: LR x lr_drop per phase; cosine: cosine decay over all epochs
    warmup_epochs: int = 0  # epochs of linear LR warm-up at the start
    min_lr_ratio: float = 0.0  # cosine schedule's final LR, as a fraction of lr
    batch_size: int = 256  # training faces per step
    # --- optimisation ---
    optimizer: str = "adam"  # adam | adamw | sgd (SGD uses Nesterov momentum)
    momentum: float = 0.9  # SGD momentum (ignored by Adam/AdamW)
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw) weight decay
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0-1)
    # majority: each face's one label; votes: the annotators' vote distribution (FER+ only),
    # Barsoum et al.'s "probability" scheme (cross-entropy against the distribution)
    targets: str = "majority"
    class_weighting: bool = False  # weight the loss by inverse class frequency of the train set
    ema_decay: float = 0.0  # exponential moving average of weights per step (0: off; e.g. 0.999)
    teacher: str = ""  # knowledge distillation from this run/ensemble folder ("": off)
    distill_weight: float = 0.5  # share of the distillation term in the loss (0-1)
    distill_temperature: float = 2.0  # softmax temperature of teacher and student for distillation
    # online: the teacher sees every augmented batch (a teacher forward pass per step);
    # offline: its softened probabilities for each clean training face and its mirror are
    # computed once at the start, which makes distillation nearly free on a CPU
    distill_mode: str = "online"
    # --- augmentation (batched, on tensors) ---
    augment: bool = True  # random flip, shift, scale and rotation of training faces
    max_shift: float = 0.1  # largest shift, as a fraction of the face side
    max_rotation: float = 10.0  # largest rotation, degrees
    max_scale: float = 0.1  # largest zoom in or out, fraction (0.1 → 0.9x-1.1x)
    random_erasing: float = 0.0  # probability of blanking a random box in a training face
    mixup: float = 0.0  # MixUp Beta(alpha, alpha) parameter (0: off)
    cutmix: float = 0.0  # CutMix Beta(alpha, alpha) parameter (0: off)
    tta: str = "none"  # test-time augmentation (validation, and predict/evaluate via the card)
    # --- machine ---
    seed: int = 0  # seeds the split, initialisation, shuffling, augmentation and dropout
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16 | fp16 (CUDA)
    compile: bool = False  # torch.compile the model for training (first epoch pays compile time)
    channels_last: bool = True  # NHWC memory layout (faster convolutions on CPU)
    eval_batch_size: int = 512  # faces per step when evaluating
    resume: bool = False  # continue from the run folder's `last` checkpoint
    overwrite: bool = False  # replace a run already in `out` (otherwise that is an error)
    progress: bool = True  # show progress bars

    @property
    def total_epochs(self) -> int:
        """Epochs over all phases."""
        return sum(self.epochs)

    def validate(self) -> TrainConfig:
        """Check every field; raise FerkitError naming the bad value and the valid choices."""
        self.epochs = [int(value) for value in self.epochs]
        choices = {
            "optimizer": OPTIMIZERS,
            "device": DEVICES,
            "precision": PRECISIONS,
            "split": SPLITS,
            "schedule": SCHEDULES,
            "tta": TTAS,
            "distill_mode": DISTILL_MODES,
            "targets": TARGETS,
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if name == "device" and str(value).startswith("cuda:") and value[5:].isdigit():
                continue  # a specific GPU
            if value not in valid:
                options = ", ".join(valid)
                raise FerkitError(f"{name}={value!r} is not valid; choose one of: {options}")
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
        for name in ("mixup", "cutmix", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise FerkitError(f"{name}={getattr(self, name)} must be >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise FerkitError(f"val_fraction={self.val_fraction} must be in (0, 1)")
        return self

    def to_dict(self) -> dict:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (e.g. a saved ``config.json``); unknown keys are an error."""
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise FerkitError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)
