"""Building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn


def pooled_classifier(features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global average pooling, dropout and a linear layer: the head of vgg, resnet and mobile."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(features, num_classes)
    )


def init_convolutions(model: nn.Module) -> None:
    """He (Kaiming) initialisation of every convolution, the usual choice before ReLU."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
