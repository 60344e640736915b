"""Datasets: FER2013 CSVs and image folders, splits, synthetic faces.

Example:
    >>> from ferkit.data import load_fer2013  # doctest: +SKIP
    >>> dataset = load_fer2013("../shared/data/fer2013-train-publictest.csv.gz")  # doctest: +SKIP
    >>> len(dataset), dataset.class_names[3]  # doctest: +SKIP
    (32298, 'Happy')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferkit.data.cache import cache_key, default_cache_dir, load_cached, store_cached
from ferkit.data.dataset import FACE_SIZE, FER2013_CLASS_NAMES, FER2013_USAGES, FerDataset
from ferkit.data.fer2013 import parse_fer2013_csv, save_fer2013_csv
from ferkit.data.ferplus import FERPLUS_CLASS_NAMES, ferplus_split_folders, load_ferplus
from ferkit.data.folders import load_image_folder
from ferkit.data.split import split_dataset, stratified_folds
from ferkit.utils.errors import DataError
from ferkit.utils.io import atomic_write

__all__ = [
    "FACE_SIZE",
    "FER2013_CLASS_NAMES",
    "FER2013_USAGES",
    "FERPLUS_CLASS_NAMES",
    "FerDataset",
    "describe_excluded",
    "describe_skipped",
    "load_fer2013",
    "load_ferplus",
    "load_image_folder",
    "parse_fer2013_csv",
    "save_fer2013_csv",
    "split_dataset",
    "stratified_folds",
    "write_face_images",
    "write_synthetic_csv",
]


def describe_skipped(skipped: list[str], limit: int = 10) -> str:
    """One line saying how many rows were skipped and which (the first ``limit``).

    Example:
        >>> describe_skipped(["line 3: field 'pixels': ...", "line 9: field 'emotion': ..."], 1)
        "skipped 2 bad row(s): line 3: field 'pixels': ...; ... and 1 more"
    """
    if not skipped:
        return ""
    more = f"; ... and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"skipped {len(skipped)} bad row(s): {'; '.join(skipped[:limit])}{more}"


def describe_excluded(dataset: FerDataset) -> str:
    """One line on the faces the dataset's protocol left out (FER+: majority unknown or NF).

    Example:
        >>> import numpy as np
        >>> faces = FerDataset(np.zeros((1, 48, 48), np.uint8), np.array([0]))
        >>> faces.excluded = ["a.png: majority vote 'unknown' (not an emotion)"]
        >>> describe_excluded(faces)
        'left out 1 face(s) whose majority vote is not an emotion (unknown or not a face)'
    """
    if not dataset.excluded:
        return ""
    return (
        f"left out {len(dataset.excluded)} face(s) whose majority vote is not an emotion "
        "(unknown or not a face)"
    )


def write_skipped(dataset: FerDataset, folder: str | os.PathLike) -> Path | None:
    """Write every skipped row's description to ``FOLDER/skipped_rows.txt`` (if any)."""
    if not dataset.skipped:
        return None
    from ferkit.utils.io import write_text

    return write_text(Path(folder) / "skipped_rows.txt", "\n".join(dataset.skipped) + "\n")


