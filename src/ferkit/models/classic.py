"""``classic``: the classic FER2013 notebook's CNN (674,759 parameters counted the Keras way).

It used to be called ``seed`` (a clash with ``--seed``); that name is still accepted (see
:data:`ferkit.utils.choices.MODEL_ALIASES`), so checkpoints whose card says ``seed`` load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ferkit.models.layers import Dropout
from ferkit.models.registry import register_model


class ClassicCNN(nn.Module):
    """Three conv blocks (conv-conv-pool-dropout-batchnorm) and a two-layer dense head.

    Layer for layer the notebook's Keras model: 3x3 "same" convolutions with ReLU, 2x2
    max-pooling, dropout, then batch norm, in that order; flatten → dense 128 → dropout →
    dense 64 → dropout → batch norm → dense ``num_classes``.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 128, 64),
        block_dropouts: Sequence[float] = (0.25, 0.5, 0.5),
        dense_units: Sequence[int] = (128, 64),
        dense_dropouts: Sequence[float] = (0.5, 0.25),
        input_size: int = 48,
    ):
        super().__init__()
        if len(channels) != len(block_dropouts):
            raise ValueError("channels and block_dropouts must have the same length")
        if len(dense_units) != len(dense_dropouts):
            raise ValueError("dense_units and dense_dropouts must have the same length")
        blocks = []
        previous = in_channels
        for width, dropout in zip(channels, block_dropouts):
            blocks += [
                nn.Conv2d(previous, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                Dropout(dropout),
                nn.BatchNorm2d(width),
            ]
            previous = width
        self.features = nn.Sequential(*blocks)
        side = input_size // (2 ** len(channels))
        head = [nn.Flatten()]
        features = previous * side * side
        for index, (units, dropout) in enumerate(zip(dense_units, dense_dropouts)):
            head += [nn.Linear(features, units), nn.ReLU(inplace=True), Dropout(dropout)]
            features = units
            if index == len(dense_units) - 1:
                head.append(nn.BatchNorm1d(units))
        head.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, images):
        """Logits (N, num_classes) for normalised faces (N, in_channels, 48, 48)."""
        return self.classifier(self.features(images))


@register_model("classic")
def classic(
    num_classes: int = 7,
    in_channels: int = 1,
    channels: Sequence[int] = (64, 128, 64),
    block_dropouts: Sequence[float] = (0.25, 0.5, 0.5),
    dense_units: Sequence[int] = (128, 64),
    dense_dropouts: Sequence[float] = (0.5, 0.25),
    input_size: int = 48,
) -> nn.Module:
    """The notebook's CNN; the defaults are exact, narrower ``channels`` make fast test models.

    Example:
        >>> from ferkit.models import create_model, count_parameters
        >>> count_parameters(create_model("classic"))
        674759
    """
    return ClassicCNN(
        num_classes, in_channels, channels, block_dropouts, dense_units, dense_dropouts, input_size
    )
