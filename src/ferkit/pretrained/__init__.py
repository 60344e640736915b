"""Models that ship inside the ferkit package, addressed by name (``--model default``).

Each bundled model is ``NAME.safetensors`` plus its ``NAME.json`` model card in this folder;
the card records the data, recipe, command, commit and measured accuracy it came from.
``face-check.*`` is not a ``--model``: it is the face check of :mod:`ferkit.faces.face_check`.
"""

from __future__ import annotations

from pathlib import Path

from ferkit.utils.errors import FerkitError

#: Names that ``--model`` resolves to a bundled model, and what each is for.
BUNDLED_MODELS = {
    "default": "the model ferkit recommends: the FER+ model (alias of 'ferplus')",
    "small": "a small, fast model for real-time use on weak CPUs (alias of 'ferplus-small')",
    "ferplus": "8 emotions (FER+ classes, contempt included), trained on ten annotators' votes",
    "ferplus-small": "the small FER+ model (24 MFLOPs a face)",
    "fer2013": "7 emotions (FER2013 classes), trained on FER2013's single labels",
    "fer2013-small": "the small FER2013 model (24 MFLOPs a face)",
}
#: Names that stand for another bundled model: the FER+ models read faces the way ten
#: annotators do and score higher on the same faces (docs/accuracy.md, "Which model is the
#: default"), so ``default`` and ``small`` are the FER+ models.
ALIASES = {"default": "ferplus", "small": "ferplus-small"}

FOLDER = Path(__file__).resolve().parent


def bundled_model(name: str) -> Path:
    """The checkpoint stem of bundled model ``name``.

    Raises:
        FerkitError: for an unknown name, or a name this build does not ship.

    Example:
        >>> bundled_model("nonsense")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ferkit.utils.errors.FerkitError: unknown bundled model 'nonsense'; ...
    """
    if name not in BUNDLED_MODELS:
        raise FerkitError(
            f"unknown bundled model {name!r}; bundled names: {', '.join(BUNDLED_MODELS)}"
        )
    stem = FOLDER / ALIASES.get(name, name)
    if not stem.with_suffix(".safetensors").is_file():
        shipped = available_bundled_models()
        raise FerkitError(
            f"this ferkit build ships no {name!r} model yet (shipped: "
            f"{', '.join(shipped) or 'none'}); pass --model RUN_FOLDER"
        )
    return stem


def available_bundled_models() -> list[str]:
    """Names of the bundled models this installation actually carries.

    Example:
        >>> set(available_bundled_models()) <= set(BUNDLED_MODELS)
        True
    """
    return [
        name
        for name in BUNDLED_MODELS
        if (FOLDER / f"{ALIASES.get(name, name)}.safetensors").is_file()
    ]


def pretrained_for(class_names) -> str:
    """The bundled model to start from for data with ``class_names`` (``--init pretrained``).

    The bundled model trained on the same label set when there is one (``fer2013`` for
    FER2013's 7 classes, ``ferplus`` for FER+'s 8), so fine-tuning keeps its classifier;
    otherwise ``default`` (its classifier is then rebuilt for the new classes).

    Example:
        >>> pretrained_for(["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"])
        'fer2013'
        >>> pretrained_for(["cat", "dog"])
        'default'
    """
    import json

    wanted = [name.lower() for name in class_names]
    for name in available_bundled_models():
        if name in ALIASES:
            continue
        card = json.loads((FOLDER / f"{name}.json").read_text())
        if [label.lower() for label in card["class_names"]] == wanted:
            return name
    return "default"
