"""Tests for ferkit.models.checkpoint: safetensors weights + JSON model cards, optimizer state."""

from __future__ import annotations

import json

import pytest
import torch

from ferkit.models import create_model
from ferkit.models.checkpoint import (
    load_checkpoint,
    load_optimizer,
    make_model_card,
    resolve_checkpoint,
    save_checkpoint,
    save_optimizer,
)
from ferkit.utils.errors import FerkitError

NORMALIZATION = {"mean": 0.5, "std": 0.25}


def small_model():
    torch.manual_seed(0)
    return create_model("classic", num_classes=3, channels=[4, 8, 4])


def test_checkpoint_round_trip_rebuilds_the_model_from_its_card(tmp_path):
    model = small_model().eval()
    card = make_model_card(model, ["a", "b", "c"], NORMALIZATION, metrics={"x": 1})
    save_checkpoint(model, tmp_path / "best", card)
    assert json.loads((tmp_path / "best.json").read_text())["class_names"] == ["a", "b", "c"]
    for location in (tmp_path, tmp_path / "best.safetensors", tmp_path / "best.json"):
        loaded, loaded_card = load_checkpoint(location)
        assert loaded_card["arguments"] == model.ferkit_arguments
        inputs = torch.randn(2, 1, 48, 48)
        torch.testing.assert_close(loaded(inputs), model(inputs))
        assert not loaded.training


def test_channels_last_weights_are_saved(tmp_path):
    model = small_model().to(memory_format=torch.channels_last)
    save_checkpoint(
        model, tmp_path / "last" / "model", make_model_card(model, "abc", NORMALIZATION)
    )
    # no best: a run folder falls back to its last/ bundle
    assert resolve_checkpoint(tmp_path) == tmp_path / "last" / "model"


def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FerkitError, match="no best.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "damaged.safetensors").write_bytes(b"\x00garbage")
    (tmp_path / "damaged.json").write_text("{not json")
    with pytest.raises(FerkitError, match="not a readable model card"):
        load_checkpoint(tmp_path / "damaged.safetensors")
    with pytest.raises(FerkitError, match="not a model"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    model = small_model()
    save_checkpoint(model, tmp_path / "best", {"format": "something-else"})
    with pytest.raises(FerkitError, match="not a ferkit model card"):
        load_checkpoint(tmp_path)


def test_damaged_weights_and_incomplete_cards_are_reported(tmp_path):
    model = small_model()
    card = make_model_card(model, "abc", NORMALIZATION)
    save_checkpoint(model, tmp_path / "best", card)
    (tmp_path / "best.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(FerkitError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path)
    del card["architecture"]
    (tmp_path / "best.json").write_text(json.dumps(card))
    with pytest.raises(FerkitError, match="lacks architecture"):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_fit_the_card_are_reported(tmp_path):
    model = small_model()
    card = make_model_card(model, "abc", NORMALIZATION)
    save_checkpoint(model, tmp_path / "best", card)
    card["arguments"]["channels"] = [8, 8, 8]
    (tmp_path / "best.json").write_text(json.dumps(card))
    with pytest.raises(FerkitError, match="do not fit the card"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_state_round_trip(tmp_path, name):
    model = small_model()
    if name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.randn(4, 1, 48, 48)).sum().backward()
    optimizer.step()
    save_optimizer(optimizer, tmp_path / "optimizer")
    fresh = type(optimizer)(small_model().parameters(), **optimizer.defaults)
    load_optimizer(fresh, tmp_path / "optimizer")
    original, restored = optimizer.state_dict(), fresh.state_dict()
    assert original["param_groups"] == restored["param_groups"]
    for index, state in original["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(restored["state"][index][key], value)
