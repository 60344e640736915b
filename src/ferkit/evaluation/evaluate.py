"""Metrics on labelled faces (scikit-learn) and the ``ferkit evaluate`` job."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ferkit.utils.errors import FerkitError


def classification_metrics(labels, predictions, class_names) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Example:
        >>> metrics = classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b"])
        >>> round(metrics["accuracy"], 3), metrics["per_class"]["b"]["recall"]
        (0.667, 0.5)
    """
    label_indices = list(range(len(class_names)))
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=label_indices, zero_division=0
    )
    return {
        "count": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(
            f1_score(labels, predictions, labels=label_indices, average="macro", zero_division=0)
        ),
        "per_class": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=label_indices).tolist(),
    }


def format_metrics(metrics: dict) -> str:
    """A short text report: accuracy, macro-F1 and a per-class table.

    Example:
        >>> report = format_metrics(classification_metrics([0, 1], [0, 1], ["a", "b"]))
        >>> print(report.splitlines()[0])
        accuracy 100.00 %   macro-F1 1.000   (2 faces)
    """
    lines = [
        f"accuracy {metrics['accuracy']:.2%}   macro-F1 {metrics['macro_f1']:.3f}   "
        f"({metrics['count']} faces)".replace("%", " %"),
        f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<12}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}"
            f"{row['support']:>10d}"
        )
    if metrics.get("votes"):
        votes = metrics["votes"]
        lines.append(
            f"against the annotators' votes: KL {votes['kl_divergence']:.3f} nats, total "
            f"variation {votes['total_variation']:.3f}, predicted class had the most votes "
            f"for {votes['plurality_agreement']:.2%} of faces".replace("%", " %")
        )
    if metrics.get("set_aside"):
        aside = ", ".join(f"{name} ({count})" for name, count in metrics["set_aside"].items())
        lines.append(f"set aside, classes the model does not have: {aside}")
    if metrics.get("excluded"):
        lines.append(f"left out by the dataset's protocol: {metrics['excluded']} faces")
    return "\n".join(lines)


def align_labels(dataset, class_names) -> np.ndarray:
    """The dataset's labels as indices into ``class_names`` (a model's classes).

    Class names are matched by name (any order, any case). A CSV carries only label numbers,
    so when its rows use FER2013's default names and the model has custom classes, the numbers
    are taken as the model's indices.

    Raises:
        FerkitError: when the classes cannot be matched.

    Example:
        >>> import numpy as np
        >>> from ferkit.data import FerDataset
        >>> ds = FerDataset(np.zeros((2, 48, 48), np.uint8), np.array([0, 1]), ("b", "a"))
        >>> align_labels(ds, ["a", "b"]).tolist()
        [1, 0]
    """
    from ferkit.data.dataset import FER2013_CLASS_NAMES

    names = [name.lower() for name in class_names]
    dataset_names = [name.lower() for name in dataset.class_names]
    if dataset_names == names:
        return dataset.labels
    if set(dataset_names) <= set(names):
        mapping = np.array([names.index(name) for name in dataset_names])
        return mapping[dataset.labels]
    from_csv = tuple(dataset.class_names) == FER2013_CLASS_NAMES and Path(dataset.source).is_file()
    if from_csv and (len(dataset) == 0 or int(dataset.labels.max()) < len(names)):
        return dataset.labels
    raise FerkitError(
        f"{dataset.source}: its classes {list(dataset.class_names)} do not match the model's "
        f"{list(class_names)}"
    )


def load_split(data: str | os.PathLike, split: str | None = None, skip_bad_rows: bool = False):
    """Load labelled faces, keeping only rows whose ``Usage`` is ``split`` (None: all rows).

    Raises:
        FerkitError: when the data has no Usage column or no row of that split.

    Example:
        >>> load_split("faces.csv", "PublicTest").usage[0]  # doctest: +SKIP
        'PublicTest'
    """
    from ferkit.data import load_fer2013
    from ferkit.data.ferplus import excluded_in_split

    dataset = load_fer2013(data, skip_bad_rows=skip_bad_rows)
    if split is None:
        return dataset
    if dataset.usage is None:
        raise FerkitError(f"{data}: --split {split} needs a Usage column; this data has none")
    available = sorted(set(dataset.usage.tolist()))
    if split not in available:
        raise FerkitError(
            f"{data}: no rows with Usage {split!r}; the data has: {', '.join(available)}"
        )
    subset = dataset.subset(dataset.usage == split)
    # What was skipped (bad rows) or left out by the protocol (FER+) stays reported.
    subset.skipped = list(dataset.skipped)
    subset.excluded = excluded_in_split(dataset.excluded, split)
    return subset


