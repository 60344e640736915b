"""Figures: every function returns its ``matplotlib.figure.Figure`` and, given a ``path``,
also writes it there (never ``plt.show()``). A notebook shows a returned figure inline.

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot: no global backend is
switched (a notebook keeps its inline plots), and nothing is left open in pyplot's registry.
Saving a PNG uses Matplotlib's Agg renderer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ferkit.utils.io import atomic_write


def _figure(rows: int = 1, columns: int = 1, **options):
    figure = Figure(**options)
    return figure, figure.subplots(rows, columns, squeeze=False)


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Write a figure (from one of the ``*_figure`` functions) as PNG, atomically.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "f.png"
        >>> save_figure(Figure(), out).exists()
        True
    """
    path = Path(path)

    def write(temporary: str) -> None:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", dpi=110)

    return atomic_write(path, write)


def _saved(figure: Figure, path: str | os.PathLike | None) -> Figure:
    """Write ``figure`` to ``path`` (when a path is given) and return the figure."""
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_history(history: list[dict], path=None, lr_drop_epochs=()) -> Figure:
    """Loss and accuracy curves, train vs validation, with LR drops marked.

    Args:
        history: one dict per epoch with ``epoch`` (1-based), ``train_loss``, ``val_loss``,
            ``train_accuracy``, ``val_accuracy``.
        path: PNG to write (None: only return the figure).
        lr_drop_epochs: 1-based epochs that started with a lower learning rate.

    Example:
        >>> import tempfile, pathlib
        >>> rows = [dict(epoch=e, train_loss=1 / e, val_loss=1.1 / e, train_accuracy=0.5,
        ...              val_accuracy=0.4) for e in (1, 2, 3)]
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "h.png"
        >>> len(plot_history(rows, out, [3]).axes), out.exists()
        (2, True)
    """
    epochs = [row["epoch"] for row in history]
    figure, axes = _figure(1, 2, figsize=(11, 4))
    loss_axis, accuracy_axis = axes[0]
    for axis, key, title in ((loss_axis, "loss", "Loss"), (accuracy_axis, "accuracy", "Accuracy")):
        axis.plot(epochs, [row[f"train_{key}"] for row in history], "o-", ms=3, label="train")
        axis.plot(epochs, [row[f"val_{key}"] for row in history], "o-", ms=3, label="validation")
        for index, epoch in enumerate(lr_drop_epochs):
            axis.axvline(
                epoch - 0.5, color="gray", ls="--", lw=1, label="LR drop" if index == 0 else None
            )
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return _saved(figure, path)


