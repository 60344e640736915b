"""Lazy package attributes (PEP 562): a name's module is imported when the name is first read.

``import ferkit`` and ``ferkit --help`` stay instant (no torch), and a package's submodules can
import one another without going through the package namespace.

Example:
    >>> __getattr__ = lazy_attributes("ferkit", {"Predictor": "ferkit.inference.predictor"})
    >>> __getattr__("Predictor").__name__
    'Predictor'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first use.

    Raises (from the returned function):
        AttributeError: for a name not in ``exports``, as a module without it would.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
