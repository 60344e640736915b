"""Building blocks shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn as ``rand < keep`` on the CPU (same distribution).

    PyTorch draws a CPU dropout mask with ``bernoulli_``, which generates its random numbers
    one at a time: in a training step of the notebook's CNN it took 11 % of the time
    (docs/benchmarks.md; pytorch/pytorch#138199). ``torch.rand_like`` is vectorised and 3-4x
    faster, and ``rand < keep`` is Bernoulli(keep) all the same (PyTorch's own compiler
    decomposes ``bernoulli`` this way on the CPU). Elsewhere (GPU) and in eval mode it is
    ``nn.Dropout``. No parameters, so checkpoints are unchanged.

    Example:
        >>> layer = Dropout(0.5).train()
        >>> kept = layer(torch.ones(100_000))
        >>> sorted(set(kept.tolist())), round(float((kept > 0).float().mean()), 1)
        ([0.0, 2.0], 0.5)
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
        if not self.training or self.p == 0.0 or inputs.device.type != "cpu" or self.p >= 1.0:
            return super().forward(inputs)
        keep = torch.rand_like(inputs, dtype=torch.float32) >= self.p
        return inputs * keep.to(inputs.dtype) * (1.0 / (1.0 - self.p))


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
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), Dropout(dropout), nn.Linear(features, num_classes)
    )


def init_convolutions(model: nn.Module) -> None:
    """He (Kaiming) initialisation of every convolution, the usual choice before ReLU."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
