"""``mobile``: a small depthwise-separable CNN for real-time use on weak CPUs.

MobileNet-style blocks (3x3 depthwise conv + 1x1 pointwise conv, each with batch norm and ReLU)
keep the cost per face in the tens of MFLOPs. A stride-2 first stage is avoided: at 48x48 every
pixel of the eyes and mouth matters.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ferkit.models.layers import conv_bn_relu, init_convolutions, pooled_classifier
from ferkit.models.registry import register_model


def separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (per channel) then pointwise 1x1, each followed by BN and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNet(nn.Module):
    """Stem conv, stages of separable blocks (the first block of each later stage strides 2)."""

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 2, 2, 1),
        stem_width: int = 16,
        dropout: float = 0.2,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths must have the same length")
        layers = list(conv_bn_relu(in_channels, stem_width))
        previous = stem_width
        for index, (width, depth) in enumerate(zip(widths, depths)):
            for block in range(depth):
                stride = 2 if block == 0 and index > 0 else 1
                layers.append(separable(previous, width, stride))
                previous = width
        self.features = nn.Sequential(*layers)
        self.classifier = pooled_classifier(previous, num_classes, dropout)
        init_convolutions(self)

    def forward(self, images):
        """Logits (N, num_classes) for normalised faces (N, in_channels, H, W)."""
        return self.classifier(self.features(images))


@register_model("mobile")
def mobile(
    num_classes: int = 7,
    in_channels: int = 1,
    widths: Sequence[int] = (32, 64, 128, 256),
    depths: Sequence[int] = (1, 2, 2, 1),
    stem_width: int = 16,
    dropout: float = 0.2,
) -> nn.Module:
    """Depthwise-separable CNN, about 22 MFLOPs per 48x48 face with the defaults.

    Example:
        >>> from ferkit.models import create_model, model_cost
        >>> model_cost(create_model("mobile"))["mflops"] < 25
        True
    """
    return MobileNet(num_classes, in_channels, widths, depths, stem_width, dropout)