def plot_confusion_matrix(matrix: np.ndarray, class_names, path=None, title: str = "") -> Figure:
    """Confusion matrix as counts and row-normalised (recall per true class), side by side.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "cm.png"
        >>> figure = plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], out)
        >>> out.exists()
        True
    """
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
    size = max(5.0, 0.7 * len(class_names) + 2)
    figure, axes = _figure(1, 2, figsize=(2 * size + 1, size))
    axes = axes[0]
    panels = ((axes[0], matrix, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f"))
    for axis, values, name, number_format in panels:
        image = axis.imshow(values, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046)
        ticks = np.arange(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=45, ha="right")
        axis.set_yticks(ticks, class_names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{title} {name}".strip())
        threshold = values.max() / 2 if values.size else 0
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                axis.text(
                    column,
                    row,
                    format(values[row, column], number_format),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if values[row, column] > threshold else "black",
                )
    figure.tight_layout()
    return _saved(figure, path)


def plot_label_distribution(
    counts: dict[str, int], path=None, title: str = "Label distribution"
) -> Figure:
    """Bar chart of faces per class with each bar labelled by its proportion.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.png"
        >>> figure = plot_label_distribution({"Happy": 3, "Sad": 1}, out)
        >>> out.exists()
        True
    """
    names, values = list(counts), np.array(list(counts.values()))
    total = max(int(values.sum()), 1)
    figure, axes = _figure(figsize=(8, 4))
    axis = axes[0, 0]
    bars = axis.bar(names, values, color="tab:blue")
    for bar, value in zip(bars, values):
        axis.annotate(
            f"{value / total:.1%}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axis.set_ylabel("faces")
    axis.set_title(f"{title} ({total} faces)")
    axis.margins(y=0.12)
    figure.tight_layout()
    return _saved(figure, path)


def plot_face_grid(images: np.ndarray, titles, path=None, columns: int = 4) -> Figure:
    """Grid of grayscale faces with a title each (e.g. 16 faces as 4x4).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "g.png"
        >>> len(plot_face_grid(np.zeros((4, 48, 48), np.uint8), list("abcd"), out, 2).axes)
        4
    """
    rows = int(np.ceil(len(images) / columns))
    figure, axes = _figure(rows, columns, figsize=(2.0 * columns, 2.2 * rows))
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index], cmap="gray", vmin=0, vmax=255)
            axis.set_title(titles[index], fontsize=10)
    figure.tight_layout()
    return _saved(figure, path)


def plot_cross_validation(folds: list[dict], path=None) -> Figure:
    """Per-fold validation accuracy and macro-F1 bars with the mean marked.

    Example:
        >>> import tempfile, pathlib
        >>> figure = plot_cross_validation([{"accuracy": .8, "macro_f1": .7}] * 2)
        >>> figure.axes[0].get_title()
        'Cross-validation (dashed: mean)'
    """
    positions = np.arange(1, len(folds) + 1)
    figure, axes = _figure(figsize=(max(5, 1.2 * len(folds) + 2), 4))
    axis = axes[0, 0]
    for offset, key, color in ((-0.2, "accuracy", "tab:blue"), (0.2, "macro_f1", "tab:orange")):
        values = np.array([fold[key] for fold in folds])
        axis.bar(positions + offset, values, width=0.4, color=color, label=key)
        axis.axhline(values.mean(), color=color, ls="--", lw=1)
    axis.set_xticks(positions, [f"fold {index}" for index in positions])
    axis.set_ylim(0, 1.05)
    axis.set_title("Cross-validation (dashed: mean)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return _saved(figure, path)


def reliability_figure(panels: dict[str, list[dict]], title: str = "") -> Figure:
    """Reliability diagrams side by side (e.g. before and after temperature scaling).

    Each panel shows, per confidence bin, the accuracy of its faces as a bar against the
    diagonal (perfect calibration), the gap to the bin's mean confidence hatched, and the
    share of faces per bin.

    Args:
        panels: panel name → bins from :func:`ferkit.inference.calibration.reliability_bins`.
        title: figure title.

    Example:
        >>> from ferkit.inference.calibration import reliability_bins
        >>> bins = reliability_bins([[0.9, 0.1], [0.3, 0.7]], [0, 0])
        >>> len(reliability_figure({"before": bins, "after": bins}).axes)
        2
    """
    figure, axes = _figure(1, len(panels), figsize=(4.6 * len(panels), 4.6))
    for axis, (name, bins) in zip(axes[0], panels.items()):
        total = max(1, sum(row["count"] for row in bins))
        width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
        filled = [row for row in bins if row["count"]]
        centres = [(row["lower"] + row["upper"]) / 2 for row in filled]
        accuracy = [row["accuracy"] for row in filled]
        confidence = [row["confidence"] for row in filled]
        axis.bar(centres, accuracy, width=width, color="tab:blue", edgecolor="white",
                 label="accuracy")  # fmt: skip
        # The gap, hatched, from accuracy up (over-confident) or down (under-confident) to the
        # bin's mean confidence.
        axis.bar(centres, np.abs(np.subtract(confidence, accuracy)),
                 bottom=np.minimum(confidence, accuracy), width=width, facecolor="none",
                 edgecolor="tab:red", hatch="///", lw=0.8, label="gap to confidence")  # fmt: skip
        axis.bar(centres, [row["count"] / total for row in filled], width=width * 0.4,
                 color="gray", alpha=0.6, label="share of faces")  # fmt: skip
        axis.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ece = sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in filled)
        axis.set_title(f"{name}: ECE {ece / total:.3f}")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence (top probability)")
        axis.set_ylabel("accuracy")
        axis.legend(loc="upper left", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def risk_coverage_figure(curves: dict[str, dict], title: str = "Risk-coverage") -> Figure:
    """Accuracy on the most confident faces against the share of faces answered.

    Args:
        curves: curve name → :func:`ferkit.inference.abstention.risk_coverage` result.
        title: axis title.

    Example:
        >>> from ferkit.inference.abstention import risk_coverage
        >>> curve = risk_coverage([[0.9, 0.1], [0.6, 0.4]], [0, 1])
        >>> len(risk_coverage_figure({"model": curve}).axes)
        1
    """
    figure, axes = _figure(figsize=(6, 4.5))
    axis = axes[0, 0]
    for name, result in curves.items():
        line = axis.plot(result["curve"]["coverage"], result["curve"]["accuracy"], label=name)
        points = result["points"]
        axis.plot([point["coverage"] for point in points], [point["accuracy"] for point in points],
                  "o", color=line[0].get_color())  # fmt: skip
        for point in points:
            position = (point["coverage"], point["accuracy"])
            axis.annotate(f"{point['accuracy']:.1%}", position, textcoords="offset points",
                          xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    axis.set_xlim(0, 1.02)
    axis.set_xlabel("coverage (share of faces answered, most confident first)")
    axis.set_ylabel("accuracy on answered faces")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    figure.tight_layout()
    return figure


def plot_robustness(report: dict, path: str | os.PathLike | None = None):
    """Accuracy against severity (0 = clean) per perturbation, from a robustness report.

    Args:
        report: :func:`ferkit.evaluation.robustness.robustness_report`'s result.
        path: also write the figure to this PNG when given.

    Returns:
        The Matplotlib figure.

    Example:
        >>> rows = [{"severity": 1, "accuracy": 0.5}, {"severity": 2, "accuracy": 0.4}]
        >>> report = {"count": 9, "clean": {"accuracy": 0.6},
        ...           "perturbations": {"blur": {"parameter": "sigma", "severities": rows}}}
        >>> plot_robustness(report).axes[0].get_ylabel()
        'accuracy'
    """
    figure, axes = _figure(figsize=(7, 4.5))
    axis = axes[0, 0]
    clean = report["clean"]["accuracy"]
    for name, item in report["perturbations"].items():
        severities = [0] + [row["severity"] for row in item["severities"]]
        accuracies = [clean] + [row["accuracy"] for row in item["severities"]]
        axis.plot(severities, accuracies, "o-", ms=4, label=name)
    axis.axhline(clean, color="gray", ls="--", lw=1, label="clean")
    axis.set_xlabel("severity (0: clean)")
    axis.set_ylabel("accuracy")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title(f"Robustness ({report['count']} faces)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    if path is not None:
        save_figure(figure, path)
    return figure


#: At most this many people get a timeline panel (the longest tracks); a crowd video would
#: otherwise make a picture hundreds of panels tall.
MAX_TIMELINE_TRACKS = 12


def _timeline_series(results) -> tuple[dict[int, list], float]:
    """(track id -> [(time, probabilities)], the video's time step between analysed frames)."""
    series: dict[int, list] = {}
    for result in results:
        for face in result.faces:
            key = face.track if face.track is not None else 0
            series.setdefault(key, []).append((result.timestamp or 0.0, face.probabilities))
    times = np.unique([result.timestamp or 0.0 for result in results])
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    return series, step


def emotion_timeline_figure(results, title: str = "") -> Figure:
    """Each tracked person's emotion probabilities over a video's time, one panel per track.

    The :data:`MAX_TIMELINE_TRACKS` longest tracks are drawn (the title says when there were
    more); a line breaks where its person was not found, rather than bridging the gap.

    Args:
        results: a video's :class:`ferkit.inference.results.MediaResult` list, faces with track ids.
        title: shown above the first panel (e.g. the video's name).

    Returns:
        The figure (save it with :func:`save_figure`; nothing is shown).

    Example:
        >>> emotion_timeline_figure([]).axes[0].get_title()
        'no faces tracked'
    """
    series, step = _timeline_series(results)
    if not series:
        figure, axes = _figure(1, 1, figsize=(8, 2.5))
        axes[0][0].set_title("no faces tracked")
        return figure
    longest = sorted(series, key=lambda track: len(series[track]), reverse=True)
    shown = sorted(longest[:MAX_TIMELINE_TRACKS])
    if len(series) > len(shown):
        title = f"{title}: " if title else ""
        title += f"the {len(shown)} longest of {len(series)} tracks"
    figure = Figure(figsize=(11.5, 2.4 * len(shown) + 0.6))
    axes = figure.subplots(len(shown), 1, squeeze=False, sharex=True)
    for axis, track in zip(axes[:, 0], shown):
        times = np.array([time for time, _ in series[track]])
        # NaN after a frame whose next one is missing: matplotlib leaves the gap open.
        missing = np.append(np.diff(times) > 1.5 * step, False) if step > 0 else times < 0
        breaks = np.flatnonzero(missing) + 1
        for name in series[track][0][1]:
            values = np.array([probabilities[name] for _, probabilities in series[track]])
            axis.plot(np.insert(times, breaks, np.nan), np.insert(values, breaks, np.nan), ".-",
                      ms=3, lw=1.2, label=name)  # fmt: skip
        axis.set_ylim(0, 1)
        axis.set_ylabel(f"person {track}")
        axis.grid(alpha=0.3)
    # The legend beside the panels, so that it never covers the title or a line.
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    return figure
