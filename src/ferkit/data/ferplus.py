"""FER+ (Barsoum et al. 2016): FER2013's faces relabelled by ten annotators each.

Microsoft's preparation script writes one folder per split, each with the faces as PNGs and a
``label.csv`` without a header, one line per face::

    fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0

that is: the image name, the face box, then ten vote counts in the order of
:data:`FERPLUS_VOTE_COLUMNS` (the 8 emotions, then ``unknown`` and ``NF``, not a face).

ferkit follows the paper's 8-class protocol: the majority vote (the first of the largest counts)
is the label; a face whose majority is ``unknown`` or ``NF`` is left out and listed in
``dataset.excluded``; the vote distribution over the 8 emotions (``unknown``/``NF`` votes
dropped, the rest normalised to sum to 1) is kept in ``dataset.votes`` for ``--targets votes``
and for scoring predicted distributions. Class names use FER2013's words in FER+'s order
(``happiness`` is ``Happy``, ...), so answers read the same whichever model gives them and a
FER2013 model can be scored on FER+ faces by name.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferkit.data.dataset import FerDataset
from ferkit.data.preprocessing import read_image, to_face_array
from ferkit.utils.errors import DataError, FerkitError

#: The ten vote columns of FER+'s ``label.csv``, in file order.
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
#: ferkit's names of FER+'s 8 emotion classes, in FER+'s label order.
FERPLUS_CLASS_NAMES: tuple[str, ...] = (
    "Neutral",
    "Happy",
    "Surprise",
    "Sad",
    "Angry",
    "Disgust",
    "Fear",
    "Contempt",
)
#: Split folders of Microsoft's layout, mapped to FER2013's ``Usage`` values.
FERPLUS_SPLITS = {
    "FER2013Train": "Training",
    "FER2013Valid": "PublicTest",
    "FER2013Test": "PrivateTest",
}
LABEL_FILE = "label.csv"
_EMOTIONS = len(FERPLUS_CLASS_NAMES)


def ferplus_split_folders(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """The (folder, usage) pairs of a FER+ dataset, or ``[]`` when ``root`` is not one.

    ``root`` is either the folder holding ``FER2013Train/``, ``FER2013Valid/``, ... or one of
    those split folders itself (any folder with a ``label.csv``).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> ferplus_split_folders(root)
        []
        >>> (root / "FER2013Valid").mkdir()
        >>> _ = (root / "FER2013Valid" / "label.csv").write_text("")
        >>> [usage for _, usage in ferplus_split_folders(root)]
        ['PublicTest']
    """
    root = Path(root)
    if not root.is_dir():
        return []
    if (root / LABEL_FILE).is_file():
        return [(root, FERPLUS_SPLITS.get(root.name, root.name))]
    return [
        (root / name, usage)
        for name, usage in FERPLUS_SPLITS.items()
        if (root / name / LABEL_FILE).is_file()
    ]


def parse_label_file(path: Path) -> tuple[list[tuple[int, str, np.ndarray]], list[str]]:
    """Read one ``label.csv``: ``[(line, image name, 10 votes)]`` and one message per bad line.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "label.csv"
        >>> _ = path.write_text('a.png,"(0, 0, 48, 48)",9,1,0,0,0,0,0,0,0,0\\nb.png,x,1\\n')
        >>> rows, problems = parse_label_file(path)
        >>> rows[0][1], rows[0][2].tolist()[:2], problems[0].split(": ", 1)[1]
        ('a.png', [9, 1], 'line 2: expected 12 fields (name, box, 10 votes), found 3')
    """
    rows, problems = [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    for number, fields in enumerate(lines, start=1):
        if not fields or not "".join(fields).strip():
            continue  # a blank line (a trailing newline) is not a face
        problem = _line_problem(fields)
        if problem is not None:
            problems.append(f"{path}: line {number}: {problem}")
            continue
        votes = np.array([int(value) for value in fields[2:]], dtype=np.int64)
        rows.append((number, fields[0].strip(), votes))
    return rows, problems


def _line_problem(fields: list[str]) -> str | None:
    """What is wrong with one line of ``label.csv``, or None."""
    expected = 2 + len(FERPLUS_VOTE_COLUMNS)
    if len(fields) != expected:
        return f"expected {expected} fields (name, box, 10 votes), found {len(fields)}"
    if not fields[0].strip():
        return "field 'name': empty image name"
    for column, value in zip(FERPLUS_VOTE_COLUMNS, fields[2:]):
        text = value.strip()
        if not text.isdigit():
            return f"field {column!r}: vote count {value!r} is not a non-negative integer"
    if sum(int(value) for value in fields[2:]) == 0:
        return "no votes (all ten counts are 0)"
    return None


def _read_face(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return to_face_array(read_image(path)), None
    except FerkitError as error:
        return None, str(error)


def load_ferplus(root: str | os.PathLike, skip_bad_rows: bool = False) -> FerDataset:
    """Load a FER+ dataset (one split folder, or the folder of ``FER2013Train/`` etc.).

    Args:
        root: the dataset folder.
        skip_bad_rows: skip bad label lines and missing/unreadable PNGs (listed in
            ``dataset.skipped``) instead of stopping at the first.

    Returns:
        A :class:`FerDataset` with :data:`FERPLUS_CLASS_NAMES`, majority-vote ``labels``,
        ``votes`` (float32, N x 8, rows sum to 1), ``usage`` from the folder name
        (``FER2013Train`` → ``Training``, ``FER2013Valid`` → ``PublicTest``,
        ``FER2013Test`` → ``PrivateTest``) and ``excluded`` (faces whose majority vote is
        ``unknown`` or ``NF``).

    Raises:
        DataError: naming the file and line (or image) and what is wrong.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "FER2013Valid"; root.mkdir()
        >>> Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "fer0.png")
        >>> _ = (root / "label.csv").write_text('fer0.png,"(0, 0, 48, 48)",2,7,0,0,0,0,0,1,0,0\\n')
        >>> dataset = load_ferplus(root)
        >>> dataset.class_names[int(dataset.labels[0])]
        'Happy'
        >>> [round(float(share), 2) for share in dataset.votes[0][:2]]
        [0.2, 0.7]
    """
    folders = ferplus_split_folders(root)
    if not folders:
        raise DataError(
            f"{root}: not a FER+ folder (expected {LABEL_FILE} in it, or split folders "
            f"{', '.join(FERPLUS_SPLITS)} holding one)"
        )
    entries, problems = [], []  # entries: (image path, usage, votes)
    for folder, usage in folders:
        rows, bad_lines = parse_label_file(folder / LABEL_FILE)
        problems += bad_lines
        entries += [(folder / name, usage, votes) for _, name, votes in rows]
    if problems and not skip_bad_rows:
        raise DataError(_first_of(problems))
    vote_matrix = np.stack([votes for _, _, votes in entries]) if entries else np.zeros((0, 10))
    majority = vote_matrix.argmax(axis=1)
    excluded = [
        f"{path}: majority vote {FERPLUS_VOTE_COLUMNS[int(vote)]!r} (not an emotion)"
        for (path, _, _), vote in zip(entries, majority)
        if vote >= _EMOTIONS
    ]
    keep = np.flatnonzero(majority < _EMOTIONS)
    # Pillow releases the GIL while decoding, so threads help on many small files.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        faces = list(pool.map(_read_face, [entries[index][0] for index in keep]))
    unreadable = [message for _, message in faces if message is not None]
    if unreadable and not skip_bad_rows:
        raise DataError(_first_of(unreadable))
    readable = np.array([face is not None for face, _ in faces], dtype=bool)
    keep = keep[readable]
    if len(keep) == 0:
        raise DataError(f"{root}: no usable faces ({len(problems) + len(unreadable)} bad rows)")
    emotion_votes = vote_matrix[keep, :_EMOTIONS].astype(np.float32)
    return FerDataset(
        images=np.stack([face for face, _ in faces if face is not None]),
        labels=majority[keep],
        class_names=FERPLUS_CLASS_NAMES,
        usage=np.array([entries[index][1] for index in keep]),
        source=str(root),
        skipped=problems + unreadable,
        votes=emotion_votes / emotion_votes.sum(axis=1, keepdims=True),
        excluded=excluded,
    )


def excluded_in_split(excluded: list[str], usage: str) -> list[str]:
    """The entries of ``dataset.excluded`` whose face lies in split ``usage``'s folder.

    Example:
        >>> excluded_in_split(["x/FER2013Valid/a.png: ...", "x/FER2013Train/b.png: ..."],
        ...                   "PublicTest")
        ['x/FER2013Valid/a.png: ...']
    """
    return [
        entry
        for entry in excluded
        if FERPLUS_SPLITS.get(Path(entry.split(": ", 1)[0]).parent.name) == usage
    ]


def write_synthetic_ferplus(
    root: str | os.PathLike, n: int = 280, seed: int = 0, unknown_share: float = 0.05
) -> Path:
    """Write synthetic faces in FER+'s layout (``FER2013Train/`` + ``FER2013Valid/``) for tests.

    Faces are :func:`ferkit.data.synth.make_synthetic_dataset`'s; each gets ten votes: 5-9 for
    its class, the rest spread at random over the other columns, and a share
    ``unknown_share`` of faces gets an ``unknown`` majority (left out on loading).

    Returns:
        ``root``.

    Example:
        >>> import tempfile
        >>> root = write_synthetic_ferplus(tempfile.mkdtemp(), n=20)
        >>> sorted(usage for _, usage in ferplus_split_folders(root))
        ['PublicTest', 'Training']
    """
    from PIL import Image

    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.utils.io import atomic_write, write_text

    root = Path(root)
    synthetic = make_synthetic_dataset(n, seed)
    random = np.random.default_rng(seed)
    position = {name: index for index, name in enumerate(FERPLUS_CLASS_NAMES)}
    lines: dict[str, list[str]] = {"FER2013Train": [], "FER2013Valid": []}
    for index, (face, label) in enumerate(zip(synthetic.images, synthetic.labels)):
        votes = np.zeros(len(FERPLUS_VOTE_COLUMNS), dtype=np.int64)
        majority = 8 if random.random() < unknown_share else position[synthetic.class_names[label]]
        votes[majority] = random.integers(5, 10)
        others = [column for column in range(len(votes)) if column != majority]
        np.add.at(votes, random.choice(others, size=10 - votes[majority]), 1)
        split = "FER2013Valid" if index % 8 == 7 else "FER2013Train"
        name = f"fer{index:07d}.png"
        path = root / split / name
        atomic_write(
            path, lambda temporary, face=face: Image.fromarray(face).save(temporary, "PNG")
        )
        lines[split].append(f'{name},"(0, 0, 48, 48)",' + ",".join(str(v) for v in votes))
    for split, rows in lines.items():
        write_text(root / split / LABEL_FILE, "\n".join(rows) + "\n")
    return root


def _first_of(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more; --skip-bad-rows skips them)" if problems[1:] else ""
    return problems[0] + more
