"""Batched training augmentation on tensors: one random affine warp per face.

Flip, shift, zoom and rotation are folded into a single affine matrix per face and applied to
the whole batch with one ``grid_sample`` call, so there is no per-sample Python loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as functional


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    flip: bool = True,
    max_shift: float = 0.1,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
) -> torch.Tensor:
    """Randomly flip, shift, zoom and rotate a batch (N, C, H, W) of float faces.

    Args:
        images: float tensor (N, C, H, W).
        generator: the random generator (seeded per epoch, so runs repeat exactly).
        flip: mirror half of the faces left-right.
        max_shift: largest shift as a fraction of the side.
        max_rotation: largest rotation in degrees.
        max_scale: largest zoom factor change (0.1 → 0.9x to 1.1x).

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> random_affine(torch.zeros(4, 1, 48, 48), generator).shape
        torch.Size([4, 1, 48, 48])
    """
    count = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(count, generator=generator) * (high - low) + low

    angle = uniform(-max_rotation, max_rotation) * (math.pi / 180.0)
    scale = uniform(1.0 - max_scale, 1.0 + max_scale)
    # grid coordinates span [-1, 1], so a shift of f of the side is 2f in grid units.
    shift_x = uniform(-max_shift, max_shift) * 2.0
    shift_y = uniform(-max_shift, max_shift) * 2.0
    mirror = torch.ones(count)
    if flip:
        mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    cosine, sine = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cosine * mirror, -sine, shift_x], dim=1),
            torch.stack([sine * mirror, cosine, shift_y], dim=1),
        ],
        dim=1,
    ).to(images.dtype)
    grid = functional.affine_grid(theta, list(images.shape), align_corners=False)
    # "border" repeats edge pixels instead of adding black corners a face never has.
    return functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def random_erasing(
    images: torch.Tensor,
    generator: torch.Generator,
    probability: float = 0.5,
    area: tuple[float, float] = (0.02, 0.25),
    aspect: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Blank a random rectangle (to the mean, 0 after normalisation) in some faces of a batch.

    One rectangle per chosen face, drawn for the whole batch at once (no per-face loop).

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> erased = random_erasing(torch.ones(8, 1, 48, 48), generator, probability=1.0)
        >>> bool((erased == 0).any()), erased.shape
        (True, torch.Size([8, 1, 48, 48]))
    """
    count, _, height, width = images.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(count, generator=generator) * (high - low) + low

    chosen = torch.rand(count, generator=generator) < probability
    target_area = uniform(*area) * height * width
    log_aspect = uniform(math.log(aspect[0]), math.log(aspect[1]))
    box_height = torch.sqrt(target_area * torch.exp(log_aspect)).clamp(1, height).floor()
    box_width = torch.sqrt(target_area / torch.exp(log_aspect)).clamp(1, width).floor()
    top = (torch.rand(count, generator=generator) * (height - box_height + 1)).floor()
    left = (torch.rand(count, generator=generator) * (width - box_width + 1)).floor()
    rows = torch.arange(height).view(1, height, 1)
    columns = torch.arange(width).view(1, 1, width)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + box_height).view(-1, 1, 1))
        & (columns >= left.view(-1, 1, 1))
        & (columns < (left + box_width).view(-1, 1, 1))
        & chosen.view(-1, 1, 1)
    )
    return images.masked_fill(inside.unsqueeze(1).to(images.device), 0.0)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix a batch with a shuffled copy of itself; returns (images, soft targets).

    ``targets`` are class probabilities (N, classes). With both alphas > 0, each batch uses one
    of the two at random. The mixing weight is drawn from Beta(alpha, alpha).

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> targets = torch.eye(3)[[0, 1, 2, 0]]
        >>> mixed, soft = mix_batch(torch.rand(4, 1, 8, 8), targets, generator, mixup_alpha=0.4)
        >>> mixed.shape, torch.allclose(soft.sum(dim=1), torch.ones(4))
        (torch.Size([4, 1, 8, 8]), True)
    """
    import numpy as np

    methods = [name for name, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha]
    if not methods:
        return images, targets
    # NumPy draws the Beta sample; its seed comes from the epoch generator, so runs repeat.
    random = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    method = methods[int(random.integers(len(methods)))]
    alpha = mixup_alpha if method == "mixup" else cutmix_alpha
    weight = float(random.beta(alpha, alpha))
    partner = torch.randperm(images.shape[0], generator=generator).to(images.device)
    if method == "mixup":
        mixed = images * weight + images[partner] * (1.0 - weight)
    else:  # paste a box of the partner face covering (1 - weight) of the area
        height, width = images.shape[-2:]
        box_height = int(round(height * math.sqrt(1.0 - weight)))
        box_width = int(round(width * math.sqrt(1.0 - weight)))
        top = int(random.integers(0, height - box_height + 1))
        left = int(random.integers(0, width - box_width + 1))
        mixed = images.clone()
        mixed[..., top : top + box_height, left : left + box_width] = images[partner][
            ..., top : top + box_height, left : left + box_width
        ]
        weight = 1.0 - (box_height * box_width) / (height * width)
    return mixed, targets * weight + targets[partner] * (1.0 - weight)
