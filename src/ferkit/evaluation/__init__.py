"""Measuring and explaining a model: metrics and ``ferkit evaluate``
(:mod:`~ferkit.evaluation.evaluate`), ``--perturb`` (:mod:`~ferkit.evaluation.robustness`),
``ferkit calibrate`` (:mod:`~ferkit.evaluation.calibrate`), ``ferkit explain``
(:mod:`~ferkit.evaluation.explain`) and ``ferkit info`` (:mod:`~ferkit.evaluation.modelcard`).

These sit above :mod:`ferkit.inference` (they run a loaded model); the calibration maps and
abstention they report on are part of the probability graph, in :mod:`ferkit.inference`.
Names load on first use, so ``import ferkit.evaluation.modelcard`` pulls in no torch.

Example:
    >>> from ferkit.evaluation import classification_metrics
    >>> classification_metrics([0, 1], [0, 0], ["a", "b"])["accuracy"]
    0.5
"""

from ferkit.utils.lazy import lazy_attributes

_EVALUATE = "ferkit.evaluation.evaluate"

#: Lazy exports: name → the module that defines it.
_EXPORTS = {
    name: _EVALUATE
    for name in (
        "classification_metrics",
        "format_metrics",
        "align_labels",
        "load_split",
        "probability_report",
        "vote_metrics",
        "restrict_to_classes",
        "evaluate_dataset",
        "format_probability_report",
    )
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
