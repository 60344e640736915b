"""Image-folder datasets: ``ROOT/<class>/*.png`` or ``ROOT/<split>/<class>/*.png``.

The second layout is the popular Kaggle release of FER2013 (``train/angry/...``,
``test/happy/...``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferkit.data.dataset import FER2013_CLASS_NAMES, FerDataset
from ferkit.data.preprocessing import IMAGE_EXTENSIONS, read_image, to_face_array
from ferkit.utils.errors import DataError, FerkitError

#: Folder names of splits, mapped to FER2013's ``Usage`` values.
SPLIT_ALIASES = {
    "train": "Training",
    "training": "Training",
    "test": "PublicTest",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "privatetest": "PrivateTest",
}


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")
    )


def _folder_entries(top: list[Path]):
    """The images in a dataset's top folders and the folders they name: ``(entries, class
    folder names, split layout?, images outside a class folder)``; an entry is ``(file, class
    folder name, usage or None)``."""
    # ROOT/<split>/<class>/files when the top folders are split names (train, test, ...) or
    # hold only folders; otherwise ROOT/<class>/files.
    split_layout = all(folder.name.lower() in SPLIT_ALIASES for folder in top) or all(
        not _image_files(folder) and _subfolders(folder) for folder in top
    )
    entries: list[tuple[Path, str, str | None]] = []
    class_folder_names: set[str] = set()
    outside_class_folders: list[str] = []
    if split_layout:
        for split_folder in top:
            usage = SPLIT_ALIASES.get(split_folder.name.lower(), split_folder.name)
            outside_class_folders += [
                f"{file}: image outside a class folder (expected {split_folder}/<class>/...)"
                for file in _image_files(split_folder)
            ]
            for class_folder in _subfolders(split_folder):
                class_folder_names.add(class_folder.name)
                entries += [(file, class_folder.name, usage) for file in _image_files(class_folder)]
    else:
        for class_folder in top:
            class_folder_names.add(class_folder.name)
            entries += [(file, class_folder.name, None) for file in _image_files(class_folder)]
    return entries, class_folder_names, split_layout, outside_class_folders


def _class_labels(class_folder_names: set[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    """(class names, label of each class folder name): FER2013's order when every folder is
    a FER2013 emotion (any case), else the folder names sorted alphabetically."""
    folder_names = sorted(class_folder_names, key=str.lower)
    fer_names = {name.lower(): index for index, name in enumerate(FER2013_CLASS_NAMES)}
    if all(name.lower() in fer_names for name in folder_names):
        return FER2013_CLASS_NAMES, {name: fer_names[name.lower()] for name in folder_names}
    return tuple(folder_names), {name: index for index, name in enumerate(folder_names)}


def _read_faces(files: list[Path]) -> list[tuple[np.ndarray | None, str | None]]:
    """(48x48 face, None) or (None, what is wrong) per file, read in threads."""

    def load(file):
        try:
            return to_face_array(read_image(file)), None
        except FerkitError as error:
            return None, str(error)

    # Pillow releases the GIL while decoding, so threads help on many small files.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(load, files))


def load_image_folder(root: str | os.PathLike, skip_bad_rows: bool = False) -> FerDataset:
    """Load an image-folder dataset as 48x48 grayscale faces.

    Class folders whose names are FER2013 emotions (any case) get FER2013's label order;
    other names make a custom class list, sorted alphabetically.

    Args:
        root: the dataset folder.
        skip_bad_rows: skip unreadable images (listed in ``skipped``) instead of failing.

    Raises:
        DataError: naming the folder or file and what is wrong.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "happy").mkdir()
        >>> Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "happy" / "a.png")
        >>> ds = load_image_folder(root)
        >>> len(ds), ds.class_names[int(ds.labels[0])]
        (1, 'Happy')
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    top = _subfolders(root)
    if not top:
        raise DataError(f"{root}: no class folders (expected ROOT/<class>/*.png)")
    entries, class_folder_names, split_layout, outside_class_folders = _folder_entries(top)
    if outside_class_folders and not skip_bad_rows:
        more = len(outside_class_folders) - 1
        raise DataError(outside_class_folders[0] + (f" (and {more} more)" if more else ""))
    if not entries:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    # Empty class folders still declare a class.
    class_names, label_of = _class_labels(class_folder_names)
    results = _read_faces([file for file, _, _ in entries])
    problems = outside_class_folders + [message for _, message in results if message is not None]
    if problems and not skip_bad_rows:
        more = f" (and {len(problems) - 1} more bad files)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    kept = [index for index, (face, _) in enumerate(results) if face is not None]
    if not kept:
        raise DataError(f"{root}: no readable images (skipped {len(problems)} files)")
    usage = None
    if split_layout:
        usage = np.array([entries[index][2] for index in kept])
    return FerDataset(
        images=np.stack([results[index][0] for index in kept]),
        labels=np.array([label_of[entries[index][1]] for index in kept]),
        class_names=class_names,
        usage=usage,
        source=str(root),
        skipped=problems,
    )
