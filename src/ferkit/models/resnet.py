"""``resnet``: a residual network (basic blocks) shaped for 48x48 grayscale faces.

A 3x3 stem keeps the full 48x48 resolution (ImageNet's 7x7 stride-2 stem and max-pool would
throw away most of a small face), then stages of basic residual blocks; every stage after the
first halves the side. Width and depth are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ferkit.models.layers import conv_bn_relu, init_convolutions, pooled_classifier
from ferkit.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.activation = nn.ReLU(inplace=True)
        # Zero-init the last BN so each block starts as identity (stabler early training).
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, inputs):
        """Residual sum, then ReLU."""
        return self.activation(self.body(inputs) + self.shortcut(inputs))


class ResNet(nn.Module):
    """Stem, ``len(widths)`` stages of ``depths[i]`` basic blocks, global pooling, linear."""

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        stem_width: int = 32,
        dropout: float = 0.2,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths must have the same length")
        self.stem = conv_bn_relu(in_channels, stem_width)
        stages, previous = [], stem_width
        for index, (width, depth) in enumerate(zip(widths, depths)):
            for block in range(depth):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(previous, width, stride))
                previous = width
        self.stages = nn.Sequential(*stages)
        self.classifier = pooled_classifier(previous, num_classes, dropout)
        init_convolutions(self)

    def forward(self, images):
        """Logits (N, num_classes) for normalised faces (N, in_channels, H, W)."""
        return self.classifier(self.stages(self.stem(images)))


@register_model("resnet")
def resnet(
    num_classes: int = 7,
    in_channels: int = 1,
    widths: Sequence[int] = (64, 128, 256, 512),
    depths: Sequence[int] = (2, 2, 2, 2),
    stem_width: int = 32,
    dropout: float = 0.2,
) -> nn.Module:
    """ResNet-18-like net for 48x48 faces (stages at 48, 24, 12, 6 px by default).

    Example:
        >>> import torch
        >>> from ferkit.models import create_model
        >>> model = create_model("resnet", widths=[8, 16], depths=[1, 1], stem_width=8)
        >>> model(torch.zeros(2, 1, 48, 48)).shape
        torch.Size([2, 7])
    """
    return ResNet(num_classes, in_channels, widths, depths, stem_width, dropout)
