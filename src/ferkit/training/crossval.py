"""Stratified k-fold cross-validation: a loop over :func:`ferkit.training.fit`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ferkit.data import describe_skipped, load_fer2013, stratified_folds, write_skipped
from ferkit.training.config import TrainConfig
from ferkit.training.loop import fit
from ferkit.utils.io import write_json


def _fold_summary(index: int, result) -> dict:
    return {
        "fold": index,
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        "best_epoch": result.best_epoch,
        "run_dir": str(result.run_dir),
        "per_class_recall": {
            name: row["recall"] for name, row in result.metrics["per_class"].items()
        },
    }


def _run_fold(arguments) -> dict:
    """One fold in its own process (``--parallel-folds``): fit, then return its summary."""
    import torch

    index, fold_config, train_set, val_set, threads = arguments
    torch.set_num_threads(threads)
    prefix = f"[fold {index}] "
    result = fit(fold_config, train_set, val_set, log=lambda line: print(prefix + line))
    return _fold_summary(index, result)


def cross_validate(config: TrainConfig, folds: int = 5, log=print, parallel_folds: int = 1) -> dict:
    """Train one model per fold of ``config.data``; summarise accuracy and macro-F1.

    Fold ``k`` trains in ``OUT/fold_k`` (a normal run folder). ``OUT/cv_summary.json`` holds
    per-fold metrics and mean ± std; ``OUT/cv_folds.png`` plots them. Folds run one after
    another (also under torchrun, each fold data-parallel), or ``parallel_folds`` at a time as
    independent processes, each with its share of the CPU threads (and GPUs round-robin).

    Example:
        >>> summary = cross_validate(TrainConfig(data="faces.csv", out="cv"), 5)  # doctest: +SKIP
        >>> summary["accuracy_mean"]  # doctest: +SKIP
        0.96
    """
    from ferkit.plots import plot_cross_validation

    config.validate()
    out = Path(config.out)
    dataset = load_fer2013(config.data, skip_bad_rows=config.skip_bad_rows)
    if dataset.skipped:
        listing = write_skipped(dataset, out)
        log(f"{describe_skipped(dataset.skipped)} (all listed in {listing})")
    pairs = stratified_folds(dataset.labels, folds, seed=config.seed)
    fold_configs = [
        dataclasses.replace(config, out=str(out / f"fold_{index}")) for index in range(1, folds + 1)
    ]
    if parallel_folds > 1:
        import multiprocessing
        import os

        import torch

        jobs = []
        for index, ((train_index, val_index), fold_config) in enumerate(
            zip(pairs, fold_configs), start=1
        ):
            if torch.cuda.is_available() and fold_config.device in ("auto", "cuda"):
                gpu = (index - 1) % torch.cuda.device_count()
                fold_config = dataclasses.replace(fold_config, device=f"cuda:{gpu}")
            threads = max(1, (os.cpu_count() or 1) // parallel_folds)
            fold_config = dataclasses.replace(fold_config, progress=False)
            jobs.append((index, fold_config, dataset.subset(train_index),
                         dataset.subset(val_index), threads))  # fmt: skip
        log(f"{folds} folds, {parallel_folds} at a time in separate processes")
        # "spawn": a clean interpreter per fold (fork and threads of torch do not mix).
        with multiprocessing.get_context("spawn").Pool(parallel_folds) as pool:
            results = pool.map(_run_fold, jobs)
    else:
        results = []
        for index, ((train_index, val_index), fold_config) in enumerate(
            zip(pairs, fold_configs), start=1
        ):
            log(f"fold {index}/{folds}: {len(train_index)} train, {len(val_index)} validation")
            result = fit(
                fold_config, dataset.subset(train_index), dataset.subset(val_index), log=log
            )
            results.append(_fold_summary(index, result))
    accuracies = np.array([fold["accuracy"] for fold in results])
    f1_scores = np.array([fold["macro_f1"] for fold in results])
    summary = {
        "folds": folds,
        "data": config.data,
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std(ddof=1)) if folds > 1 else 0.0,
        "macro_f1_mean": float(f1_scores.mean()),
        "macro_f1_std": float(f1_scores.std(ddof=1)) if folds > 1 else 0.0,
        "per_fold": results,
        "config": config.to_dict(),
    }
    write_json(out / "cv_summary.json", summary)
    plot_cross_validation(results, out / "cv_folds.png")
    return summary
