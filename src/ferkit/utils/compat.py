"""The module paths of ferkit 0.1's flat layout, kept importable for one release.

ferkit 0.2 groups its modules by pipeline stage (``ferkit.faces``, ``ferkit.inference``,
``ferkit.evaluation``, ``ferkit.utils``, ...). ``import ferkit.detection`` still works: a
meta-path finder hands back the module at its new place (the same module object, so patches
and ``isinstance`` checks agree) and warns once with a :class:`FutureWarning` naming it.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     import ferkit.choices as old
    >>> import ferkit.utils.choices as new
    >>> old is new, "ferkit.utils.choices" in str(caught[0].message)
    (True, True)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: Old module path → new module path (moved in 0.2; the old paths go in 0.3).
MOVED_MODULES = {
    "ferkit.errors": "ferkit.utils.errors",
    "ferkit.io": "ferkit.utils.io",
    "ferkit.lazy": "ferkit.utils.lazy",
    "ferkit.quiet": "ferkit.utils.quiet",
    "ferkit.choices": "ferkit.utils.choices",
    "ferkit.preprocessing": "ferkit.data.preprocessing",
    "ferkit.explore": "ferkit.data.explore",
    "ferkit.checkpoint": "ferkit.models.checkpoint",
    "ferkit.hub": "ferkit.models.hub",
    "ferkit.ensemble": "ferkit.models.ensemble",
    "ferkit.runtime": "ferkit.models.runtime",
    "ferkit.detection": "ferkit.faces.detection",
    "ferkit.yunet": "ferkit.faces.yunet",
    "ferkit.detector_files": "ferkit.faces.detector_files",
    "ferkit.alignment": "ferkit.faces.alignment",
    "ferkit.face_check": "ferkit.faces.face_check",
    "ferkit.tracking": "ferkit.inference.tracking",
    "ferkit.calibration": "ferkit.inference.calibration",
    "ferkit.abstention": "ferkit.inference.abstention",
    "ferkit.export": "ferkit.inference.export",
    "ferkit.int8": "ferkit.inference.int8",
    "ferkit.robustness": "ferkit.evaluation.robustness",
    "ferkit.calibrate": "ferkit.evaluation.calibrate",
    "ferkit.explain": "ferkit.evaluation.explain",
    "ferkit.modelcard": "ferkit.evaluation.modelcard",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str):
        self.new_name = new_name

    def create_module(self, spec):
        return importlib.import_module(self.new_name)

    def exec_module(self, module) -> None:
        # The module at its new place is already executed; the old name only points at it.
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds an old module path and loads it as the module at its new place, with a warning."""

    def find_spec(self, fullname, path=None, target=None):
        new_name = MOVED_MODULES.get(fullname)
        if new_name is None:
            return None
        warnings.warn(
            f"{fullname} moved to {new_name} in ferkit 0.2; the old path goes in 0.3",
            FutureWarning,
            stacklevel=3,
        )
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new_name))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import ferkit`` does this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
