"""``ferkit explore``: class counts, the label-distribution chart and a grid of sample faces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferkit.data import describe_excluded, describe_skipped, load_fer2013
from ferkit.data.dataset import FER2013_USAGES, FerDataset
from ferkit.plots import plot_face_grid, plot_label_distribution


def class_table(dataset: FerDataset) -> str:
    """Counts and proportions per class, overall and per ``Usage`` split when present.

    Example:
        >>> from ferkit.data.synth import make_synthetic_dataset
        >>> print(class_table(make_synthetic_dataset(70)).splitlines()[0])  # doctest: +ELLIPSIS
        class ...
    """
    groups = [("all", dataset)]
    if dataset.usage is not None:
        known = [name for name in FER2013_USAGES if name in set(dataset.usage.tolist())]
        others = sorted(set(dataset.usage.tolist()) - set(known))
        groups += [(name, dataset.subset(dataset.usage == name)) for name in known + others]
    header = f"{'class':<10}" + "".join(f"{name:>22}" for name, _ in groups)
    lines = [header]
    for index, class_name in enumerate(dataset.class_names):
        cells = []
        for _, group in groups:
            count = int(np.sum(group.labels == index))
            cells.append(f"{count:>12d} ({count / max(len(group), 1):6.1%})")
        lines.append(f"{class_name:<10}" + "".join(f"{cell:>22}" for cell in cells))
    lines.append(f"{'total':<10}" + "".join(f"{len(group):>22d}" for _, group in groups))
    return "\n".join(lines)


def explore(
    data: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    skip_bad_rows: bool = False,
) -> dict:
    """Print-ready class table plus ``label_distribution.png`` and ``samples.png`` (4x4 faces).

    Returns:
        ``{"table": str, "counts": {...}, "label_distribution": path, "samples": path}``.

    Example:
        >>> result = explore("faces.csv", "explore_out")  # doctest: +SKIP
        >>> print(result["table"])  # doctest: +SKIP
    """
    dataset = load_fer2013(data, skip_bad_rows=skip_bad_rows)
    out = Path(out)
    distribution, samples = out / "label_distribution.png", out / "samples.png"
    plot_label_distribution(dataset.class_counts(), distribution, f"{Path(str(data)).name}")
    random = np.random.default_rng(seed)
    chosen = random.choice(len(dataset), size=min(16, len(dataset)), replace=False)
    titles = [dataset.class_names[int(label)] for label in dataset.labels[chosen]]
    plot_face_grid(dataset.images[chosen], titles, samples, columns=4)
    return {
        "table": class_table(dataset),
        "counts": dataset.class_counts(),
        "skipped": dataset.skipped,
        "skipped_summary": describe_skipped(dataset.skipped),
        "excluded": len(dataset.excluded),
        "excluded_summary": describe_excluded(dataset),
        "label_distribution": str(distribution),
        "samples": str(samples),
    }
