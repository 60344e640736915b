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

from ferkit.errors import FerkitError


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
            rotation at three severities (:mod:`ferkit.robustness`): ``metrics["robustness"]``
            and ``robustness.png``.

    Returns:
        The metrics dict (also written to ``OUT/metrics.json``).

    Example:
        >>> metrics = evaluate_dataset("faces.csv", "runs/demo", "PrivateTest")  # doctest: +SKIP
        >>> sorted(metrics)[:3]  # doctest: +SKIP
        ['accuracy', 'class_names', 'confusion_matrix']
    """
    from ferkit.data import load_fer2013
    from ferkit.inference import Predictor
    from ferkit.io import write_json
    from ferkit.plots import plot_confusion_matrix

    predictor = Predictor.from_run(model, device=device, tta=tta, backend=backend)
    dataset = load_fer2013(data, skip_bad_rows=skip_bad_rows)
    skipped = list(dataset.skipped)
    if split is not None:
        if dataset.usage is None:
            raise FerkitError(f"{data}: --split {split} needs a Usage column; this data has none")
        available = sorted(set(dataset.usage.tolist()))
        if split not in available:
            raise FerkitError(
                f"{data}: no rows with Usage {split!r}; the data has: {', '.join(available)}"
            )
        dataset = dataset.subset(dataset.usage == split)
    labels = align_labels(dataset, predictor.class_names)
    probabilities = predictor.predict_proba(dataset.images, batch_size=batch_size)
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), predictor.class_names)
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
    if perturb:
        from ferkit.plots import plot_robustness
        from ferkit.robustness import robustness_report

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
