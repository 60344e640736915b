"""Test-wide settings: no test downloads anything, and YuNet comes from ../shared when present.

YuNet is the default detector. Machines running the tests have no internet and no seeded
cache, so every test runs offline (``FERKIT_OFFLINE=1``), and ``FERKIT_YUNET_MODEL`` points at
``../shared/models``' copy of the exact file users download (never committed). Without that
copy the default detector falls back to Haar with a warning; YuNet-specific tests skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED_YUNET = (
    Path(__file__).resolve().parents[1].parent / "shared" / "models"
    / "face_detection_yunet_2023mar.onnx"
)  # fmt: skip

os.environ["FERKIT_OFFLINE"] = "1"
# What tests build into the cache (ONNX and INT8 variants, dataset caches) goes to a folder of
# their own, removed at the end, never into the user's ~/.cache/ferkit.
if not os.environ.get("FERKIT_CACHE_DIR"):
    os.environ["FERKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="ferkit-tests-cache-")
    atexit.register(shutil.rmtree, os.environ["FERKIT_CACHE_DIR"], ignore_errors=True)
if SHARED_YUNET.is_file():
    # $FERKIT_YUNET_MODEL (lookup step 2) is not hash-checked, and many tests give their
    # subprocesses an empty cache of their own: so the file is checked here, once, with the
    # checksum code users' files go through; tests/test_detector_files.py takes the cache path.
    from ferkit.faces.detector_files import YUNET_SHA256, file_sha256

    if file_sha256(SHARED_YUNET) != YUNET_SHA256:
        raise pytest.UsageError(f"{SHARED_YUNET}: not the pinned YuNet file (SHA-256 differs)")
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

    from ferkit.data import FER2013_CLASS_NAMES
    from ferkit.models import create_model
    from ferkit.models.checkpoint import make_model_card, save_checkpoint

    folder = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    model = create_model("classic", channels=[4, 8, 8]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, folder / "best", card)
    return folder
