"""``ferkit.models.hub.load``: one loader for every kind of model location, used everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from ferkit.data import FER2013_CLASS_NAMES
from ferkit.models import create_model, hub
from ferkit.models.checkpoint import make_model_card, save_checkpoint
from ferkit.models.ensemble import create_ensemble
from ferkit.pretrained import available_bundled_models
from ferkit.utils.errors import FerkitError

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ferkit"
NORMALIZATION = {"mean": 0.5, "std": 0.25}


def make_run(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model("classic", channels=[4, 8, 4]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, NORMALIZATION)
    save_checkpoint(model, folder / "best", card)
    return folder


def same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    theirs = second.state_dict()
    return all(torch.equal(tensor, theirs[name]) for name, tensor in first.state_dict().items())


def test_run_folder_and_every_spelling_of_a_checkpoint_load_the_same_model(tmp_path):
    run = make_run(tmp_path / "run", 1)
    reference = hub.load(run)
    assert reference.kind == "checkpoint" and reference.path == run / "best"
    assert reference.class_names == list(FER2013_CLASS_NAMES)
    for spelling in (run / "best", run / "best.json", run / "best.safetensors", str(run)):
        loaded = hub.load(spelling)
        assert loaded.kind == "checkpoint" and len(loaded.members) == 1
        assert same_weights(loaded.members[0][0], reference.members[0][0]), spelling
    model, card = reference.single("a test")
    assert card["architecture"] == "classic" and not model.training


def test_ensemble_folder_loads_every_member(tmp_path):
    runs = [make_run(tmp_path / f"run{seed}", seed) for seed in (1, 2)]
    create_ensemble(runs, tmp_path / "ensemble")
    loaded = hub.load(tmp_path / "ensemble")
    assert loaded.kind == "ensemble" and loaded.path == tmp_path / "ensemble" / "ensemble.json"
    assert len(loaded.members) == 2 and loaded.card["format"] == "ferkit-ensemble"
    for (model, _), run in zip(loaded.members, runs):
        assert same_weights(model, hub.load(run).members[0][0])
    with pytest.raises(FerkitError, match="--init needs one PyTorch model.*not an ensemble"):
        loaded.single("--init")


@pytest.mark.skipif("default" not in available_bundled_models(), reason="no bundled model")
def test_bundled_name_loads_the_packaged_model():
    from ferkit.pretrained import bundled_model

    loaded = hub.load("default")
    assert loaded.kind == "checkpoint" and loaded.path == bundled_model("default")


def test_onnx_file_is_located_not_opened_and_a_missing_one_is_named(tmp_path):
    assert hub.locate(tmp_path / "model.onnx") == ("onnx", tmp_path / "model.onnx")
    with pytest.raises(FerkitError, match="model.onnx: no such ONNX file"):
        hub.load(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"not opened here")
    loaded = hub.load(tmp_path / "model.onnx")
    assert loaded.kind == "onnx" and loaded.members == []
    with pytest.raises(FerkitError, match="--teacher needs one PyTorch model.*ONNX file"):
        loaded.single("--teacher")


def test_nothing_there_is_a_clear_error(tmp_path):
    with pytest.raises(FerkitError, match="not a model"):
        hub.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerkitError, match="no best.safetensors"):
        hub.load(tmp_path / "empty")


def test_teachers_and_init_refuse_what_they_cannot_use(tmp_path):
    from ferkit.training.config import TrainConfig
    from ferkit.training.distill import load_teachers
    from ferkit.training.loop import initialise_from

    (tmp_path / "model.onnx").write_bytes(b"an exported model")
    with pytest.raises(FerkitError, match="an ONNX file cannot teach"):
        load_teachers(str(tmp_path / "model.onnx"), FER2013_CLASS_NAMES, NORMALIZATION, "cpu")
    runs = [make_run(tmp_path / f"run{seed}", seed) for seed in (1, 2)]
    teachers = load_teachers(str(runs[0]), FER2013_CLASS_NAMES, NORMALIZATION, "cpu")
    assert len(teachers) == 1 and not any(p.requires_grad for p in teachers[0].parameters())
    create_ensemble(runs, tmp_path / "ensemble")
    with pytest.raises(FerkitError, match="--init needs one PyTorch model"):
        initialise_from(TrainConfig(init=str(tmp_path / "ensemble")), FER2013_CLASS_NAMES)


def test_only_the_hub_resolves_model_locations():
    """Commands, teachers and --init go through ferkit.models.hub; the readers it builds on
    (resolve_checkpoint, load_ensemble) are called from nowhere else."""
    readers = {"resolve_checkpoint", "load_ensemble"}
    allowed = {"hub.py", "checkpoint.py", "ensemble.py"}
    callers = []
    for path in SOURCE.rglob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "id", None) or getattr(node, "attr", None)
            if isinstance(node, (ast.Name, ast.Attribute)) and name in readers:
                callers.append(f"{path.relative_to(SOURCE)}: {name}")
    assert callers == []
