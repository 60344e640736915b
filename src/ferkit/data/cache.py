"""A cache of parsed datasets in the user's cache directory.

Parsing FER2013's 266 MB of text takes about two seconds; loading the parsed arrays back
takes a small fraction of that. The cache lives in a user cache directory, never beside the
data, because dataset folders (and CI's copy of ``../shared``) are often read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

#: Bump when the parsed representation changes, so old cache entries are ignored.
CACHE_FORMAT_VERSION = 2

#: Bytes of the file's head that go into the cache key (with its size and mtime).
HEAD_BYTES = 1 << 20


def default_cache_dir() -> Path:
    """Return ferkit's cache directory.

    ``$FERKIT_CACHE_DIR`` wins, then ``$XDG_CACHE_HOME/ferkit``, then ``~/.cache/ferkit``.

    Example:
        >>> default_cache_dir().name in ("ferkit",) or "FERKIT_CACHE_DIR" in os.environ
        True
    """
    if os.environ.get("FERKIT_CACHE_DIR"):
        return Path(os.environ["FERKIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ferkit"


def cache_key(path: Path, options: dict) -> str:
    """Key a file by its size, mtime and a hash of its first megabyte, plus parse options.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.csv"; _ = f.write_text("x")
        >>> len(cache_key(f, {}))
        64
    """
    stat = path.stat()
    with open(path, "rb") as handle:
        head_digest = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    material = json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "head": head_digest,
            "options": options,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def load_cached(cache_dir: Path, key: str) -> dict[str, np.ndarray] | None:
    """Return the cached arrays for ``key``, or None when there is no (readable) entry.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = store_cached(folder, "k", {"x": np.arange(3)})
        >>> load_cached(folder, "k")["x"].tolist(), load_cached(folder, "other")
        ([0, 1, 2], None)
    """
    entry = cache_dir / "datasets" / f"{key}.npz"
    if not entry.is_file():
        return None
    try:
        # allow_pickle=False: the cache holds plain arrays only, never pickles.
        with np.load(entry, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # truncated zip, missing member, ...: re-parse instead
        warnings.warn(f"ignoring unreadable cache entry {entry}: {error}", stacklevel=2)
        return None


def store_cached(cache_dir: Path, key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write ``arrays`` under ``key`` atomically (temp file, then rename); see :func:`load_cached`.

    A cache that cannot be written (read-only home, full disk) only costs speed, so it warns
    instead of failing.
    """
    from ferkit.utils.io import atomic_write

    target_dir = cache_dir / "datasets"

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:  # a file object: np.savez adds no suffix
            np.savez(handle, **arrays)

    try:
        return atomic_write(target_dir / f"{key}.npz", write)
    except OSError as error:
        warnings.warn(f"could not write dataset cache in {target_dir}: {error}", stacklevel=2)
        return None
