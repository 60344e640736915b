"""Probabilities you can trust: temperature scaling and calibration metrics.

A classifier is *calibrated* when, among the faces it gives 0.8 to, about 80 % are right.
Networks trained with label smoothing, mixup or EMA often are not, in either direction.
Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T`` fitted by
minimising the negative log-likelihood (NLL) of held-out faces: ``T > 1`` softens
over-confident probabilities, ``T < 1`` sharpens under-confident ones; the top class never
changes, so accuracy does not either.

The temperature lives in the model card (``card["calibration"]["temperature"]``; for an
ensemble, in ``ensemble.json``) and is applied in exactly one place,
:func:`combine_probabilities`, called by :class:`ferkit.inference.graph.ProbabilityGraph`, the
graph that both the PyTorch engines run and the ONNX export holds. ``ferkit calibrate`` (fit
and store a model's temperature) and the calibration reports are in :mod:`ferkit.calibrate`.

Metrics: expected calibration error (ECE, 15 equal-width confidence bins), NLL, and the
multi-class Brier score (mean over faces of the squared distance between the probability
vector and the one-hot label; 0 is perfect, 2 the worst).

Example:
    >>> import numpy as np
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> round(fit_temperature(logits, np.array([0, 1, 1])), 2) > 1  # one confident mistake
    True
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import numpy as np
import torch

from ferkit.errors import FerkitError

#: Confidence bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: Range searched for the temperature (a value at either end means something is off).
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: Floor of probabilities before a logarithm (float32 softmax outputs can underflow to 0).
PROBABILITY_FLOOR = 1e-30


def temperature_of(card: dict | None) -> float:
    """The temperature stored in a model card or ensemble card (1.0: not calibrated).

    Example:
        >>> temperature_of({"calibration": {"temperature": 1.3}}), temperature_of({})
        (1.3, 1.0)
    """
    calibration = (card or {}).get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    if not temperature > 0 or not math.isfinite(temperature):
        raise FerkitError(f"model card: calibration temperature must be > 0, got {temperature}")
    return temperature


def combine_probabilities(
    member_logits: Sequence[torch.Tensor],
    member_temperatures: Sequence[float],
    temperature: float = 1.0,
) -> torch.Tensor:
    """Class probabilities from one or more members' logits: THE place temperatures apply.

    Each member's logits are divided by its own temperature and soft-maxed; the members'
    probabilities are averaged; an ensemble's own temperature (``temperature``) then scales
    the log of that average. For a single model ``softmax(log softmax(z) / T)`` equals
    ``softmax(z / T)``, so one fitting routine serves models and ensembles alike.

    Temperatures are Python floats, so an ONNX export traces them as constants.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> combine_probabilities([logits], [2.0]).tolist() == torch.softmax(logits / 2, 1).tolist()
        True
    """
    total = None
    for logits, member_temperature in zip(member_logits, member_temperatures):
        scaled = logits / member_temperature if member_temperature != 1.0 else logits
        probabilities = torch.softmax(scaled, dim=1)
        total = probabilities if total is None else total + probabilities
    if len(member_logits) > 1:
        total = total / len(member_logits)
    if temperature != 1.0:
        total = torch.softmax(torch.log(total.clamp_min(PROBABILITY_FLOOR)) / temperature, dim=1)
    return total


def _log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))


def scores_from_probabilities(probabilities) -> np.ndarray:
    """Log-probabilities, the logits that temperature scaling works on for any model.

    Example:
        >>> scores_from_probabilities([[0.5, 0.5]]).round(3).tolist()
        [[-0.693, -0.693]]
    """
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, None))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` in float64 (rows sum to 1).

    Example:
        >>> softmax([[0.0, 0.0]]).tolist()
        [[0.5, 0.5]]
    """
    return np.exp(_log_softmax(logits, temperature))


def _check(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise FerkitError(
            f"expected probabilities (N, classes) and N labels, got {probabilities.shape} "
            f"and {labels.shape}"
        )
    if len(labels) == 0:
        raise FerkitError("calibration metrics need at least one labelled face")
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise FerkitError(f"labels must lie in 0..{probabilities.shape[1] - 1}")
    return probabilities, labels


def negative_log_likelihood(probabilities, labels) -> float:
    """Mean ``-log p(true class)`` (natural log; lower is better).

    Example:
        >>> round(negative_log_likelihood([[0.5, 0.5]], [0]), 4)
        0.6931
    """
    probabilities, labels = _check(probabilities, labels)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, PROBABILITY_FLOOR, None)).mean())


