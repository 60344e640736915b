"""Models that ship inside the ferkit package, addressed by name (``--model default``).

Each bundled model is ``NAME.safetensors`` plus its ``NAME.json`` model card in this folder;
the card records the data, recipe, command, commit and measured accuracy it came from.
"""

from __future__ import annotations

from pathlib import Path

from ferkit.errors import FerkitError

#: Names that ``--model`` resolves to a bundled model, and what each is for.
BUNDLED_MODELS = {
    "default": "the most accurate single model shipped with ferkit",
    "small": "a small, fast model for real-time use on weak CPUs",
}

FOLDER = Path(__file__).resolve().parent


def bundled_model(name: str) -> Path:
    """The checkpoint stem of bundled model ``name``.

    Raises:
        FerkitError: for an unknown name, or a name this build does not ship.

    Example:
        >>> bundled_model("nonsense")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ferkit.errors.FerkitError: unknown bundled model 'nonsense'; ...
    """
    if name not in BUNDLED_MODELS:
        raise FerkitError(
            f"unknown bundled model {name!r}; bundled names: {', '.join(BUNDLED_MODELS)}"
        )
    stem = FOLDER / name
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
    return [name for name in BUNDLED_MODELS if (FOLDER / f"{name}.safetensors").is_file()]
