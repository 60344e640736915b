"""``ferkit.models.hub.load``: the one place where a model location becomes models.

Every ``--model`` (predict, evaluate, export, serve), ``--teacher`` and ``--init`` names a
location, and all of them are resolved here, the same way:

* a bundled model's name (``default``, ``small``) that is not also a local path;
* a run folder (its ``best`` checkpoint, else ``last/model``);
* a checkpoint: ``STEM.safetensors``, ``STEM.json`` or ``STEM`` (weights beside their card);
* an ensemble folder (``ensemble.json`` and its ``members/``);
* an exported ``.onnx`` file (run by ONNX Runtime: :meth:`ferkit.inference.Predictor.from_onnx`).

Example:
    >>> loaded = load("default")  # doctest: +SKIP
    >>> loaded.kind, len(loaded.members), loaded.class_names[3]  # doctest: +SKIP
    ('checkpoint', 1, 'Happy')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ferkit.models.checkpoint import load_checkpoint, resolve_checkpoint
from ferkit.models.ensemble import ENSEMBLE_FILE, load_ensemble
from ferkit.utils.errors import FerkitError

#: What a location can hold.
KINDS = ("checkpoint", "ensemble", "onnx")


@dataclass
class LoadedModel:
    """The models at a location.

    Attributes:
        kind: ``checkpoint``, ``ensemble`` or ``onnx``.
        path: the checkpoint stem, the ensemble's ``ensemble.json`` or the ``.onnx`` file.
        members: (eval-mode model, model card) pairs; one for a checkpoint, none for ONNX.
        card: the model card, or the ensemble's card (None for ONNX, whose metadata hold it).
    """

    kind: str
    path: Path
    members: list[tuple[torch.nn.Module, dict]] = field(default_factory=list)
    card: dict | None = None

    @property
    def class_names(self) -> list[str]:
        """The class names of the model (or of every ensemble member)."""
        if self.card is None:
            raise FerkitError(f"{self.path}: an ONNX file's classes are in its metadata")
        return list(self.card["class_names"])

    def single(self, purpose: str) -> tuple[torch.nn.Module, dict]:
        """The one PyTorch model of a checkpoint, for ``purpose`` (e.g. "--init").

        Raises:
            FerkitError: for an ensemble or an ONNX file, naming ``purpose``.
        """
        if self.kind != "checkpoint":
            raise FerkitError(
                f"{self.path}: {purpose} needs one PyTorch model (a run folder, checkpoint or "
                f"bundled name), not an {'ensemble' if self.kind == 'ensemble' else 'ONNX file'}"
            )
        return self.members[0]


def locate(location: str | os.PathLike) -> tuple[str, Path]:
    """What ``location`` holds and where: (kind, path), without loading any weights.

    Raises:
        FerkitError: when it is none of the kinds in the module docstring.

    Example:
        >>> locate("model.onnx")
        ('onnx', PosixPath('model.onnx'))
    """
    path = Path(location)
    if path.suffix == ".onnx":
        return "onnx", path
    if (path / ENSEMBLE_FILE).is_file():
        return "ensemble", path / ENSEMBLE_FILE
    return "checkpoint", resolve_checkpoint(location)


def load(location: str | os.PathLike, device="cpu") -> LoadedModel:
    """Load the PyTorch models at ``location`` onto ``device`` (see the module docstring).

    An ``.onnx`` file is located but not opened here: ONNX Runtime runs it
    (:meth:`ferkit.inference.Predictor.from_onnx`), so ``members`` is empty.

    Raises:
        FerkitError: naming the location when it holds no model, or a damaged one.

    Example:
        >>> model, card = load("default").single("this example")  # doctest: +SKIP
    """
    kind, path = locate(location)
    if kind == "onnx":
        if not path.is_file():
            raise FerkitError(f"{path}: no such ONNX file")
        return LoadedModel(kind, path)
    if kind == "ensemble":
        members, card = load_ensemble(path.parent, device=device)
        return LoadedModel(kind, path, members, card)
    model, card = load_checkpoint(location, device=device)
    return LoadedModel(kind, path, [(model, card)], card)
