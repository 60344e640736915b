"""The learning-rate schedule: a pure function of the epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ferkit.utils.choices import SCHEDULES


def learning_rate_at(
    epoch: int,
    phases: Sequence[int],
    base_lr: float,
    drop: float,
    schedule: str = "step",
    warmup_epochs: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """Learning rate for 0-based ``epoch``.

    ``"step"``: ``base_lr * drop ** phase``; ``phases`` lists the epochs of each phase and the
    LR drops by ``drop`` at every boundary (the classic notebook: ``[20, 20]``, 0.1).
    ``"cosine"``: cosine decay from ``base_lr`` to ``base_lr * min_lr_ratio`` over all epochs.
    Either way, the first ``warmup_epochs`` epochs ramp up linearly to the scheduled value.
    Epochs past the end keep the last value.

    Example:
        >>> learning_rate_at(19, [20, 20], 1e-3, 0.1), learning_rate_at(20, [20, 20], 1e-3, 0.1)
        (0.001, 0.0001)
        >>> [round(learning_rate_at(e, [4], 1.0, 0.1, "cosine"), 3) for e in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    total = sum(phases)
    if schedule == "step":
        rate = base_lr * drop ** (len(phases) - 1)
        boundary = 0
        for phase, length in enumerate(phases):
            boundary += length
            if epoch < boundary:
                rate = base_lr * drop**phase
                break
    else:
        span = max(total - warmup_epochs, 1)
        progress = min(max(epoch - warmup_epochs, 0), span) / span
        floor = base_lr * min_lr_ratio
        rate = floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if epoch < warmup_epochs:
        rate *= (epoch + 1) / (warmup_epochs + 1)
    return rate


def phase_boundaries(phases: Sequence[int]) -> list[int]:
    """0-based epochs where a new phase starts (for marking LR drops on plots).

    Example:
        >>> phase_boundaries([20, 20])
        [20]
    """
    boundaries, total = [], 0
    for length in phases[:-1]:
        total += length
        boundaries.append(total)
    return boundaries
