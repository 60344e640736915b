"""The model registry: ``register_model``, ``list_models`` and ``create_model``.

Kept apart from ``ferkit.models.__init__`` so the architecture modules can import the
decorator without importing the package that imports them (no import cycle).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from torch import nn

from ferkit.utils.choices import MODEL_ALIASES
from ferkit.utils.errors import FerkitError

_logger = logging.getLogger(__name__)
_noted_aliases: set[str] = set()

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Register a model-building function under ``name``.

    Example:
        >>> from torch import nn
        >>> @register_model("tiny_linear_example")
        ... def tiny(num_classes=7, in_channels=1):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 48 * 48, num_classes))
        >>> "tiny_linear_example" in list_models()
        True
    """

    def decorator(function):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = function
        return function

    return decorator


def list_models() -> list[str]:
    """Names of the registered architectures, sorted.

    Example:
        >>> "classic" in list_models()
        True
    """
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; ``model.ferkit_arguments`` holds its full arguments.

    An old name (``seed``, now ``classic``) still works: it builds the same model, logs a
    deprecation note once per process, and ``model.ferkit_name`` holds the current name.

    Raises:
        FerkitError: for an unknown name or argument, naming the valid choices.

    Example:
        >>> model = create_model("classic", num_classes=7)
        >>> model.ferkit_arguments["num_classes"]
        7
    """
    if name in MODEL_ALIASES:
        if name not in _noted_aliases:
            _noted_aliases.add(name)
            _logger.warning(
                "architecture %r is deprecated; it is now called %r", name, MODEL_ALIASES[name]
            )
        name = MODEL_ALIASES[name]
    if name not in _REGISTRY:
        raise FerkitError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    builder = _REGISTRY[name]
    signature = inspect.signature(builder)
    unknown = [key for key in kwargs if key not in signature.parameters]
    if unknown:
        raise FerkitError(
            f"model {name!r} has no argument(s) {', '.join(unknown)}; "
            f"its arguments are: {', '.join(signature.parameters)}"
        )
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    # JSON-friendly copy (tuples become lists in the card; builders accept either).
    arguments = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in bound.arguments.items()
    }
    model = builder(**bound.arguments)
    model.ferkit_name = name
    model.ferkit_arguments = arguments
    return model