def load_fer2013(
    path: str | os.PathLike,
    skip_bad_rows: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FerDataset:
    """Load a FER2013 CSV (plain or ``.gz``), a FER+ folder or an image-folder dataset.

    A folder with FER+'s ``label.csv`` (or its ``FER2013Train/``, ``FER2013Valid/``,
    ``FER2013Test/`` split folders) loads as FER+ (:func:`ferkit.data.ferplus.load_ferplus`:
    majority labels, vote distributions, split from the folder name). CSV and FER+ loads are
    cached in the user cache directory (``$FERKIT_CACHE_DIR``, else
    ``~/.cache/ferkit``), keyed on the file's size, mtime and a hash of its first megabyte, so
    a second load of FER2013 takes a fraction of a second.

    Args:
        path: a ``.csv``/``.csv.gz`` file, a FER+ folder, or a folder ``ROOT/<class>/*.png``
            / ``ROOT/<split>/<class>/*.png``.
        skip_bad_rows: skip invalid rows or images (described in ``dataset.skipped``) instead of
            raising.
        cache: read and write the parsed-CSV cache.
        cache_dir: cache location (default: :func:`ferkit.data.cache.default_cache_dir`).

    Returns:
        A :class:`FerDataset`.

    Raises:
        DataError: naming the file, the 1-based line and what is wrong.

    Example:
        >>> from ferkit.data.synth import make_synthetic_dataset
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> csv = save_fer2013_csv(make_synthetic_dataset(14), folder / "faces.csv")
        >>> len(load_fer2013(csv, cache=False))
        14
    """
    path = Path(path)
    ferplus_folders = ferplus_split_folders(path)
    if path.is_dir() and not ferplus_folders:
        return load_image_folder(path, skip_bad_rows=skip_bad_rows)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if ferplus_folders:
        parse, key_file = load_ferplus, ferplus_folders[0][0] / "label.csv"
        # Every split's label file (size, mtime, head) and folder (mtime) goes into the key.
        options = {
            "ferplus": [
                [cache_key(folder / "label.csv", {}), folder.stat().st_mtime_ns]
                for folder, _ in ferplus_folders
            ]
        }
    else:
        parse, key_file, options = parse_fer2013_csv, path, {}
    if not cache:
        return parse(path, skip_bad_rows=skip_bad_rows)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    options.update(skip_bad_rows=skip_bad_rows, classes=list(FER2013_CLASS_NAMES))
    key = cache_key(key_file, options)
    cached = load_cached(directory, key)
    if cached is not None:
        return _dataset_from_arrays(cached, str(path))
    dataset = parse(path, skip_bad_rows=skip_bad_rows)
    store_cached(directory, key, _dataset_to_arrays(dataset))
    return dataset


def _dataset_to_arrays(dataset: FerDataset) -> dict[str, np.ndarray]:
    """The arrays the dataset cache stores (plain arrays: no pickles)."""
    return {
        "images": dataset.images,
        "labels": dataset.labels,
        "class_names": np.array(dataset.class_names),
        "has_usage": np.array(dataset.usage is not None),
        "usage": dataset.usage if dataset.usage is not None else np.array([], dtype=str),
        "skipped": np.array(dataset.skipped, dtype=str),
        "votes": dataset.votes if dataset.votes is not None else np.zeros((0, 0), np.float32),
        "excluded": np.array(dataset.excluded, dtype=str),
    }


def _dataset_from_arrays(arrays: dict[str, np.ndarray], source: str) -> FerDataset:
    """Rebuild what :func:`_dataset_to_arrays` stored."""
    votes = arrays.get("votes")
    return FerDataset(
        images=arrays["images"],
        labels=arrays["labels"],
        class_names=tuple(arrays["class_names"].tolist()),
        usage=arrays["usage"] if arrays["has_usage"] else None,
        source=source,
        skipped=arrays["skipped"].tolist(),
        votes=votes if votes is not None and votes.size else None,
        excluded=arrays["excluded"].tolist() if "excluded" in arrays else [],
    )


def write_synthetic_csv(
    out: str | os.PathLike,
    n: int = 3500,
    seed: int = 0,
    png_dir: str | os.PathLike | None = None,
    png_count: int = 8,
) -> Path:
    """Write ``n`` procedurally drawn faces as a FER2013-format CSV (``ferkit synth``'s twin).

    Rows carry a ``Usage`` column (80 % Training, 10 % PublicTest, 10 % PrivateTest). With
    ``png_dir``, the first ``png_count`` held-out (PrivateTest) faces are also saved as PNG
    face crops, for trying ``ferkit predict`` on faces no model was trained on.

    Example:
        >>> import tempfile, pathlib
        >>> path = write_synthetic_csv(pathlib.Path(tempfile.mkdtemp()) / "faces.csv", n=14)
        >>> len(load_fer2013(path, cache=False))
        14
    """
    from ferkit.data.synth import make_synthetic_dataset

    if n < 7:
        raise DataError(f"--n {n}: need at least 7 faces (one per class)")
    dataset = make_synthetic_dataset(n, seed)
    path = save_fer2013_csv(dataset, out)
    if png_dir is not None:
        held_out = dataset.subset(dataset.usage == "PrivateTest")
        write_face_images(held_out if len(held_out) else dataset, png_dir, count=png_count)
    return path


def write_face_images(
    dataset: FerDataset, folder: str | os.PathLike, count: int = 8, scale: int = 2
) -> list[Path]:
    """Save the first ``count`` faces as PNG files named ``face_000_Happy.png``, ...

    ``scale`` enlarges them (nearest neighbour) so they look like ordinary face crops.

    Example:
        >>> import tempfile
        >>> from ferkit.data.synth import make_synthetic_dataset
        >>> paths = write_face_images(make_synthetic_dataset(7), tempfile.mkdtemp(), count=2)
        >>> [path.suffix for path in paths]
        ['.png', '.png']
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(min(count, len(dataset))):
        name = dataset.class_names[int(dataset.labels[index])]
        path = folder / f"face_{index:03d}_{name}.png"
        image = Image.fromarray(dataset.images[index])
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        atomic_write(path, lambda temporary, image=image: image.save(temporary, format="PNG"))
        paths.append(path)
    return paths
