"""Tests for ferkit.evaluation.modelcard, `ferkit info`, `/v1/model` and the bundled cards'
fields."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ferkit.cli import main
from ferkit.data import FER2013_CLASS_NAMES
from ferkit.evaluation.modelcard import format_model_card, load_model_card
from ferkit.inference.calibration import calibration_of
from ferkit.models import create_model
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.pretrained import ALIASES, FOLDER, available_bundled_models
from ferkit.utils.io import read_json


@pytest.mark.parametrize(
    "name", [name for name in available_bundled_models() if name not in ALIASES]
)
def test_bundled_cards_say_what_a_user_must_know(name):
    card = read_json(FOLDER / f"{name}.json")
    assert len(card["intended_use"]) >= 2
    unfit = " ".join(card["out_of_scope_uses"]).lower()
    for use in ("inner state", "hiring", "surveillance"):
        assert use in unfit
    limits = " ".join(card["training_data"]["known_limitations"]).lower()
    for limit in ("web images", "posed and spontaneous", "no demographic annotations"):
        assert limit in limits
    assert set(card["evaluation"]["per_class_recall"]) == set(card["class_names"])
    calibration = card["calibration"]
    assert "PublicTest" in calibration["fitted_on"]
    assert calibration_of(card) != 1.0  # a temperature or a vector/Dirichlet map
    for key in ("ece", "nll", "brier"):
        assert calibration[f"{key}_before"] >= 0 and calibration[f"{key}_after"] >= 0
    assert calibration["ece_after"] <= 0.02  # issue 16's target, on the validation split
    assert [row["min_confidence"] for row in card["abstention"]["thresholds"]] == [
        0.4, 0.5, 0.6, 0.7,
    ]  # fmt: skip


def test_ferkit_info_prints_the_bundled_card(capsys):
    assert main(["info", "default"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# Model card: {ALIASES['default']}")  # the model `default` names
    for section in ("## Intended use", "## Not fit for", "## Training data", "## Performance",
                    "## Calibration", "| Disgust |", "Temperature scaling"):  # fmt: skip
        assert section in text
    assert "(ferkit's statement for every model)" not in text  # the card states its own
    assert main(["info", "small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bundled_name"] == ALIASES["small"]


def test_ferkit_info_on_a_run_folder_and_a_bad_path(tmp_path, capsys):
    model = create_model("seed", channels=[4, 4, 4]).eval()
    save_checkpoint(model, tmp_path / "best", make_model_card(model, FER2013_CLASS_NAMES, {
        "mean": 0.5, "std": 0.25}))  # fmt: skip
    assert main(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    # A card without the fields gets ferkit's statements, marked as such, and says what is missing.
    assert "## Not fit for (ferkit's statement for every model)" in text
    assert "Not calibrated" in text and "Not measured in this card." in text
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "not a model" in capsys.readouterr().err
    assert load_model_card(tmp_path)["architecture"] == "classic"  # create_model("seed")
    assert format_model_card({"architecture": "x"}).count("## ") >= 5
    ensemble = {"format": "ferkit-ensemble", "members": [{"architecture": "vgg"},
                {"architecture": "seed"}], "calibration": {"temperature": 0.95, "fitted_on": "x",
                **{f"{key}_{when}": 0.1 for key in ("ece", "nll", "brier")
                   for when in ("before", "after")}}}  # fmt: skip
    text = format_model_card(ensemble, "ens")
    assert "an ensemble of 2 models (vgg, seed)" in text and "T = 0.950" in text


def test_serve_model_card_and_min_confidence(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from ferkit.serving import ServeConfig, create_app

    torch.manual_seed(0)
    model = create_model("seed", channels=[4, 8, 8]).eval()
    save_checkpoint(model, tmp_path / "best", make_model_card(model, FER2013_CLASS_NAMES, {
        "mean": 0.5, "std": 0.25}))  # fmt: skip
    client = TestClient(create_app(ServeConfig(model=str(tmp_path), detector="none")))
    info = client.get("/v1/model").json()
    assert info["card_markdown"].startswith("# Model card:") and "## Not fit for" in info[
        "card_markdown"]  # fmt: skip
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 48), 120, np.uint8)).save(buffer, format="PNG")
    image = buffer.getvalue()
    plain = client.post("/v1/predict", content=image).json()["faces"][0]
    assert plain["uncertain"] is False and plain["emotion"] == plain["best_guess"]
    cautious = client.post("/v1/predict?min_confidence=0.99", content=image).json()["faces"][0]
    assert cautious["emotion"] == "uncertain" and cautious["uncertain"] is True
    assert cautious["probabilities"] == plain["probabilities"]
    for bad in ("1.5", "abc"):
        response = client.post(f"/v1/predict?min_confidence={bad}", content=image)
        assert response.status_code == 400, response.text
