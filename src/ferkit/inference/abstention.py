"""Answers a model can decline: confidence, margin, ``uncertain``, risk-coverage curves.

Every prediction carries its (calibrated) confidence, the top probability, and its margin,
top-1 minus top-2 probability. With a ``min_confidence`` a face whose confidence is below it
is labelled :data:`UNCERTAIN` instead of a guess (its probabilities and best guess are still
reported). The risk-coverage curve says what that buys: the accuracy on the most confident
fraction of faces.

Example:
    >>> decision = decide([[0.5, 0.3, 0.2]], ["a", "b", "c"], min_confidence=0.6)[0]
    >>> decision.label, decision.best_guess, round(decision.margin, 2)
    ('uncertain', 'a', 0.2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ferkit.utils.errors import FerkitError

#: The label of a face whose confidence is below ``min_confidence``.
UNCERTAIN = "uncertain"
#: Coverages reported by ``evaluate``: accuracy on the most confident 50/80/90/100 % of faces.
COVERAGES = (0.5, 0.8, 0.9, 1.0)
#: ``--min-confidence`` thresholds whose coverage and accuracy ``evaluate`` reports.
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Decision:
    """What to say about one face.

    Attributes:
        label: the top class, or :data:`UNCERTAIN` when its confidence is too low.
        best_guess: the top class, always.
        confidence: the top probability.
        margin: top-1 minus top-2 probability (0 for a tie; small means a near toss-up).
        uncertain: True when the model abstained.
    """

    label: str
    best_guess: str
    confidence: float
    margin: float
    uncertain: bool


def check_min_confidence(min_confidence: float | None) -> float | None:
    """``min_confidence`` if it is None or within [0, 1]; else a clear error.

    Example:
        >>> check_min_confidence(1.5)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ferkit.utils.errors.FerkitError: min_confidence must be between 0 and 1, got 1.5
    """
    if min_confidence is None:
        return None
    try:
        value = float(min_confidence)
    except (TypeError, ValueError):
        raise FerkitError(f"min_confidence must be a number, got {min_confidence!r}") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise FerkitError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    return value


def decide(probabilities, class_names, min_confidence: float | None = None) -> list[Decision]:
    """Label, confidence and margin for each row of probabilities (N, classes).

    The one place where probabilities become labels, shared by
    :func:`ferkit.inference.results.predictions_from`.

    Example:
        >>> [d.label for d in decide([[0.9, 0.1], [0.45, 0.55]], ["a", "b"], 0.6)]
        ['a', 'uncertain']
    """
    min_confidence = check_min_confidence(min_confidence)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.size == 0:
        return []
    if probabilities.shape[1] != len(class_names):
        raise FerkitError(
            f"{probabilities.shape[1]} probabilities per face for {len(class_names)} classes"
        )
    best = probabilities.argmax(axis=1)
    ordered = np.sort(probabilities, axis=1)
    confidence = ordered[:, -1]
    margin = ordered[:, -1] - ordered[:, -2] if probabilities.shape[1] > 1 else confidence
    decisions = []
    for index, top, gap in zip(best, confidence, margin):
        abstain = bool(min_confidence is not None and top < min_confidence)
        guess = class_names[int(index)]
        decisions.append(
            Decision(UNCERTAIN if abstain else guess, guess, float(top), float(gap), abstain)
        )
    return decisions


def risk_coverage(probabilities, labels, coverages=COVERAGES) -> dict:
    """Accuracy when answering only the most confident faces.

    Faces are ranked by confidence (ties keep their order); at coverage ``c`` the top
    ``ceil(c * N)`` faces are answered.

    Returns:
        ``{"points": [{"coverage", "answered", "accuracy", "risk", "min_confidence"}, ...],
        "curve": {"coverage": [...], "accuracy": [...]}}``: the requested coverages, then the
        whole curve (one point per face) for plots.

    Example:
        >>> result = risk_coverage([[0.9, 0.1], [0.6, 0.4]], [0, 1], coverages=(0.5, 1.0))
        >>> [point["accuracy"] for point in result["points"]]
        [1.0, 0.5]
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise FerkitError("a risk-coverage curve needs at least one labelled face")
    confidence = probabilities.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probabilities.argmax(axis=1) == labels)[order]
    cumulative = np.cumsum(correct) / np.arange(1, len(labels) + 1)
    points = []
    for coverage in coverages:
        answered = max(1, math.ceil(round(coverage * len(labels), 9)))
        accuracy = float(cumulative[answered - 1])
        points.append(
            {
                "coverage": float(coverage),
                "answered": int(answered),
                "accuracy": accuracy,
                "risk": 1.0 - accuracy,
                "min_confidence": float(confidence[order[answered - 1]]),
            }
        )
    coverage_axis = np.arange(1, len(labels) + 1) / len(labels)
    return {
        "points": points,
        "curve": {"coverage": coverage_axis.tolist(), "accuracy": cumulative.tolist()},
    }


def threshold_table(probabilities, labels, thresholds=THRESHOLDS) -> list[dict]:
    """Coverage and accuracy of answered faces for several ``min_confidence`` values.

    Example:
        >>> threshold_table([[0.9, 0.1], [0.55, 0.45]], [0, 1], thresholds=(0.6,))
        [{'min_confidence': 0.6, 'coverage': 0.5, 'answered': 1, 'accuracy': 1.0}]
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in thresholds:
        answered = confidence >= threshold
        count = int(answered.sum())
        rows.append(
            {
                "min_confidence": float(threshold),
                "coverage": float(answered.mean()) if len(labels) else 0.0,
                "answered": count,
                "accuracy": float(correct[answered].mean()) if count else None,
            }
        )
    return rows
