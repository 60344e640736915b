"""Test-wide settings: no test downloads anything, and YuNet comes from ../shared when present.

YuNet is the default detector. Machines running the tests have no internet and no seeded
cache, so every test runs offline (``FERKIT_OFFLINE=1``), and ``FERKIT_YUNET_MODEL`` points at
``../shared/models``' copy of the exact file users download (never committed). Without that
copy the default detector falls back to Haar with a warning; YuNet-specific tests skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_YUNET = (
    Path(__file__).resolve().parents[1].parent / "shared" / "models"
    / "face_detection_yunet_2023mar.onnx"
)  # fmt: skip

os.environ["FERKIT_OFFLINE"] = "1"
if SHARED_YUNET.is_file():
    os.environ.setdefault("FERKIT_YUNET_MODEL", str(SHARED_YUNET))


@pytest.fixture
def shared_yunet() -> Path:
    """The shared YuNet file (tests that need it skip without it)."""
    if not SHARED_YUNET.is_file():
        pytest.skip(f"{SHARED_YUNET} not found")
    return SHARED_YUNET


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder holding an untrained, tiny `classic` model (fast; read-only for tests)."""
    import torch

    from ferkit.checkpoint import make_model_card, save_checkpoint
    from ferkit.data import FER2013_CLASS_NAMES
    from ferkit.models import create_model

    folder = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    model = create_model("classic", channels=[4, 8, 8]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, folder / "best", card)
    return folder
