"""The learning-rate schedule: a pure function of the epoch."""

from __future__ import annotations

from collections.abc import Sequence


def learning_rate_at(epoch: int, phases: Sequence[int], base_lr: float, drop: float) -> float:
    """Learning rate for 0-based ``epoch``: ``base_lr * drop ** phase``.

    ``phases`` lists the epochs of each phase; the LR drops by ``drop`` at every boundary.
    Epochs past the end stay in the last phase.

    Example:
        >>> learning_rate_at(19, [20, 20], 1e-3, 0.1), learning_rate_at(20, [20, 20], 1e-3, 0.1)
        (0.001, 0.0001)
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    boundary = 0
    for phase, length in enumerate(phases):
        boundary += length
        if epoch < boundary:
            return base_lr * drop**phase
    return base_lr * drop ** (len(phases) - 1)


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
