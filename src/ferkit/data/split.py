"""Train/validation splits and k-fold partitions (scikit-learn does the sampling)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from ferkit.data.dataset import FerDataset
from ferkit.utils.errors import FerkitError

SPLIT_STRATEGIES = ("stratified", "usage")


def split_dataset(
    dataset: FerDataset,
    strategy: str = "stratified",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[FerDataset, FerDataset]:
    """Split into (train, validation).

    Args:
        dataset: the faces.
        strategy: ``"stratified"`` (seeded, class-stratified random split) or ``"usage"``
            (the ``Usage`` column decides: ``Training`` → train, ``PublicTest`` → validation;
            ``PrivateTest`` rows stay out of both).
        val_fraction: share of rows for validation with ``"stratified"``.
        seed: random seed of the stratified split.

    Example:
        >>> from ferkit.data.synth import make_synthetic_dataset
        >>> train, val = split_dataset(make_synthetic_dataset(70), val_fraction=0.2)
        >>> len(train), len(val)
        (56, 14)
    """
    if strategy == "usage":
        if dataset.usage is None:
            raise FerkitError(
                f"{dataset.source}: split 'usage' needs a Usage column; this data has none "
                "(use the stratified split: --split stratified)"
            )
        train = dataset.subset(dataset.usage == "Training")
        val = dataset.subset(dataset.usage == "PublicTest")
        for name, part in (("Training", train), ("PublicTest", val)):
            if len(part) == 0:
                found = ", ".join(sorted(set(dataset.usage.tolist())))
                raise FerkitError(
                    f"{dataset.source}: split 'usage' found no {name} rows (Usage values: {found})"
                )
        return train, val
    if strategy != "stratified":
        raise FerkitError(
            f"unknown split {strategy!r}; choose one of {', '.join(SPLIT_STRATEGIES)}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise FerkitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    indices = np.arange(len(dataset))
    counts = np.bincount(dataset.labels)
    # Stratify only when every present class can appear on both sides.
    stratify = dataset.labels if counts[counts > 0].min() >= 2 else None
    try:
        train_index, val_index = train_test_split(
            indices, test_size=val_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as error:
        raise FerkitError(f"{dataset.source}: cannot split {len(dataset)} rows: {error}") from error
    return dataset.subset(np.sort(train_index)), dataset.subset(np.sort(val_index))


def stratified_folds(
    labels: np.ndarray, folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``folds`` (train_indices, validation_indices) pairs, stratified by label.

    Example:
        >>> import numpy as np
        >>> pairs = stratified_folds(np.array([0, 1] * 5), folds=5)
        >>> len(pairs), len(pairs[0][1])
        (5, 2)
    """
    if folds < 2:
        raise FerkitError(f"folds must be at least 2, got {folds}")
    smallest = int(np.bincount(labels)[np.bincount(labels) > 0].min())
    if smallest < folds:
        raise FerkitError(
            f"folds={folds} needs at least {folds} faces per class; "
            f"the smallest class has {smallest}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))
