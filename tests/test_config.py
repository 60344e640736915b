"""The training config and its generated CLI options: every field settable, recipes, aliases."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from ferkit.cli import build_parser, main
from ferkit.training.arguments import (
    add_config_options,
    config_from_arguments,
    config_to_arguments,
    flag_of,
)
from ferkit.training.config import TrainConfig, read_config_file
from ferkit.utils.choices import MODEL_ALIASES
from ferkit.utils.errors import FerkitError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "ferkit" / "pretrained"
#: Fields that describe where and how a run goes, not what it learns.
NOT_RECIPE = {"data", "out", "resume", "overwrite", "progress", "device", "precision"}


def subcommand(name: str) -> argparse.ArgumentParser:
    actions = build_parser()._actions
    return next(action for action in actions if action.dest == "command").choices[name]


def parse(arguments, cross_validation: bool = False) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_options(parser, cross_validation=cross_validation)
    return config_from_arguments(parser.parse_args([str(item) for item in arguments]))


def different_value(item: dataclasses.Field, value):
    """A valid value of field ``item`` other than ``value``."""
    if item.metadata["choices"]:
        return next(choice for choice in item.metadata["choices"] if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return value + 0.125
    if isinstance(value, list):
        return [7, 2, 5]
    if isinstance(value, dict):
        return {"channels": [4, 8, 8], "norm": "batch", "dropout": 0.25}
    return f"some/{item.name}"


@pytest.mark.parametrize("command", ["train", "cv"])
def test_every_config_field_has_a_documented_cli_option(command):
    options = {}
    for action in subcommand(command)._actions:
        for name in action.option_strings or [action.dest]:
            options[name] = action
    for item in dataclasses.fields(TrainConfig):
        if command == "cv" and not item.metadata["cv"]:
            assert flag_of(item) not in options, f"cv takes no {flag_of(item)}"
            continue
        assert flag_of(item) in options, f"{item.name} has no option in ferkit {command}"
        action = options[flag_of(item)]
        assert action.dest == item.name
        assert len(action.help) > 10, f"{flag_of(item)} is undocumented"
        if item.metadata["choices"]:
            assert tuple(action.choices) == tuple(item.metadata["choices"])


@pytest.mark.parametrize("cross_validation", [False, True])
def test_every_field_round_trips_through_the_command_line(cross_validation):
    defaults = TrainConfig()
    changed = {
        item.name: different_value(item, getattr(defaults, item.name))
        for item in dataclasses.fields(TrainConfig)
        if item.metadata["cv"] or not cross_validation
    }
    config = TrainConfig(**changed)
    arguments = config_to_arguments(config, cross_validation=cross_validation)
    assert parse(arguments, cross_validation) == config
    for name, value in changed.items():
        assert getattr(defaults, name) != value, name  # every field really was changed


def test_options_not_given_keep_the_defaults():
    assert parse(["faces.csv", "--out", "run"]) == TrainConfig(data="faces.csv", out="run")
    config = parse(["faces.csv", "--out", "run", "--no-progress", "--max-rotation", "5"])
    assert config.progress is False and config.max_rotation == 5.0


def test_command_line_options_override_the_recipe_file(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "description": "documentation only",
                "lr": 0.05,
                "epochs": [8],
                "augment": False,
                "model_args": {"channels": [4, 8, 8], "dropout": 0.3},
            }
        )
    )
    config = parse(
        ["faces.csv", "--out", "run", "--config", recipe, "--lr", "0.5", "--augment",
         "--model-arg", "dropout=0.1"]
    )  # fmt: skip
    assert config.lr == 0.5 and config.augment is True  # the command line wins
    assert config.epochs == [8]  # the recipe's, over the default
    assert config.model_args == {"channels": [4, 8, 8], "dropout": 0.1}  # merged key by key
    assert config.batch_size == TrainConfig().batch_size


def test_a_recipe_with_an_unknown_field_is_a_clean_cli_error(tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"learning_rate": 0.1}')
    assert (
        main(["train", "faces.csv", "--out", str(tmp_path / "run"), "--config", str(recipe)]) == 2
    )
    error = capsys.readouterr().err
    assert error.startswith(f"error: {recipe}: unknown config field(s): learning_rate")
    recipe.write_text("[1, 2]")
    with pytest.raises(FerkitError, match="JSON object"):
        read_config_file(recipe)
    with pytest.raises(FerkitError, match="no such config file"):
        read_config_file(tmp_path / "missing.json")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "recipe_name, card",
    [
        ("fer2013-default", "fer2013"),
        ("fer2013-small", "fer2013-small"),
        ("ferplus", "ferplus"),
        ("ferplus-small", "ferplus-small"),
    ],
)
def test_the_recipes_reproduce_the_bundled_models_configs(recipe_name, card):
    """The Makefile trains the bundled models from recipes/; their cards say what trained them."""
    recipe = read_config_file(RECIPES / f"{recipe_name}.json")
    trained = json.loads((PRETRAINED / f"{card}.json").read_text())["training"]["config"]
    if trained.get("teacher") == "default":  # the FER2013 model was `default` then
        trained = dict(trained, teacher="fer2013")
    # The FER+ models started from the FER2013 models, named `pretrained`/`small` then.
    renamed = {"pretrained": "fer2013", "small": "fer2013-small"}
    if card.startswith("ferplus") and trained.get("init") in renamed:
        trained = dict(trained, init=renamed[trained["init"]])
    config = parse(["data.csv", "--out", "run", "--config", RECIPES / f"{recipe_name}.json"])
    defaults = TrainConfig()
    # --init takes the architecture and its arguments from the model it starts from.
    taken_from_init = {"arch", "model_args"} if recipe.get("init") else set()
    for key, value in config.to_dict().items():
        if key not in NOT_RECIPE | taken_from_init:  # fields added later had the default
            assert value == trained.get(key, getattr(defaults, key)), key
    assert set(recipe) <= set(trained)


def test_makefile_and_sweep_use_the_recipe_files():
    root = RECIPES.parent
    makefile = (root / "Makefile").read_text()
    assert "--config recipes/fer2013-default.json" in makefile
    assert "--config recipes/fer2013-small.json" in makefile
    assert "--config recipes/ferplus.json" in makefile
    assert "--config recipes/ferplus-small.json" in makefile
    jobs = json.loads((root / "benchmarks" / "sweeps" / "fer2013_ingredients.json").read_text())
    for job in jobs:
        assert (root / job["config"]).is_file()


def test_the_old_seed_architecture_name_is_an_alias_of_classic(tmp_path, caplog):
    from ferkit.models import create_model, list_models
    from ferkit.models.checkpoint import load_checkpoint, make_model_card, save_checkpoint

    assert MODEL_ALIASES["seed"] == "classic"
    assert "classic" in list_models() and "seed" not in list_models()
    with caplog.at_level(logging.WARNING):
        config = TrainConfig(arch="seed").validate()
    assert config.arch == "classic"
    assert "deprecated" in caplog.text
    model = create_model("seed", channels=[4, 8, 8])
    assert model.ferkit_name == "classic"
    # A checkpoint written before the rename: its card says "seed".
    card = make_model_card(model, ["a", "b", "c", "d", "e", "f", "g"], {"mean": 0.5, "std": 0.25})
    card["architecture"] = "seed"
    save_checkpoint(model, tmp_path / "best", card)
    loaded, loaded_card = load_checkpoint(tmp_path)
    assert loaded.ferkit_name == "classic" and loaded_card["architecture"] == "seed"
    for name, tensor in model.state_dict().items():
        assert (loaded.state_dict()[name] == tensor).all(), name


def test_a_run_saved_by_an_older_ferkit_resumes(tmp_path):
    """Its config says "seed" and lacks the fields added since (they had their defaults)."""
    from ferkit.data import split_dataset
    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.training import fit

    train_set, val_set = split_dataset(make_synthetic_dataset(80, seed=3), val_fraction=0.25)
    config = TrainConfig(
        out=str(tmp_path / "run"), epochs=[1], batch_size=16, progress=False,
        model_args={"channels": [4, 8, 8], "dense_units": [16, 8]}, precision="fp32",
    )  # fmt: skip
    fit(config, train_set, val_set, log=lambda line: None)
    state_file = tmp_path / "run" / "last" / "state.json"
    state = json.loads(state_file.read_text())
    state["config"]["arch"] = "seed"  # as a run trained before the rename saved it
    del state["config"]["targets"]  # and before --targets existed
    state_file.write_text(json.dumps(state))
    resumed = dataclasses.replace(config, epochs=[2], resume=True)
    result = fit(resumed, train_set, val_set, log=lambda line: None)
    assert len(result.history) == 2