def brier_score(probabilities, labels) -> float:
    """Multi-class Brier score: mean squared distance to the one-hot label (0 best, 2 worst).

    Example:
        >>> brier_score([[1.0, 0.0], [0.5, 0.5]], [0, 1])
        0.25
    """
    probabilities, labels = _check(probabilities, labels)
    one_hot = np.eye(probabilities.shape[1])[labels]
    return float(((probabilities - one_hot) ** 2).sum(axis=1).mean())


def reliability_bins(probabilities, labels, bins: int = ECE_BINS) -> list[dict]:
    """Reliability-diagram data: per equal-width confidence bin, its faces' mean confidence
    and accuracy.

    A face falls in bin ``i`` when its top probability lies in ``(i/bins, (i+1)/bins]``.

    Returns:
        One dict per bin: ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy``
        (the last two None for an empty bin).

    Example:
        >>> rows = reliability_bins([[0.9, 0.1], [0.2, 0.8]], [0, 0], bins=5)
        >>> [(row["count"], row["accuracy"]) for row in rows if row["count"]]
        [(1, 0.0), (1, 1.0)]
    """
    probabilities, labels = _check(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidence, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    rows = []
    for number in range(bins):
        count = int(counts[number])
        rows.append(
            {
                "lower": number / bins,
                "upper": (number + 1) / bins,
                "count": count,
                "confidence": float(confidence_sums[number] / count) if count else None,
                "accuracy": float(correct_sums[number] / count) if count else None,
            }
        )
    return rows


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """ECE: the face-weighted mean |accuracy - confidence| over equal-width confidence bins.

    Example:
        >>> expected_calibration_error([[0.9, 0.1], [0.9, 0.1]], [0, 1])
        0.4
    """
    rows = reliability_bins(probabilities, labels, bins)
    total = sum(row["count"] for row in rows)
    return float(
        sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows if row["count"])
        / total
    )


def calibration_metrics(probabilities, labels, bins: int = ECE_BINS) -> dict:
    """ECE, NLL, Brier score and the reliability bins of some probabilities.

    Example:
        >>> metrics = calibration_metrics([[0.9, 0.1]], [0])
        >>> sorted(metrics)
        ['bins', 'brier', 'ece', 'nll', 'reliability']
    """
    return {
        "ece": expected_calibration_error(probabilities, labels, bins),
        "nll": negative_log_likelihood(probabilities, labels),
        "brier": brier_score(probabilities, labels),
        "bins": bins,
        "reliability": reliability_bins(probabilities, labels, bins),
    }


def fit_temperature(logits, labels, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on labelled faces.

    A bounded 1-D search (Brent) over ``log T``: the NLL is convex in ``1/T``, so the
    search finds the global minimum. ``logits`` may also be log-probabilities (an ensemble's
    :func:`scores_from_probabilities`).

    Raises:
        FerkitError: for malformed inputs.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> true_logits = rng.normal(0, 3, (4000, 5))
        >>> labels = (rng.random((4000, 1)) > softmax(true_logits).cumsum(1)).sum(1)
        >>> round(fit_temperature(true_logits * 2.0, labels), 1)  # logits 2x too sharp
        2.0
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    _, labels = _check(logits, labels)
    if not np.isfinite(logits).all():
        raise FerkitError("cannot fit a temperature: the logits contain NaN or infinity")
    rows = np.arange(len(labels))

    def loss(log_temperature: float) -> float:
        return float(-_log_softmax(logits, math.exp(log_temperature))[rows, labels].mean())

    result = minimize_scalar(
        loss,
        bounds=(math.log(bounds[0]), math.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def calibration_summary(scores, labels, temperature: float, fitted_on: str) -> dict:
    """The ``calibration`` entry of a model card: temperature and metrics before and after.

    Example:
        >>> summary = calibration_summary(np.array([[2.0, 0.0]]), [0], 1.5, "test")
        >>> summary["temperature"], summary["ece_after"] > summary["ece_before"]
        (1.5, True)
    """
    before = calibration_metrics(softmax(scores), labels)
    after = calibration_metrics(softmax(scores, temperature), labels)
    return {
        "method": "temperature scaling (one scalar T, NLL minimised)",
        "temperature": round(float(temperature), 6),
        "fitted_on": fitted_on,
        "faces": int(len(labels)),
        "ece_bins": ECE_BINS,
        **{f"{key}_before": round(before[key], 6) for key in ("ece", "nll", "brier")},
        **{f"{key}_after": round(after[key], 6) for key in ("ece", "nll", "brier")},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reliability_before": before["reliability"],
        "reliability_after": after["reliability"],
    }


def card_entry(summary: dict) -> dict:
    """The summary without the per-bin data (what a model card keeps)."""
    return {key: value for key, value in summary.items() if not key.startswith("reliability")}
