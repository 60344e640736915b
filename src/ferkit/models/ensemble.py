"""Ensembles: several trained models whose class probabilities are averaged.

``ferkit ensemble RUN RUN ... --out DIR`` copies each member's best checkpoint into
``DIR/members/`` and writes ``DIR/ensemble.json``; every command that takes ``--model``
(predict, evaluate) then accepts ``DIR`` and uses all members.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from ferkit import __version__
from ferkit.models.checkpoint import load_checkpoint, resolve_checkpoint
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import read_json, write_json

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "ferkit-ensemble"


def create_ensemble(models, out: str | os.PathLike) -> Path:
    """Bundle trained models (run folders or checkpoints) into an ensemble folder.

    Returns:
        The path of ``OUT/ensemble.json``.

    Raises:
        FerkitError: for fewer than two members or members with different classes.

    Example:
        >>> create_ensemble(["runs/a", "runs/b"], "runs/ensemble")  # doctest: +SKIP
        PosixPath('runs/ensemble/ensemble.json')
    """
    models = list(models)
    if len(models) < 2:
        raise FerkitError(f"an ensemble needs at least 2 models, got {len(models)}")
    out = Path(out)
    members_folder = out / "members"
    cards = []
    stems = [resolve_checkpoint(location) for location in models]
    for stem in stems:
        cards.append(read_json(stem.with_suffix(".json")))
    for location, card in zip(models, cards):
        if card["class_names"] != cards[0]["class_names"]:
            raise FerkitError(
                f"{location}: classes {card['class_names']} differ from "
                f"{models[0]}'s {cards[0]['class_names']}"
            )
    members_folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (location, stem, card) in enumerate(zip(models, stems, cards), start=1):
        name = f"member_{index}"
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(stem.with_suffix(suffix), members_folder / f"{name}{suffix}")
        entries.append(
            {
                "file": f"members/{name}",
                "source": str(location),
                "architecture": card["architecture"],
                "val_accuracy": card.get("val_accuracy"),
            }
        )
    return write_json(
        out / ENSEMBLE_FILE,
        {
            "format": ENSEMBLE_FORMAT,
            "members": entries,
            "class_names": cards[0]["class_names"],
            "input_size": cards[0]["input_size"],
            "normalization": cards[0]["normalization"],
            "ferkit_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


def load_ensemble(location: str | os.PathLike, device="cpu"):
    """Load every member of an ensemble folder; returns ([(model, card), ...], ensemble card).

    Example:
        >>> members, card = load_ensemble("runs/ensemble")  # doctest: +SKIP
    """
    location = Path(location)
    card = read_json(location / ENSEMBLE_FILE)
    if card.get("format") != ENSEMBLE_FORMAT:
        raise FerkitError(f"{location / ENSEMBLE_FILE}: not a ferkit ensemble")
    members = [
        load_checkpoint(location / entry["file"], device=device) for entry in card["members"]
    ]
    return members, card
