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
