"""Probabilities you can trust: temperature scaling and calibration metrics.

A classifier is *calibrated* when, among the faces it gives 0.8 to, about 80 % are right.
Networks trained with label smoothing, mixup or EMA often are not, in either direction.
Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T`` fitted by
minimising the negative log-likelihood (NLL) of held-out faces: ``T > 1`` softens
over-confident probabilities, ``T < 1`` sharpens under-confident ones; the top class never
changes, so accuracy does not either.

When one scalar is not enough, two richer maps work on the log-probabilities ``s`` and are
fitted the same way (NLL): *vector scaling* ``s * w + b`` (a scale and a bias per class) and
*Dirichlet scaling* ``W s + b`` (a full matrix, its off-diagonal entries and the bias kept
small by an L2 penalty, Kull et al., 2019). Both can change the top class of some faces, so
their summaries report accuracy before and after as well (:class:`AffineCalibration`).

The temperature (or the matrix and bias) lives in the model card (``card["calibration"]``;
for an ensemble, in ``ensemble.json``) and is applied in exactly one place,
:func:`combine_probabilities`, called by :class:`ferkit.inference.graph.ProbabilityGraph`, the
graph that both the PyTorch engines run and the ONNX export holds. ``ferkit calibrate`` (fit
and store a model's calibration) and the calibration reports are in
:mod:`ferkit.evaluation.calibrate`.

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
from dataclasses import dataclass

import numpy as np
import torch

from ferkit.utils.choices import CALIBRATION_METHODS
from ferkit.utils.errors import FerkitError

#: Confidence bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: Range searched for the temperature (a value at either end means something is off).
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: Floor of probabilities before a logarithm (float32 softmax outputs can underflow to 0).
PROBABILITY_FLOOR = 1e-30
#: L2 penalties of Dirichlet scaling (on the mean squared off-diagonal entry of the matrix and
#: the mean squared bias, added to the mean NLL): they keep the 56 numbers of a 7-class map
#: from fitting the noise of a few thousand validation faces.
DIRICHLET_PENALTY = 1e-2


@dataclass(frozen=True)
class AffineCalibration:
    """Calibrated logits ``log_probabilities @ matrix.T + bias`` (vector or Dirichlet scaling).

    Works on log-probabilities (log-softmax of a model's logits, or the log of an ensemble's
    averaged probabilities), the scores these maps are fitted on. Vector scaling has a diagonal
    ``matrix``. Floats only, so an ONNX export traces the map as constants.

    Example:
        >>> import torch
        >>> identity = AffineCalibration("vector", ((1.0, 0.0), (0.0, 1.0)), (0.0, 0.0))
        >>> halves = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> AffineCalibration("vector", ((2.0, 0.0), (0.0, 2.0)), (0.0, 1.0)).apply(halves)
        tensor([[-1.3863, -0.3863]])
    """

    method: str
    matrix: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]

    def apply(self, log_probabilities: torch.Tensor) -> torch.Tensor:
        """The calibrated logits for log-probabilities (N, classes)."""
        matrix = torch.tensor(self.matrix, dtype=log_probabilities.dtype)
        bias = torch.tensor(self.bias, dtype=log_probabilities.dtype)
        return log_probabilities @ matrix.to(log_probabilities.device).T + bias.to(
            log_probabilities.device
        )

    def probabilities(self, scores) -> np.ndarray:
        """Calibrated probabilities (float64) for scores (log-probabilities) as numpy."""
        logits = np.asarray(scores, dtype=np.float64) @ np.asarray(self.matrix).T
        return softmax(logits + np.asarray(self.bias))


#: What a card's calibration can be: a temperature, or an affine map.
Calibration = float | AffineCalibration


def calibration_of(card: dict | None) -> Calibration:
    """The calibration a model card or ensemble card stores (1.0: none).

    Example:
        >>> calibration_of({"calibration": {"temperature": 1.3}})
        1.3
        >>> calibration_of({"calibration": {"map": "vector", "matrix": [[2.0]], "bias": [0.0]}})
        AffineCalibration(method='vector', matrix=((2.0,),), bias=(0.0,))
    """
    calibration = (card or {}).get("calibration") or {}
    if "matrix" not in calibration:
        return temperature_of(card)
    matrix = tuple(tuple(float(value) for value in row) for row in calibration["matrix"])
    bias = tuple(float(value) for value in calibration.get("bias", [0.0] * len(matrix)))
    if any(len(row) != len(matrix) for row in matrix) or len(bias) != len(matrix):
        raise FerkitError(
            f"model card: calibration matrix must be square with one bias per class, got "
            f"{len(matrix)} rows of lengths {sorted({len(row) for row in matrix})} and "
            f"{len(bias)} biases"
        )
    if not np.isfinite(matrix).all() or not np.isfinite(bias).all():
        raise FerkitError("model card: calibration matrix or bias contains NaN or infinity")
    return AffineCalibration(str(calibration.get("map", "dirichlet")), matrix, bias)


def is_calibrated(card: dict | None) -> bool:
    """True when the card stores a calibration that changes probabilities.

    Example:
        >>> is_calibrated({}), is_calibrated({"calibration": {"temperature": 0.7}})
        (False, True)
    """
    return calibration_of(card) != 1.0


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


def _calibrated_logits(log_probabilities: torch.Tensor, calibration: Calibration):
    if isinstance(calibration, AffineCalibration):
        return calibration.apply(log_probabilities)
    return log_probabilities / calibration if calibration != 1.0 else log_probabilities


def combine_probabilities(
    member_logits: Sequence[torch.Tensor],
    member_temperatures: Sequence[Calibration],
    temperature: Calibration = 1.0,
) -> torch.Tensor:
    """Class probabilities from one or more members' logits: THE place calibrations apply.

    Each member's logits are divided by its own temperature and soft-maxed; the members'
    probabilities are averaged; an ensemble's own temperature (``temperature``) then scales
    the log of that average. For a single model ``softmax(log softmax(z) / T)`` equals
    ``softmax(z / T)``, so one fitting routine serves models and ensembles alike. A
    calibration may also be an :class:`AffineCalibration` (vector or Dirichlet scaling), which
    maps the log-probabilities instead of dividing them.

    Temperatures are Python floats, so an ONNX export traces them as constants.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])
        >>> combine_probabilities([logits], [2.0]).tolist() == torch.softmax(logits / 2, 1).tolist()
        True
    """
    total = None
    for logits, member_calibration in zip(member_logits, member_temperatures):
        if isinstance(member_calibration, AffineCalibration):
            logits = torch.log_softmax(logits, dim=1)
        probabilities = torch.softmax(_calibrated_logits(logits, member_calibration), dim=1)
        total = probabilities if total is None else total + probabilities
    if len(member_logits) > 1:
        total = total / len(member_logits)
    if temperature != 1.0:
        log_total = torch.log(total.clamp_min(PROBABILITY_FLOOR))
        total = torch.softmax(_calibrated_logits(log_total, temperature), dim=1)
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


def _fit_affine(scores, labels, method: str) -> AffineCalibration:
    """Vector or Dirichlet scaling by L-BFGS on the (penalised) NLL, from the fitted temperature."""
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    classes = scores.shape[1]
    start = 1.0 / fit_temperature(scores.numpy(), targets.numpy())
    if method == "vector":
        scale = torch.full((classes,), start, dtype=torch.float64, requires_grad=True)
        parameters = [scale]
    else:
        matrix = (torch.eye(classes, dtype=torch.float64) * start).requires_grad_()
        parameters = [matrix]
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    off_diagonal = 1.0 - torch.eye(classes, dtype=torch.float64)
    optimizer = torch.optim.LBFGS(
        parameters + [bias], max_iter=500, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def weights() -> torch.Tensor:
        return torch.diag(scale) if method == "vector" else matrix

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores @ weights().T + bias, targets)
        if method == "dirichlet":  # ODIR: off-diagonal and intercept regularisation
            penalty = (weights() * off_diagonal).pow(2).sum() / max(classes * (classes - 1), 1)
            loss = loss + DIRICHLET_PENALTY * (penalty + bias.pow(2).mean())
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = weights().detach().numpy()
    if not np.isfinite(fitted).all():
        raise FerkitError(f"{method} scaling did not converge (non-finite parameters)")
    return AffineCalibration(
        method,
        tuple(tuple(round(float(value), 8) for value in row) for row in fitted),
        tuple(round(float(value), 8) for value in bias.detach().numpy()),
    )


def fit_calibration(scores, labels, method: str = "temperature") -> Calibration:
    """Fit the calibration ``method`` (see :data:`ferkit.utils.choices.CALIBRATION_METHODS`) by NLL.

    ``scores`` are log-probabilities (or logits for ``temperature``) of labelled faces.
    ``temperature`` returns a float (:func:`fit_temperature`); ``vector`` and ``dirichlet`` an
    :class:`AffineCalibration`.

    Raises:
        FerkitError: for an unknown method (naming the choices) or malformed inputs.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> scores = np.log(softmax(rng.normal(0, 2, (500, 3))))
        >>> labels = rng.integers(0, 3, 500)
        >>> fit_calibration(scores, labels, "vector").method
        'vector'
    """
    if method not in CALIBRATION_METHODS:
        raise FerkitError(
            f"unknown calibration method {method!r}; choose one of: "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    _, labels = _check(scores, labels)
    if method == "temperature":
        return fit_temperature(scores, labels)
    return _fit_affine(scores, labels, method)


def calibrated_probabilities(scores, calibration: Calibration) -> np.ndarray:
    """Probabilities (float64) of scores under a temperature or an affine map.

    Example:
        >>> calibrated_probabilities([[0.0, 0.0]], 2.0).tolist()
        [[0.5, 0.5]]
    """
    if isinstance(calibration, AffineCalibration):
        return calibration.probabilities(scores)
    return softmax(scores, calibration)


#: What each calibration method is called in model cards and reports.
METHOD_DESCRIPTIONS = {
    "temperature": "temperature scaling (one scalar T, NLL minimised)",
    "vector": "vector scaling (a scale and a bias per class on the log-probabilities, NLL "
    "minimised)",
    "dirichlet": "Dirichlet scaling (matrix and bias on the log-probabilities, NLL minimised "
    f"with L2 {DIRICHLET_PENALTY} on the off-diagonal entries and the bias)",
}


def calibration_summary(scores, labels, calibration: Calibration, fitted_on: str) -> dict:
    """The ``calibration`` entry of a model card: the map and metrics before and after.

    Accuracy before and after is there because vector and Dirichlet scaling can change the
    top class of some faces (a temperature never does).

    Example:
        >>> summary = calibration_summary(np.array([[2.0, 0.0]]), [0], 1.5, "test")
        >>> summary["temperature"], summary["ece_after"] > summary["ece_before"]
        (1.5, True)
    """
    labels = np.asarray(labels)
    before_probabilities = softmax(scores)
    after_probabilities = calibrated_probabilities(scores, calibration)
    before = calibration_metrics(before_probabilities, labels)
    after = calibration_metrics(after_probabilities, labels)
    if isinstance(calibration, AffineCalibration):
        fitted = {
            "method": METHOD_DESCRIPTIONS[calibration.method],
            "map": calibration.method,
            "matrix": [list(row) for row in calibration.matrix],
            "bias": list(calibration.bias),
        }
    else:
        fitted = {
            "method": METHOD_DESCRIPTIONS["temperature"],
            "temperature": round(float(calibration), 6),
        }
    return {
        **fitted,
        "fitted_on": fitted_on,
        "faces": int(len(labels)),
        "ece_bins": ECE_BINS,
        **{f"{key}_before": round(before[key], 6) for key in ("ece", "nll", "brier")},
        **{f"{key}_after": round(after[key], 6) for key in ("ece", "nll", "brier")},
        "accuracy_before": round(float((before_probabilities.argmax(1) == labels).mean()), 6),
        "accuracy_after": round(float((after_probabilities.argmax(1) == labels).mean()), 6),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reliability_before": before["reliability"],
        "reliability_after": after["reliability"],
    }


def card_entry(summary: dict) -> dict:
    """The summary without the per-bin data (what a model card keeps)."""
    return {key: value for key, value in summary.items() if not key.startswith("reliability")}
