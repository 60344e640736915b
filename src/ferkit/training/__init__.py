"""Training: config, LR schedule, batched augmentation, epochs, resumable state, the run
recipe (``fit``) and cross-validation.

Names are imported lazily so that ``ferkit.training.config`` (used to build the CLI parser)
does not import torch: ``ferkit --version`` and ``--help`` stay instant.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "ferkit.training.config",
    "FitResult": "ferkit.training.loop",
    "evaluate": "ferkit.training.epoch",
    "fit": "ferkit.training.loop",
    "train": "ferkit.training.loop",
    "train_one_epoch": "ferkit.training.epoch",
    "TrainState": "ferkit.training.state",
    "learning_rate_at": "ferkit.training.schedule",
    "cross_validate": "ferkit.training.crossval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ferkit.training' has no attribute {name!r}")
