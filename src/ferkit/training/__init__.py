"""Training: config, LR schedule, batched augmentation, epochs, resumable state, the run
recipe (``fit``) and cross-validation.

Names are imported lazily so that ``ferkit.training.config`` (used to build the CLI parser)
does not import torch: ``ferkit --version`` and ``--help`` stay instant.
"""

from __future__ import annotations

from ferkit.utils.lazy import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _EXPORTS)
