"""``ferkit calibrate`` and the calibration reports: fit a model's calibration and store it.

The math (temperature fitting, metrics, :func:`~ferkit.inference.calibration.combine_probabilities`)
is in :mod:`ferkit.inference.calibration`; this module runs it on a model and data, updates the
model card and writes ``calibration.json`` and ``reliability_diagram.png``.

Example:
    >>> calibrate_model("runs/demo", "faces.csv", split="PublicTest")  # doctest: +SKIP
    {'temperature': 1.21, ...}
"""

from __future__ import annotations

import os
from pathlib import Path

from ferkit.evaluation.modelcard import describe_map
from ferkit.inference.calibration import (
    calibration_summary,
    card_entry,
    fit_calibration,
    fit_temperature,
    scores_from_probabilities,
)
from ferkit.utils.choices import CALIBRATION_METHODS
from ferkit.utils.errors import FerkitError


def write_calibration_report(summary: dict, folder: str | os.PathLike) -> list[Path]:
    """``calibration.json`` (before/after metrics and bins) and ``reliability_diagram.png``.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> summary = calibration_summary(np.array([[2.0, 0.0]]), [0], 1.5, "test")
        >>> [path.name for path in write_calibration_report(summary, tempfile.mkdtemp())]
        ['calibration.json', 'reliability_diagram.png']
    """
    from ferkit.plots import reliability_figure, save_figure
    from ferkit.utils.io import write_json

    folder = Path(folder)
    figure = reliability_figure(
        {"before": summary["reliability_before"], "after": summary["reliability_after"]},
        title=f"{describe_map(summary)} ({summary['fitted_on']})",
    )
    return [
        write_json(folder / "calibration.json", summary),
        save_figure(figure, folder / "reliability_diagram.png"),
    ]


def calibrate_model(
    model: str | os.PathLike,
    data: str | os.PathLike,
    split: str | None = None,
    out: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    device: str = "auto",
    batch_size: int = 512,
    method: str = "temperature",
) -> dict:
    """Fit a trained model's (or ensemble's) temperature on labelled faces and store it.

    ``ferkit calibrate``'s Python twin. The temperature goes into the model card beside the
    weights (``best.json``, a bundled model's ``NAME.json``) or into ``ensemble.json``; the
    weights are untouched. For an ensemble, the members keep their own temperatures and one
    more temperature scales the averaged probabilities. Fit on a validation split, never on
    the test split you report.

    Args:
        model: run folder, checkpoint, ensemble folder or bundled name (not an ``.onnx`` file:
            calibrate the model it came from and export again).
        data: FER2013 CSV or image folder with labels.
        split: only rows whose ``Usage`` equals this (e.g. ``PublicTest``); None: all rows.
        out: also write ``calibration.json`` and ``reliability_diagram.png`` here.
        skip_bad_rows: skip invalid rows instead of failing.
        device: auto | cpu | cuda | mps.
        batch_size: faces per forward pass.
        method: ``temperature`` (keeps every top class), ``vector`` or ``dirichlet`` (richer
            maps that can change a few top classes; see
            :func:`~ferkit.inference.calibration.fit_calibration`).

    Returns:
        The summary (temperature or map, ECE/NLL/Brier before and after, reliability bins) plus
        ``card_path`` (the file that now holds the temperature) and ``skipped``.

    Raises:
        FerkitError: for an ONNX file, unreadable data or a missing split.

    Example:
        >>> calibrate_model("runs/demo", "faces.csv", split="PublicTest")  # doctest: +SKIP
        {'temperature': 1.21, ...}
    """
    from ferkit.evaluation.evaluate import align_labels, load_split, restrict_to_classes
    from ferkit.inference.predictor import Predictor
    from ferkit.models import hub
    from ferkit.utils.io import read_json, write_json

    if method not in CALIBRATION_METHODS:  # before the minutes of forward passes
        raise FerkitError(
            f"unknown calibration method {method!r}; choose one of: "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    if Path(model).suffix == ".onnx":
        raise FerkitError(
            f"{model}: an exported ONNX file has its temperature inside the graph; calibrate "
            "the run folder (or checkpoint) it came from and export it again"
        )
    predictor = Predictor.from_run(model, device=device, backend="torch")
    dataset = load_split(data, split, skip_bad_rows)
    # Faces of classes the model lacks (FER+'s Contempt for a FER2013 model) are left out.
    dataset, _ = restrict_to_classes(dataset, predictor.class_names)
    labels = align_labels(dataset, predictor.class_names)
    scores = scores_from_probabilities(
        predictor.predict_proba(dataset.images, batch_size=batch_size, calibrated=False)
    )
    described = f"{Path(str(data)).name} {split or 'all rows'} ({len(labels)} faces)"
    summary = calibration_summary(
        scores, labels, fit_calibration(scores, labels, method), described
    )
    kind, path = hub.locate(model)  # the card to update: ensemble.json or the checkpoint's
    card_path = path if kind == "ensemble" else path.with_suffix(".json")
    card = read_json(card_path)
    card["calibration"] = card_entry(summary)
    write_json(card_path, card)
    if out is not None:
        write_calibration_report(summary, out)
    return dict(summary, card_path=str(card_path), skipped=list(dataset.skipped))


def calibrate_validation(scores, labels, run_dir: str | os.PathLike | None) -> dict:
    """Temperature scaling at the end of ``fit``: fitted on the validation logits.

    Writes ``calibration.json`` and ``reliability_diagram.png`` (before/after) into
    ``run_dir`` (None: write nothing, e.g. on a non-main distributed rank) and returns the
    model card's ``calibration`` entry.

    Example:
        >>> import numpy as np
        >>> entry = calibrate_validation(np.array([[3.0, 0.0], [3.0, 0.0]]), [0, 1], None)
        >>> entry["temperature"] > 1, entry["fitted_on"]
        (True, 'the validation split (2 faces)')
    """
    described = f"the validation split ({len(labels)} faces)"
    summary = calibration_summary(scores, labels, fit_temperature(scores, labels), described)
    if run_dir is not None:
        write_calibration_report(summary, run_dir)
    return card_entry(summary)


def format_calibration(summary: dict) -> str:
    """Two lines: the temperature (or map), and ECE/NLL/Brier (and accuracy) before → after.

    Example:
        >>> import numpy as np
        >>> summary = calibration_summary(np.array([[2.0, 0.0], [0.0, 1.0]]), [0, 1], 1.0, "x")
        >>> print(format_calibration(summary).splitlines()[0])
        temperature 1.000 fitted on x
    """
    rows = "   ".join(
        f"{name} {summary[f'{key}_before']:.4f} -> {summary[f'{key}_after']:.4f}"
        for key, name in (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier"), ("accuracy", "acc"))
        if f"{key}_before" in summary
    )
    return f"{describe_map(summary)} fitted on {summary['fitted_on']}\n{rows}"
