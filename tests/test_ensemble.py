"""Tests for ferkit.models.ensemble and ensemble prediction."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.inference import Predictor
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.models.ensemble import create_ensemble
from ferkit.utils.errors import FerkitError


def make_run(folder, seed, class_names=FER2013_CLASS_NAMES, tta="none"):
    torch.manual_seed(seed)
    model = create_model("classic", num_classes=len(class_names), channels=[4, 8, 4]).eval()
    card = make_model_card(model, class_names, {"mean": 0.5, "std": 0.25}, tta=tta)
    save_checkpoint(model, folder / "best", card)
    return folder


def test_ensemble_averages_member_probabilities(tmp_path):
    runs = [
        make_run(tmp_path / f"run{seed}", seed, tta=tta) for seed, tta in ((1, "none"), (2, "flip"))
    ]
    create_ensemble(runs, tmp_path / "ensemble")
    card = json.loads((tmp_path / "ensemble" / "ensemble.json").read_text())
    assert [member["file"] for member in card["members"]] == [
        "members/member_1",
        "members/member_2",
    ]
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    ensemble = Predictor.from_run(tmp_path / "ensemble", device="cpu")
    members = [Predictor.from_run(run, device="cpu") for run in runs]
    expected = (members[0].predict_proba(faces) + members[1].predict_proba(faces)) / 2
    np.testing.assert_allclose(ensemble.predict_proba(faces), expected, rtol=1e-5, atol=1e-6)
    # the ensemble folder is self-contained: the members' run folders can go away
    for run in runs:
        for path in run.iterdir():
            path.unlink()
    again = Predictor.from_run(tmp_path / "ensemble", device="cpu").predict_proba(faces)
    np.testing.assert_allclose(again, expected, rtol=1e-5, atol=1e-6)


def test_ensemble_refuses_mismatched_or_single_members(tmp_path):
    first = make_run(tmp_path / "a", 1)
    other = make_run(tmp_path / "b", 2, class_names=("x", "y"))
    with pytest.raises(FerkitError, match="at least 2"):
        create_ensemble([first], tmp_path / "e")
    with pytest.raises(FerkitError, match="differ"):
        create_ensemble([first, other], tmp_path / "e")


def test_ensemble_cli(tmp_path):
    runs = [make_run(tmp_path / f"run{seed}", seed) for seed in (1, 2, 3)]
    result = subprocess.run(
        [sys.executable, "-m", "ferkit", "ensemble", *map(str, runs), "--out", str(tmp_path / "e")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ensemble of 3 models" in result.stdout
    assert len(json.loads((tmp_path / "e" / "ensemble.json").read_text())["members"]) == 3
