"""FER+: the folder layout, vote distributions, training on votes, scoring on votes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferkit.data import load_fer2013, split_dataset
from ferkit.data.ferplus import (
    FERPLUS_CLASS_NAMES,
    LABEL_FILE,
    load_ferplus,
    parse_label_file,
    write_synthetic_ferplus,
)
from ferkit.evaluation import evaluate_dataset, restrict_to_classes, vote_metrics
from ferkit.utils.errors import DataError, FerkitError

SHARED_FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"


@pytest.fixture(scope="module")
def ferplus_root(tmp_path_factory):
    return write_synthetic_ferplus(tmp_path_factory.mktemp("ferplus"), n=160, seed=1)


def _label_lines(root: Path, split: str = "FER2013Train") -> list[str]:
    return (root / split / LABEL_FILE).read_text().splitlines()


def test_folder_layout_gives_labels_votes_usage_and_exclusions(ferplus_root):
    dataset = load_ferplus(ferplus_root)
    assert dataset.class_names == FERPLUS_CLASS_NAMES
    assert set(dataset.usage.tolist()) == {"Training", "PublicTest"}
    assert np.allclose(dataset.votes.sum(axis=1), 1.0)
    # The majority label is the class with the most votes.
    assert (dataset.votes.argmax(axis=1) == dataset.labels).all()
    # Every line is either kept or excluded (its majority vote was unknown/NF), never lost.
    lines = sum(
        len(_label_lines(ferplus_root, split)) for split in ("FER2013Train", "FER2013Valid")
    )
    assert len(dataset) + len(dataset.excluded) == lines
    assert dataset.excluded and all("'unknown'" in entry for entry in dataset.excluded)
    assert not dataset.skipped


def test_votes_follow_the_file(tmp_path):
    folder = tmp_path / "FER2013Valid"
    write_synthetic_ferplus(tmp_path, n=8, seed=0)
    name = _label_lines(tmp_path, "FER2013Valid")[0].split(",")[0]
    # One face: 6 happiness, 2 surprise, 1 contempt, 1 unknown (dropped from the distribution).
    (folder / LABEL_FILE).write_text(f'{name},"(0, 0, 48, 48)",0,6,2,0,0,0,0,1,1,0\n')
    dataset = load_ferplus(folder)  # a split folder on its own
    assert dataset.usage.tolist() == ["PublicTest"]
    assert dataset.class_names[int(dataset.labels[0])] == "Happy"
    assert dataset.votes[0].tolist() == pytest.approx([0, 6 / 9, 2 / 9, 0, 0, 0, 0, 1 / 9])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('fer0000000.png,"(0, 0, 48, 48)",4,0,0', "expected 12 fields"),
        ('fer0000000.png,"(0, 0, 48, 48)",4,0,x,1,3,2,0,0,0,0', "field 'surprise'"),
        ('fer0000000.png,"(0, 0, 48, 48)",4,0,-1,1,3,2,0,0,0,0', "not a non-negative integer"),
        ('fer0000000.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,0,0', "no votes"),
    ],
)
def test_a_bad_label_line_names_file_and_line(tmp_path, line, message):
    write_synthetic_ferplus(tmp_path, n=16, seed=0)
    label_file = tmp_path / "FER2013Train" / LABEL_FILE
    lines = _label_lines(tmp_path)
    lines[2] = line
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"label\.csv: line 3: .*{message}"):
        load_ferplus(tmp_path)
    skipped = load_ferplus(tmp_path, skip_bad_rows=True)
    assert len(skipped.skipped) == 1 and "line 3" in skipped.skipped[0]
    assert len(skipped) + len(skipped.excluded) == 16 - 1


def test_a_missing_or_broken_png_is_named(tmp_path):
    write_synthetic_ferplus(tmp_path, n=16, seed=0, unknown_share=0.0)
    names = [line.split(",")[0] for line in _label_lines(tmp_path)]
    (tmp_path / "FER2013Train" / names[0]).unlink()
    (tmp_path / "FER2013Train" / names[1]).write_bytes(b"not a png")
    with pytest.raises(DataError, match=names[0]):
        load_ferplus(tmp_path)
    dataset = load_ferplus(tmp_path, skip_bad_rows=True)
    assert len(dataset) == 14
    assert any(names[0] in entry for entry in dataset.skipped)
    assert any(names[1] in entry for entry in dataset.skipped)


def test_not_a_ferplus_folder(tmp_path):
    with pytest.raises(DataError, match="not a FER\\+ folder"):
        load_ferplus(tmp_path)


def test_label_file_blank_lines_are_not_faces(tmp_path):
    path = tmp_path / LABEL_FILE
    path.write_text('a.png,"(0, 0, 48, 48)",9,1,0,0,0,0,0,0,0,0\n\n')
    rows, problems = parse_label_file(path)
    assert len(rows) == 1 and problems == []


def test_load_fer2013_recognises_the_layout_and_caches_votes(ferplus_root, tmp_path):
    first = load_fer2013(ferplus_root, cache_dir=tmp_path)
    again = load_fer2013(ferplus_root, cache_dir=tmp_path)  # from the cache
    assert list((tmp_path / "datasets").glob("*.npz"))
    assert again.class_names == FERPLUS_CLASS_NAMES
    assert np.array_equal(again.votes, first.votes)
    assert again.excluded == first.excluded
    assert np.array_equal(again.usage, first.usage)
    # Subsets (splits) carry the votes along.
    train, val = split_dataset(again, "usage")
    assert train.votes.shape == (len(train), 8) and val.votes.shape == (len(val), 8)


def test_vote_metrics_and_restricting_classes():
    votes = np.array([[1.0, 0.0], [0.5, 0.5]])
    perfect = vote_metrics(votes, votes)
    assert perfect["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["total_variation"] == pytest.approx(0.0)
    wrong = vote_metrics(votes, np.array([[0.0, 1.0], [0.5, 0.5]]))
    assert wrong["total_variation"] == pytest.approx(0.5)
    assert wrong["plurality_agreement"] == pytest.approx(0.5)


def test_training_on_votes_and_scoring_on_them(ferplus_root, tmp_path, monkeypatch):
    from ferkit.training import TrainConfig, train

    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    config = TrainConfig(
        data=str(ferplus_root), out=str(tmp_path / "run"), split="usage", epochs=[1],
        batch_size=16, progress=False, targets="votes", mixup=0.2, label_smoothing=0.05,
        model_args={"channels": [4, 8, 8], "dense_units": [16, 8]},
    )  # fmt: skip
    lines = []
    result = train(config, log=lines.append)
    assert any("left out" in line for line in lines)
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["class_names"] == list(FERPLUS_CLASS_NAMES)
    assert card["training"]["targets"] == "votes"
    assert np.isfinite(result.history[0]["train_loss"])
    metrics = evaluate_dataset(ferplus_root, tmp_path / "run", split="PublicTest")
    assert set(metrics["votes"]) == {"kl_divergence", "total_variation", "plurality_agreement"}
    assert metrics["set_aside"] == {}


def test_votes_need_vote_data(tmp_path, monkeypatch):
    from ferkit.data import save_fer2013_csv
    from ferkit.data.synth import make_synthetic_dataset
    from ferkit.training import TrainConfig, train

    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    csv = save_fer2013_csv(make_synthetic_dataset(70), tmp_path / "faces.csv")
    config = TrainConfig(data=str(csv), out=str(tmp_path / "run"), epochs=[1], targets="votes")
    with pytest.raises(FerkitError, match="targets='votes' needs each face's vote distribution"):
        train(config, log=lambda line: None)
    with pytest.raises(FerkitError, match="targets='nonsense'.*majority, votes"):
        TrainConfig(targets="nonsense").validate()


def test_a_fer2013_model_is_scored_on_the_shared_classes(ferplus_root, tmp_path, monkeypatch):
    from ferkit.data import FER2013_CLASS_NAMES
    from ferkit.models import create_model
    from ferkit.models.checkpoint import make_model_card, save_checkpoint

    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_ferplus(ferplus_root)
    # Make one validation face a Contempt face: it must be set aside, not scored.
    contempt = np.flatnonzero(dataset.usage == "PublicTest")[0]
    dataset.labels[contempt] = FERPLUS_CLASS_NAMES.index("Contempt")
    restricted, aside = restrict_to_classes(dataset, FER2013_CLASS_NAMES)
    assert aside == {"Contempt": 1} and len(restricted) == len(dataset) - 1
    assert np.allclose(restricted.votes.sum(axis=1), 1.0)
    assert {name.lower() for name in restricted.class_names} <= {
        name.lower() for name in FER2013_CLASS_NAMES
    }
    model = create_model("seed", channels=[4, 8, 4]).eval()
    card = make_model_card(model, FER2013_CLASS_NAMES, {"mean": 0.5, "std": 0.25})
    save_checkpoint(model, tmp_path / "fer2013" / "best", card)
    metrics = evaluate_dataset(ferplus_root, tmp_path / "fer2013", split="PublicTest")
    expected = int((load_ferplus(ferplus_root).usage == "PublicTest").sum())
    assert metrics["count"] == expected  # no Contempt faces in the synthetic set
    assert "kl_divergence" in metrics["votes"]


@pytest.mark.skipif(not SHARED_FERPLUS.is_dir(), reason="FER+ is not in ../shared/data")
def test_the_real_ferplus_valid_folder_matches_its_readme():
    dataset = load_ferplus(SHARED_FERPLUS / "FER2013Valid")
    counts = dataset.class_counts()
    # ../shared/data/ferplus/README.md: Valid majority classes.
    assert counts["Neutral"] == 1329 and counts["Happy"] == 899 and counts["Contempt"] == 26
    assert len(dataset.excluded) == 23 + 1  # unknown + NF majorities
    assert not dataset.skipped


def test_default_and_small_are_the_ferplus_models():
    from ferkit.models.checkpoint import resolve_checkpoint
    from ferkit.pretrained import available_bundled_models

    if not {"default", "ferplus", "small", "ferplus-small"} <= set(available_bundled_models()):
        pytest.skip("this build does not ship the FER+ models")
    assert resolve_checkpoint("default") == resolve_checkpoint("ferplus")
    assert resolve_checkpoint("small") == resolve_checkpoint("ferplus-small")
    card = json.loads(resolve_checkpoint("default").with_suffix(".json").read_text())
    assert card["class_names"] == list(FERPLUS_CLASS_NAMES)
    assert card["training"]["targets"] == "votes"
