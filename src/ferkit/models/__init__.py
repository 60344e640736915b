"""Models: ``create_model(name, **kwargs)``, ``list_models()`` and what a model costs.

Adding an architecture is one decorated function (:mod:`ferkit.models.registry`) in a module
imported here::

    @register_model("my_net")
    def my_net(num_classes: int = 7, in_channels: int = 1, width: int = 32) -> nn.Module:
        ...

Every model takes ``num_classes`` and ``in_channels`` and returns logits (softmax is applied at
inference). The keyword arguments a model was built with are recorded in its model card, so
checkpoints rebuild it without the training config.
"""

from __future__ import annotations

from torch import nn

from ferkit.models.registry import create_model, list_models, register_model


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
from ferkit.models import classic, mobile, resnet, vgg  # noqa: E402, F401  (after the registry)

__all__ = ["count_parameters", "create_model", "list_models", "model_cost", "register_model"]