def probability_report(probabilities, labels, out_dir: str | os.PathLike | None = None) -> dict:
    """Calibration (ECE, NLL, Brier, reliability bins) and abstention (risk-coverage points,
    accuracy/coverage per ``--min-confidence``) of a model's probabilities on labelled faces.

    With ``out_dir``, also writes ``reliability_diagram.png`` and ``risk_coverage.png``.

    Example:
        >>> report = probability_report([[0.9, 0.1], [0.4, 0.6]], [0, 1])
        >>> round(report["calibration"]["ece"], 2), report["risk_coverage"][-1]["accuracy"]
        (0.25, 1.0)
    """
    from ferkit.inference.abstention import risk_coverage, threshold_table
    from ferkit.inference.calibration import calibration_metrics
    from ferkit.plots import reliability_figure, risk_coverage_figure, save_figure

    calibration = calibration_metrics(probabilities, labels)
    coverage = risk_coverage(probabilities, labels)
    if out_dir is not None:
        out_dir = Path(out_dir)
        figure = reliability_figure({"model": calibration["reliability"]})
        save_figure(figure, out_dir / "reliability_diagram.png")
        save_figure(risk_coverage_figure({"model": coverage}), out_dir / "risk_coverage.png")
    return {
        "calibration": calibration,
        "risk_coverage": coverage["points"],
        "min_confidence": threshold_table(probabilities, labels),
    }


