"""Training: config, LR schedule, batched augmentation, the loop and cross-validation."""

from ferkit.training.config import TrainConfig
from ferkit.training.loop import FitResult, evaluate, fit, train, train_one_epoch
from ferkit.training.schedule import learning_rate_at

__all__ = [
    "FitResult",
    "TrainConfig",
    "evaluate",
    "fit",
    "learning_rate_at",
    "train",
    "train_one_epoch",
]
