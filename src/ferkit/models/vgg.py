"""``vgg``: a VGG-style network shaped for 48x48 grayscale faces.

Stages of 3x3 conv-BN-ReLU layers, each stage ending in 2x2 max-pooling, then global average
pooling, dropout and a linear classifier. Width and depth are arguments, so one family spans
small real-time models and large accurate ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ferkit.models.layers import conv_bn_relu, init_convolutions, pooled_classifier
from ferkit.models.registry import register_model


class VGG(nn.Module):
    """VGG-style CNN: ``len(widths)`` stages of ``depths[i]`` conv layers, each halving the side."""

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        dropout: float = 0.3,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths must have the same length")
        layers, previous = [], in_channels
        for width, depth in zip(widths, depths):
            for _ in range(depth):
                layers.append(conv_bn_relu(previous, width))
                previous = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = pooled_classifier(previous, num_classes, dropout)
        init_convolutions(self)

    def forward(self, images):
        """Logits (N, num_classes) for normalised faces (N, in_channels, H, W)."""
        return self.classifier(self.features(images))


@register_model("vgg")
def vgg(
    num_classes: int = 7,
    in_channels: int = 1,
    widths: Sequence[int] = (64, 128, 256, 512),
    depths: Sequence[int] = (2, 2, 2, 2),
    dropout: float = 0.3,
) -> nn.Module:
    """VGG-style net; the defaults are VGG13-like (4 stages of 2 convs, 64-512 channels).

    Example:
        >>> import torch
        >>> from ferkit.models import create_model
        >>> create_model("vgg", widths=[8, 16], depths=[1, 1])(torch.zeros(2, 1, 48, 48)).shape
        torch.Size([2, 7])
    """
    return VGG(num_classes, in_channels, widths, depths, dropout)
