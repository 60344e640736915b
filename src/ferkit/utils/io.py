"""Atomic file writing: write to a temporary file beside the target, then rename.

A crash or Ctrl-C mid-write never leaves a half-written config, history or checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = atomic_write(target, lambda tmp: pathlib.Path(tmp).write_text("hi"))
        >>> target.read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(file_descriptor)
    # mkstemp creates owner-only files; outputs get the usual permissions (umask applies).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically.

    Example:
        >>> import tempfile, pathlib
        >>> target = write_json(pathlib.Path(tempfile.mkdtemp()) / "a.json", {"x": 1})
        >>> read_json(target)
        {'x': 1}
    """
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text``, atomically.

    Example:
        >>> import tempfile, pathlib
        >>> write_text(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "hi").read_text()
        'hi'
    """
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def read_json(path: str | os.PathLike):
    """Read a JSON file.

    Example:
        >>> import tempfile, pathlib
        >>> read_json(write_json(pathlib.Path(tempfile.mkdtemp()) / "a.json", [1, 2]))
        [1, 2]
    """
    return json.loads(Path(path).read_text())
