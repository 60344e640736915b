"""Tests for ferkit.models.runtime: devices, precision, the shared forward path and TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.data.preprocessing import normalize_batch
from ferkit.models import create_model
from ferkit.models.runtime import batched_logits, resolve_device, resolve_precision, tta_views
from ferkit.utils.errors import FerkitError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("classic", channels=[4, 8, 8]).eval()


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)


def test_batched_logits_equal_one_big_forward_pass(model, faces):
    expected = model(normalize_batch(faces)).detach()
    for batch_size in (1, 2, 5, 64):
        torch.testing.assert_close(batched_logits(model, faces, batch_size=batch_size), expected)


def test_flip_tta_averages_face_and_mirror(model, faces):
    inputs = normalize_batch(faces)
    expected = (model(inputs) + model(torch.flip(inputs, dims=[3]))).detach() / 2
    torch.testing.assert_close(batched_logits(model, faces, tta="flip"), expected)
    # a mirror-symmetric face gives the same logits with and without flip TTA
    symmetric = np.concatenate([faces[:, :, :24], faces[:, :, :24][:, :, ::-1]], axis=2)
    torch.testing.assert_close(
        batched_logits(model, symmetric, tta="flip"), batched_logits(model, symmetric)
    )


def test_shift_tta_views_are_two_pixel_shifts():
    inputs = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48)
    views = tta_views(inputs, "shift")
    assert len(views) == 10 and all(view.shape == inputs.shape for view in views)
    # view 2 is the original shifted 2 px down and right (top-left crop of the padded face)
    torch.testing.assert_close(views[2][..., 2:, 2:], inputs[..., :-2, :-2])
    assert len({tuple(view.flatten()[:50].tolist()) for view in views}) == 10


def test_unknown_tta_and_device_are_clear_errors(model, faces):
    with pytest.raises(FerkitError, match="unknown tta 'rotate'.*none, flip, shift"):
        batched_logits(model, faces, tta="rotate")
    with pytest.raises(FerkitError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)
