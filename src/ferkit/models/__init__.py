"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Adding an architecture is one decorated function in a module imported here::

    @register_model("my_net")
    def my_net(num_classes: int = 7, in_channels: int = 1, width: int = 32) -> nn.Module:
        ...

Every model takes ``num_classes`` and ``in_channels`` and returns logits (softmax is applied at
inference). The keyword arguments a model was built with are recorded in its model card, so
checkpoints rebuild it without the training config.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from torch import nn

from ferkit.choices import MODEL_ALIASES
from ferkit.errors import FerkitError

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


def count_parameters(model: nn.Module, include_batchnorm_statistics: bool = True) -> int:
    """Count parameters; with batch-norm running statistics, as Keras reports them.

    Example:
        >>> count_parameters(create_model("classic"))
        674759
    """
    total = sum(parameter.numel() for parameter in model.parameters())
    if include_batchnorm_statistics:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                total += module.running_mean.numel() + module.running_var.numel()
    return total


def model_cost(model: nn.Module, input_size: int = 48, in_channels: int = 1) -> dict:
    """Parameters and forward MFLOPs per face (multiply and add counted separately).

    Example:
        >>> cost = model_cost(create_model("classic"))
        >>> cost["parameters"], round(cost["mflops"])
        (674759, 460)
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size))
    model.train(was_training)
    return {"parameters": count_parameters(model), "mflops": counter.get_total_flops() / 1e6}


# Importing the architecture modules registers them.
from ferkit.models import classic, mobile, resnet, vgg  # noqa: E402, F401

__all__ = ["count_parameters", "create_model", "list_models", "model_cost", "register_model"]
