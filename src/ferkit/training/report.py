"""What a run writes about itself: history (JSON, CSV, plot), epoch lines, the git commit."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from ferkit.training.config import TrainConfig
from ferkit.training.schedule import phase_boundaries
from ferkit.utils.io import write_json, write_text

HISTORY_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "images_per_second",
)


def history_row(epoch: int, lr: float, stats: dict, validation: dict) -> dict:
    """One epoch's history row from ``train_one_epoch``'s and ``evaluate``'s results.

    Example:
        >>> row = history_row(0, 0.1, {"loss": 1.0, "accuracy": 0.5, "seconds": 2.0,
        ...                            "images_per_second": 64.0}, {"loss": 1.2, "accuracy": 0.4})
        >>> row["epoch"], row["val_accuracy"]
        (1, 0.4)
    """
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": stats["loss"],
        "train_accuracy": stats["accuracy"],
        "val_loss": validation["loss"],
        "val_accuracy": validation["accuracy"],
        "seconds": stats["seconds"],
        "images_per_second": stats["images_per_second"],
    }


def write_history(run_dir: Path, history: list[dict], config: TrainConfig, plot: bool) -> None:
    """Write ``history.json`` and ``history.csv`` (and ``history.png`` with ``plot``)."""
    write_json(run_dir / "history.json", history)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in HISTORY_FIELDS} for row in history)
    write_text(run_dir / "history.csv", buffer.getvalue())
    if plot and history:
        plot_run_history(history, config, run_dir / "history.png")


def plot_run_history(history: list[dict], config: TrainConfig, path=None):
    """The loss and accuracy curves of a run, its LR drops marked; returns the figure.

    Example:
        >>> rows = [dict(epoch=e, train_loss=1 / e, val_loss=1.1 / e, train_accuracy=0.5,
        ...              val_accuracy=0.4) for e in (1, 2, 3)]
        >>> len(plot_run_history(rows, TrainConfig(epochs=[2, 1])).axes)
        2
    """
    from ferkit.plots import plot_history

    # 1-based epochs that start a lower-LR phase.
    drops = [boundary + 1 for boundary in phase_boundaries(config.epochs)]
    return plot_history(history, path, drops)


def summary_line(row: dict, total_epochs: int, improved: bool) -> str:
    """The line printed after each epoch.

    Example:
        >>> summary_line({"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1,
        ...               "val_accuracy": 0.4, "lr": 0.001, "seconds": 2.0,
        ...               "images_per_second": 64.0}, 3, True).split()[:2]
        ['epoch', '1/3']
    """
    return (
        f"epoch {row['epoch']:>3}/{total_epochs}  "
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:6.2%}  "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:6.2%}  "
        f"lr {row['lr']:.1e}  {row['seconds']:.1f}s ({row['images_per_second']:.0f} img/s)"
        + ("  *best" if improved else "")
    )


def git_commit() -> str | None:
    """The commit of the ferkit source tree that is training (None outside a git checkout)."""
    folder = Path(__file__).resolve().parent
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=folder, capture_output=True, text=True, timeout=5,
    ).stdout.strip()  # fmt: skip
    return completed.stdout.strip() + ("-dirty" if dirty else "")
