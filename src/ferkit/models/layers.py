"""Building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: batch norm follows), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


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