def vote_metrics(votes, probabilities) -> dict:
    """How well predicted distributions match annotators' vote distributions (FER+).

    Returns:
        ``kl_divergence``: mean KL(votes || predicted) in nats; ``total_variation``: mean
        half L1 distance (0 = identical, 1 = disjoint); ``plurality_agreement``: share of faces
        whose predicted class got the most votes (ties count for every tied class).

    Example:
        >>> import numpy as np
        >>> votes = np.array([[0.7, 0.3], [0.5, 0.5]])
        >>> metrics = vote_metrics(votes, np.array([[0.7, 0.3], [0.9, 0.1]]))
        >>> round(metrics["total_variation"], 2), metrics["plurality_agreement"]
        (0.2, 1.0)
    """
    votes = np.asarray(votes, dtype=np.float64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(votes > 0, votes * np.log(votes / probabilities), 0.0)
    predicted = probabilities.argmax(axis=1)
    top_votes = votes.max(axis=1)
    chosen_votes = votes[np.arange(len(votes)), predicted]
    return {
        "kl_divergence": float(terms.sum(axis=1).mean()) if len(votes) else 0.0,
        "total_variation": float(0.5 * np.abs(votes - probabilities).sum(axis=1).mean())
        if len(votes)
        else 0.0,
        "plurality_agreement": float(np.mean(chosen_votes >= top_votes)) if len(votes) else 0.0,
    }


def restrict_to_classes(dataset, class_names):
    """Set aside the faces of classes a model does not have (scoring across label sets).

    A FER2013 model (7 classes) scored on FER+ (8) is scored on the faces of the 7 shared
    classes; FER+'s ``Contempt`` faces are set aside and counted. Vote distributions are cut
    to the shared classes and renormalised.

    Returns:
        ``(dataset, {set-aside class name: faces})``; the dataset unchanged and ``{}`` when the
        model has every class of the data (or shares none: :func:`align_labels` reports that).

    Example:
        >>> import numpy as np
        >>> from ferkit.data import FerDataset
        >>> ds = FerDataset(np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 2]), ("a", "b", "c"))
        >>> kept, aside = restrict_to_classes(ds, ["b", "a"])
        >>> kept.class_names, kept.labels.tolist(), aside
        (('a', 'b'), [0, 1], {'c': 1})
    """
    from ferkit.data import FerDataset

    model_names = {name.lower() for name in class_names}
    names = dataset.class_names
    shared = [index for index, name in enumerate(names) if name.lower() in model_names]
    if len(shared) in (0, dataset.num_classes):
        return dataset, {}
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    set_aside = {
        name: int(counts[index])
        for index, name in enumerate(dataset.class_names)
        if index not in shared
    }
    keep = np.isin(dataset.labels, shared)
    relabel = np.full(dataset.num_classes, -1)
    relabel[shared] = np.arange(len(shared))
    votes = None
    if dataset.votes is not None:
        votes = dataset.votes[keep][:, shared]
        votes = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
    restricted = FerDataset(
        images=dataset.images[keep],
        labels=relabel[dataset.labels[keep]],
        class_names=tuple(dataset.class_names[index] for index in shared),
        usage=None if dataset.usage is None else dataset.usage[keep],
        source=dataset.source,
        votes=votes,
    )
    return restricted, set_aside


def _votes_in_model_order(votes: np.ndarray, dataset_names, model_names) -> np.ndarray:
    """Vote columns moved to the model's class order (classes the data lacks get 0)."""
    position = {name.lower(): index for index, name in enumerate(model_names)}
    ordered = np.zeros((len(votes), len(model_names)), dtype=np.float32)
    ordered[:, [position[name.lower()] for name in dataset_names]] = votes
    return ordered


def evaluate_dataset(
    data: str | os.PathLike,
    model: str | os.PathLike,
    split: str | None = None,
    out: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    batch_size: int = 512,
    device: str = "auto",
    tta: str | None = None,
    backend: str = "torch",
    perturb: bool = False,
) -> dict:
    """Evaluate a trained model on labelled data; writes ``metrics.json`` and confusion plots.

    Args:
        data: FER2013 CSV or image folder.
        model: run folder or checkpoint.
        split: evaluate only rows whose ``Usage`` equals this (e.g. ``PrivateTest``); None → all.
        out: output folder (default: the run folder, or the checkpoint's folder).
        skip_bad_rows: skip invalid rows instead of failing.
        batch_size: faces per forward pass.
        device: auto | cpu | cuda | mps.
        tta: test-time augmentation (none | flip | shift); None uses the model card's.
        backend: inference engine (see :class:`ferkit.inference.Predictor.from_run`); the
            default, PyTorch fp32, gives the reference numbers.
        perturb: also score the model under blur, noise, JPEG, brightness, contrast and
            rotation at three severities (:mod:`ferkit.evaluation.robustness`):
            ``metrics["robustness"]`` and ``robustness.png``.

    Returns:
        The metrics dict (also written to ``OUT/metrics.json``).

    Example:
        >>> metrics = evaluate_dataset("faces.csv", "runs/demo", "PrivateTest")  # doctest: +SKIP
        >>> sorted(metrics)[:3]  # doctest: +SKIP
        ['accuracy', 'class_names', 'confusion_matrix']
    """
    from ferkit.inference.predictor import Predictor
    from ferkit.plots import plot_confusion_matrix
    from ferkit.utils.io import write_json

    predictor = Predictor.from_run(model, device=device, tta=tta, backend=backend)
    dataset = load_split(data, split, skip_bad_rows)
    skipped, excluded = list(dataset.skipped), list(dataset.excluded)
    dataset, set_aside = restrict_to_classes(dataset, predictor.class_names)
    labels = align_labels(dataset, predictor.class_names)
    probabilities = predictor.predict_proba(dataset.images, batch_size=batch_size)
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), predictor.class_names)
    if dataset.votes is not None:
        votes = _votes_in_model_order(dataset.votes, dataset.class_names, predictor.class_names)
        metrics["votes"] = vote_metrics(votes, probabilities)
    metrics["set_aside"] = set_aside
    metrics["excluded"] = len(excluded)
    metrics["skipped"] = skipped
    metrics["data"] = str(data)
    metrics["split"] = split or "all"
    metrics["model"] = str(model)
    # The predictor's TTA: the override, the one inside an .onnx graph, or else the card's.
    card_tta = predictor.card.get("tta", "none")
    metrics["tta"] = predictor.tta if predictor.tta is not None else card_tta
    metrics["backend"] = predictor.backend
    if predictor.quantization is not None:
        metrics["quantization"] = predictor.quantization
    out_dir = Path(out) if out is not None else predictor.location_folder
    metrics.update(probability_report(probabilities, labels, out_dir))
    if perturb:
        from ferkit.evaluation.robustness import robustness_report
        from ferkit.plots import plot_robustness

        metrics["robustness"] = robustness_report(predictor, dataset.images, labels,
                                                  batch_size=batch_size)  # fmt: skip
        plot_robustness(metrics["robustness"], out_dir / "robustness.png")
    write_json(out_dir / "metrics.json", metrics)
    plot_confusion_matrix(
        np.array(metrics["confusion_matrix"]),
        predictor.class_names,
        out_dir / "confusion_matrix.png",
        title=f"{Path(str(data)).name} ({metrics['split']})",
    )
    metrics["output_folder"] = str(out_dir)
    return metrics


def format_probability_report(metrics: dict) -> str:
    """Calibration, risk-coverage and ``--min-confidence`` lines of an evaluation.

    Example:
        >>> report = probability_report([[0.9, 0.1], [0.4, 0.6]], [0, 1])
        >>> print(format_probability_report(report).splitlines()[0])
        calibration: ECE 0.250 (15 bins)   NLL 0.308   Brier 0.170
    """
    calibration = metrics["calibration"]
    coverage = "   ".join(
        f"{point['coverage']:.0%}: {point['accuracy']:.1%}" for point in metrics["risk_coverage"]
    )
    thresholds = "   ".join(
        f"{row['min_confidence']:g}: {row['coverage']:.0%} answered"
        + (f", {row['accuracy']:.1%} right" if row["accuracy"] is not None else "")
        for row in metrics["min_confidence"]
    )
    return "\n".join(
        [
            f"calibration: ECE {calibration['ece']:.3f} ({calibration['bins']} bins)   "
            f"NLL {calibration['nll']:.3f}   Brier {calibration['brier']:.3f}",
            f"accuracy on the most confident faces (coverage: accuracy): {coverage}",
            f"--min-confidence: {thresholds}",
        ]
    ).replace("%", " %")
