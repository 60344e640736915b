"""Tests for ferkit.training: schedule, config, augmentation, fit, resume, interruption, cv."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ferkit.data import split_dataset
from ferkit.data.synth import make_synthetic_dataset
from ferkit.training import TrainConfig, fit, learning_rate_at
from ferkit.training import loop as training_loop
from ferkit.training.augment import random_affine
from ferkit.training.schedule import phase_boundaries
from ferkit.utils.errors import FerkitError

TINY_MODEL = {"channels": [4, 8, 8], "dense_units": [16, 8]}
# A narrow notebook CNN with light dropout: learns the synthetic task in a few epochs.
SMALL_MODEL = {
    "channels": [16, 32, 32],
    "block_dropouts": [0.1, 0.1, 0.1],
    "dense_dropouts": [0.2, 0.1],
}


@pytest.fixture(scope="module")
def tiny_split():
    return split_dataset(make_synthetic_dataset(140, seed=3), val_fraction=0.25, seed=0)


def tiny_config(tmp_path, **changes) -> TrainConfig:
    values = dict(
        out=str(tmp_path / "run"),
        epochs=[2, 1],
        batch_size=16,
        progress=False,
        model_args=TINY_MODEL,
    )
    values.update(changes)
    return TrainConfig(**values)


# --- schedule -------------------------------------------------------------------------------


def test_learning_rate_drops_exactly_at_phase_boundaries():
    phases, base = [20, 20], 1e-3
    assert learning_rate_at(0, phases, base, 0.1) == pytest.approx(1e-3)
    assert learning_rate_at(19, phases, base, 0.1) == pytest.approx(1e-3)
    assert learning_rate_at(20, phases, base, 0.1) == pytest.approx(1e-4)
    assert learning_rate_at(39, phases, base, 0.1) == pytest.approx(1e-4)
    # past the end: stays in the last phase
    assert learning_rate_at(45, phases, base, 0.1) == pytest.approx(1e-4)


def test_three_phase_schedule_and_boundaries():
    phases = [3, 2, 4]
    rates = [learning_rate_at(epoch, phases, 1.0, 0.5) for epoch in range(9)]
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert phase_boundaries(phases) == [3, 5]


def test_schedule_rejects_negative_epoch():
    with pytest.raises(ValueError):
        learning_rate_at(-1, [1], 1.0, 0.1)


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("optimizer", "rmsprop", "adam, adamw, sgd"),
        ("device", "tpu", "auto, cpu, cuda, mps"),
        ("precision", "fp8", "auto, fp32, bf16"),
        ("split", "random", "stratified, usage"),
    ],
)
def test_config_errors_name_the_value_and_choices(field, value, fragment):
    with pytest.raises(FerkitError) as error:
        TrainConfig(**{field: value}).validate()
    assert repr(value) in str(error.value) and fragment in str(error.value)


@pytest.mark.parametrize(
    "changes",
    [{"epochs": [0, 0]}, {"lr": 0}, {"batch_size": 0}, {"lr_drop": 1.5}, {"val_fraction": 1.0}],
)
def test_config_rejects_bad_numbers(changes):
    with pytest.raises(FerkitError):
        TrainConfig(**changes).validate()


def test_config_round_trips_through_a_dict():
    config = TrainConfig(epochs=[3, 4], model_args={"channels": [8, 8, 8]})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(FerkitError, match="unknown config field"):
        TrainConfig.from_dict({"epoch": 3})


# --- augmentation ---------------------------------------------------------------------------


def test_random_affine_is_seeded_batched_and_changes_faces():
    images = torch.rand(32, 1, 48, 48)
    first = random_affine(images, torch.Generator().manual_seed(5))
    again = random_affine(images, torch.Generator().manual_seed(5))
    other = random_affine(images, torch.Generator().manual_seed(6))
    assert first.shape == images.shape
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.allclose(first, images)


def test_random_affine_without_motion_only_flips():
    images = torch.rand(64, 1, 48, 48)
    output = random_affine(
        images, torch.Generator().manual_seed(0), max_shift=0, max_rotation=0, max_scale=0
    )
    flipped = torch.flip(images, dims=[3])
    for index in range(len(images)):
        same = torch.allclose(output[index], images[index], atol=1e-5)
        mirrored = torch.allclose(output[index], flipped[index], atol=1e-5)
        assert same or mirrored
    mirrored_count = sum(
        torch.allclose(output[index], flipped[index], atol=1e-5) for index in range(len(images))
    )
    assert 10 < mirrored_count < 54  # about half are mirrored


# --- fit ------------------------------------------------------------------------------------


def test_fit_writes_a_complete_run_folder(tmp_path, tiny_split):
    train_set, val_set = tiny_split
    result = fit(tiny_config(tmp_path), train_set, val_set, log=lambda line: None)
    run = result.run_dir
    for name in [
        "config.json",
        "best.safetensors",
        "best.json",
        "last/model.safetensors",
        "last/model.json",
        "last/optimizer.safetensors",
        "last/state.json",
        "history.json",
        "history.csv",
        "history.png",
        "confusion_matrix.png",
        "metrics.json",
    ]:
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-3, 1e-4])
    csv_lines = (run / "history.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:3] == ["epoch", "lr", "train_loss"]
    assert len(csv_lines) == 4
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == [2, 1] and config["model_args"] == TINY_MODEL
    card = json.loads((run / "best.json").read_text())
    assert card["architecture"] == "classic"
    assert card["arguments"]["channels"] == TINY_MODEL["channels"]
    assert card["class_names"][3] == "Happy"
    assert card["input_size"] == [48, 48]
    assert card["normalization"] == {"mean": 0.5, "std": 0.25}
    assert card["best_epoch"] == result.best_epoch
    assert max(row["val_accuracy"] for row in history) == pytest.approx(
        history[result.best_epoch - 1]["val_accuracy"]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class"} <= set(metrics)
    assert metrics["count"] == len(val_set)
    assert set(metrics["per_class"]) == set(train_set.class_names)


def test_fit_refuses_to_overwrite_a_run_unless_asked(tmp_path, tiny_split):
    train_set, val_set = tiny_split
    config = tiny_config(tmp_path, epochs=[1])
    fit(config, train_set, val_set, log=lambda line: None)
    with pytest.raises(FerkitError, match="already holds a run"):
        fit(config, train_set, val_set, log=lambda line: None)
    fit(dataclasses.replace(config, overwrite=True), train_set, val_set, log=lambda line: None)


def test_resume_needs_a_run(tmp_path, tiny_split):
    with pytest.raises(FerkitError, match="nothing to resume"):
        fit(tiny_config(tmp_path, resume=True), *tiny_split, log=lambda line: None)


def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny_split, monkeypatch):
    train_set, val_set = tiny_split
    uninterrupted = fit(
        tiny_config(tmp_path / "a", precision="fp32"), train_set, val_set, log=lambda line: None
    )

    # Second run: "killed" (Ctrl-C) when epoch 3 starts, then resumed.
    real_train_one_epoch = training_loop.train_one_epoch

    def interrupted_at_epoch_three(*args, **kwargs):
        if kwargs["epoch"] == 2:  # 0-based epoch argument
            raise KeyboardInterrupt
        return real_train_one_epoch(*args, **kwargs)

    config = tiny_config(tmp_path / "b", precision="fp32")
    monkeypatch.setattr(training_loop, "train_one_epoch", interrupted_at_epoch_three)
    with pytest.raises(training_loop.TrainingInterrupted) as stopped:
        fit(config, train_set, val_set, log=lambda line: None)
    assert stopped.value.exit_code == 130
    assert "--resume" in str(stopped.value)
    saved_history = json.loads((tmp_path / "b" / "run" / "history.json").read_text())
    assert len(saved_history) == 2  # the finished epochs were saved

    monkeypatch.setattr(training_loop, "train_one_epoch", real_train_one_epoch)
    resumed = fit(dataclasses.replace(config, resume=True), train_set, val_set, log=print)

    keys = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]
    for row_a, row_b in zip(uninterrupted.history, resumed.history, strict=True):
        for key in keys:
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-6, abs=1e-7), key
    weights_a = load_file(tmp_path / "a" / "run" / "last" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "run" / "last" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], rtol=1e-5, atol=1e-6)


def test_resume_rejects_a_different_architecture(tmp_path, tiny_split):
    config = tiny_config(tmp_path, epochs=[1])
    fit(config, *tiny_split, log=lambda line: None)
    other = dataclasses.replace(config, resume=True, model_args={"channels": [8, 8, 8]})
    with pytest.raises(FerkitError, match="cannot resume with a different config: model_args"):
        fit(other, *tiny_split, log=lambda line: None)


def test_short_synthetic_training_reaches_95_percent(tmp_path):
    """The synthetic task is learnable and the pipeline is correct end to end."""
    dataset = make_synthetic_dataset(1400, seed=1)
    train_set, val_set = split_dataset(dataset, val_fraction=0.2, seed=0)
    config = TrainConfig(
        out=str(tmp_path / "run"),
        epochs=[6, 2],
        batch_size=32,
        progress=False,
        model_args=SMALL_MODEL,
    )
    result = fit(config, train_set, val_set, log=print)
    assert result.metrics["accuracy"] >= 0.95
    # The saved best model gives the same accuracy when reloaded through the predictor.
    from ferkit.inference import Predictor

    predictor = Predictor.from_run(result.run_dir, device="cpu")
    probabilities = predictor.predict_proba(val_set.images)
    reloaded_accuracy = float(np.mean(probabilities.argmax(axis=1) == val_set.labels))
    assert reloaded_accuracy >= 0.95


def test_last_bundle_survives_a_kill_during_the_swap(tmp_path):
    """A kill between the two folder renames leaves last.new or last.old: both resumable."""
    import os

    from ferkit.models import create_model
    from ferkit.models.checkpoint import make_model_card
    from ferkit.training.epoch import build_optimizer
    from ferkit.training.state import find_last, save_last

    model = create_model("classic", **TINY_MODEL)
    optimizer = build_optimizer(model, TrainConfig())
    card = make_model_card(model, "abcdefg", {"mean": 0.5, "std": 0.25})
    save_last(tmp_path, model, optimizer, card, {"epoch": 1})
    save_last(tmp_path, model, optimizer, card, {"epoch": 2})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]
    assert find_last(tmp_path) == tmp_path / "last"
    # Simulate: epoch 3 fully staged, killed after `last` moved aside, before the new one moved in.
    save_last(tmp_path / "scratch", model, optimizer, card, {"epoch": 3})
    os.replace(tmp_path / "scratch" / "last", tmp_path / "last.new")
    os.replace(tmp_path / "last", tmp_path / "last.old")
    assert find_last(tmp_path) == tmp_path / "last.new"
    # A staging folder without state.json is incomplete and never chosen.
    (tmp_path / "last.new" / "state.json").unlink()
    assert find_last(tmp_path) == tmp_path / "last.old"


def test_cosine_schedule_with_warm_up_at_its_boundaries():
    rates = [
        learning_rate_at(epoch, [10], 1.0, 0.1, "cosine", warmup_epochs=2, min_lr_ratio=0.1)
        for epoch in range(12)
    ]
    assert rates[0] == pytest.approx(1 / 3 * 1.0)  # warm-up: (epoch + 1) / (warmup + 1)
    assert rates[1] == pytest.approx(2 / 3 * 1.0)
    assert rates[2] == pytest.approx(1.0)  # warm-up done: cosine starts at the full LR
    assert rates[6] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine span
    assert rates[10] == pytest.approx(0.1) and rates[11] == pytest.approx(0.1)  # floor
    assert all(later <= earlier for earlier, later in zip(rates[2:], rates[3:]))


def test_random_erasing_blanks_one_box_in_chosen_faces_only():
    from ferkit.training.augment import random_erasing

    images = torch.ones(200, 1, 48, 48)
    erased = random_erasing(images, torch.Generator().manual_seed(0), probability=0.5)
    blanked = (erased == 0).flatten(1).sum(dim=1)
    touched = int((blanked > 0).sum())
    assert 70 < touched < 130
    areas = blanked[blanked > 0].float() / (48 * 48)
    assert float(areas.min()) >= 0.005 and float(areas.max()) <= 0.3


def test_mix_batch_keeps_probability_mass_and_mixes_pixels():
    from ferkit.training.augment import mix_batch

    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone()
    targets = torch.eye(8)
    for alphas in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}):
        mixed, soft = mix_batch(images, targets, torch.Generator().manual_seed(1), **alphas)
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))
        # each mixed face's mean pixel equals its soft-label-weighted mean of the sources
        expected = soft @ torch.arange(8, dtype=torch.float32)
        torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), expected)
    same, same_targets = mix_batch(images, targets, torch.Generator())
    assert same is images and same_targets is targets


def test_recipe_ingredients_train_and_resume_exactly(tmp_path, tiny_split, monkeypatch):
    """EMA, class weights, erasing, MixUp/CutMix, cosine + warm-up, flip TTA: all resumable."""
    train_set, val_set = tiny_split
    recipe = dict(
        precision="fp32", schedule="cosine", warmup_epochs=1, optimizer="sgd", lr=0.05,
        ema_decay=0.9, class_weighting=True, random_erasing=0.5, mixup=0.2, cutmix=1.0,
        label_smoothing=0.1, tta="flip",
    )  # fmt: skip
    straight = fit(tiny_config(tmp_path / "a", **recipe), train_set, val_set, log=print)
    assert json.loads((tmp_path / "a" / "run" / "best.json").read_text())["tta"] == "flip"
    assert (tmp_path / "a" / "run" / "last" / "ema.safetensors").is_file()

    real_train_one_epoch = training_loop.train_one_epoch

    def interrupted(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt
        return real_train_one_epoch(*args, **kwargs)

    config = tiny_config(tmp_path / "b", **recipe)
    monkeypatch.setattr(training_loop, "train_one_epoch", interrupted)
    with pytest.raises(training_loop.TrainingInterrupted):
        fit(config, train_set, val_set, log=print)
    monkeypatch.setattr(training_loop, "train_one_epoch", real_train_one_epoch)
    resumed = fit(dataclasses.replace(config, resume=True), train_set, val_set, log=print)
    for row_a, row_b in zip(straight.history, resumed.history, strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-6, abs=1e-7), key


def test_fine_tuning_from_a_run_with_a_different_class_list(tmp_path, tiny_split):
    from ferkit.data import FerDataset

    train_set, val_set = tiny_split
    base = fit(tiny_config(tmp_path / "base", epochs=[1]), train_set, val_set, log=print)

    def three_classes(dataset):
        keep = dataset.labels < 3
        return FerDataset(dataset.images[keep], dataset.labels[keep], ("calm", "cross", "tense"))

    lines = []
    config = tiny_config(
        tmp_path / "tuned", epochs=[1], init=str(base.run_dir), arch="vgg", model_args={}
    )
    tuned = fit(config, three_classes(train_set), three_classes(val_set), log=lines.append)
    assert any("classifier rebuilt for 3 classes" in line for line in lines)
    card = json.loads((tuned.run_dir / "best.json").read_text())
    assert card["class_names"] == ["calm", "cross", "tense"]
    assert card["architecture"] == "classic"  # the init model's architecture wins
    assert card["arguments"]["channels"] == TINY_MODEL["channels"]
    assert card["arguments"]["num_classes"] == 3
    saved = json.loads((tuned.run_dir / "config.json").read_text())
    assert saved["arch"] == "classic" and saved["init"] == str(base.run_dir)


def test_fine_tuning_with_the_same_classes_copies_every_tensor(tmp_path, tiny_split):
    train_set, _ = tiny_split
    from ferkit.models.checkpoint import load_checkpoint
    from ferkit.training.loop import initialise_from

    base = fit(tiny_config(tmp_path / "base", epochs=[1]), *tiny_split, log=print)
    lines = []
    model = initialise_from(
        TrainConfig(init=str(base.run_dir)), train_set.class_names, lines.append
    )
    reference, _ = load_checkpoint(base.run_dir)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor)
    assert "rebuilt" not in lines[0]


def test_init_pretrained_without_a_bundled_model_says_so(tmp_path, tiny_split):
    from ferkit.pretrained import available_bundled_models

    if "default" in available_bundled_models():
        pytest.skip("this build ships a default model")
    with pytest.raises(FerkitError, match="ships no 'default' model"):
        fit(tiny_config(tmp_path, init="pretrained"), *tiny_split, log=print)


def test_distillation_from_a_teacher_run(tmp_path, tiny_split):
    train_set, val_set = tiny_split
    teacher = fit(tiny_config(tmp_path / "teacher", epochs=[2]), train_set, val_set, log=print)
    config = tiny_config(
        tmp_path / "student", epochs=[1], teacher=str(teacher.run_dir), distill_weight=1.0
    )
    student = fit(config, train_set, val_set, log=print)
    assert np.isfinite(student.history[0]["train_loss"])
    saved = json.loads((student.run_dir / "config.json").read_text())
    assert saved["teacher"] == str(teacher.run_dir)


def test_bundled_model_name_works_as_a_teacher():
    """``--teacher fer2013`` (the FER2013 `small`'s recipe) loads the model inside the package."""
    from ferkit.pretrained import available_bundled_models
    from ferkit.training.distill import load_teachers

    if "fer2013" not in available_bundled_models():
        pytest.skip("this build ships no fer2013 model")
    names = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    (teacher,) = load_teachers("fer2013", names, {"mean": 0.5, "std": 0.25}, torch.device("cpu"))
    assert not teacher.training
    assert all(not parameter.requires_grad for parameter in teacher.parameters())
    with pytest.raises(FerkitError, match="teacher fer2013: classes .* differ"):
        load_teachers("fer2013", ["Happy", "Sad"], {"mean": 0.5, "std": 0.25}, "cpu")


def test_init_pretrained_picks_the_bundled_model_of_the_same_label_set():
    from ferkit.data import FER2013_CLASS_NAMES, FERPLUS_CLASS_NAMES
    from ferkit.pretrained import available_bundled_models, pretrained_for

    if not {"fer2013", "ferplus"} <= set(available_bundled_models()):
        pytest.skip("this build does not ship both label sets")
    assert pretrained_for(FER2013_CLASS_NAMES) == "fer2013"
    assert pretrained_for(FERPLUS_CLASS_NAMES) == "ferplus"
    assert pretrained_for(["cat", "dog"]) == "default"


def test_distillation_loss_is_zero_for_an_identical_teacher(tiny_split):
    """With the teacher equal to the student and weight 1, the loss is the KL of equal
    distributions: zero."""
    from ferkit.models import create_model
    from ferkit.training.epoch import Criterion, build_optimizer, train_one_epoch

    train_set, _ = tiny_split
    torch.manual_seed(0)
    student = create_model("classic", **TINY_MODEL)
    teacher = create_model("classic", **TINY_MODEL)
    teacher.load_state_dict(student.state_dict())
    # dropout/batch-norm make train-mode outputs differ from eval mode: use a model without them
    student.eval()
    config = TrainConfig(batch_size=16, progress=False, distill_weight=1.0, augment=False, lr=0.0)
    optimizer = build_optimizer(student, config)
    student.train = lambda mode=True: student  # keep eval-mode behaviour during the "training" pass
    stats = train_one_epoch(
        student, torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels),
        optimizer=optimizer, config=config, epoch=0, device=torch.device("cpu"),
        criterion=Criterion.from_config(config, teachers=[teacher.eval()]),
    )  # fmt: skip
    assert stats["loss"] == pytest.approx(0.0, abs=1e-5)


def test_offline_teacher_probabilities_average_the_face_and_its_mirror(tiny_split):
    from ferkit.models import create_model
    from ferkit.models.runtime import batched_logits
    from ferkit.training.distill import offline_teacher_probabilities

    train_set, _ = tiny_split
    torch.manual_seed(0)
    teachers = [create_model("classic", **TINY_MODEL).eval() for _ in range(2)]
    table = offline_teacher_probabilities(teachers, train_set.images, temperature=3.0)
    mirrored = train_set.images[:, :, ::-1].copy()
    expected = torch.stack([
        torch.softmax((batched_logits(teacher, train_set.images)
                       + batched_logits(teacher, mirrored)) / 2 / 3.0, dim=1)
        for teacher in teachers
    ]).mean(dim=0)  # fmt: skip
    assert table.shape == (len(train_set), 7)
    assert torch.allclose(table, expected, atol=1e-5)
    assert torch.allclose(table.sum(dim=1), torch.ones(len(train_set)), atol=1e-5)
    # the mirror view matters: a table of the plain faces alone differs
    plain = torch.softmax(batched_logits(teachers[0], train_set.images) / 3.0, dim=1)
    assert not torch.allclose(
        offline_teacher_probabilities(teachers[:1], train_set.images, 3.0), plain, atol=1e-6
    )


def test_offline_distillation_targets_follow_the_shuffled_faces(tiny_split):
    """A table holding the student's own softened outputs gives a zero distillation loss only
    if each batch reads the rows of its own (shuffled) faces."""
    from ferkit.models.runtime import batched_logits
    from ferkit.training.epoch import build_optimizer, train_one_epoch

    train_set, _ = tiny_split
    torch.manual_seed(0)
    # A linear read-out of the pixels: its outputs differ clearly from face to face.
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    with torch.no_grad():
        student[1].weight.normal_(0.0, 0.2)
    config = TrainConfig(
        batch_size=16, progress=False, distill_weight=1.0, augment=False, lr=0.0,
        distill_temperature=2.0,
    )  # fmt: skip
    own = torch.softmax(batched_logits(student, train_set.images) / 2.0, dim=1)
    images, labels = torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels)
    options = dict(optimizer=build_optimizer(student, config), config=config, epoch=0,
                   device=torch.device("cpu"))  # fmt: skip
    matched = train_one_epoch(student, images, labels, teacher_probabilities=own, **options)
    assert matched["loss"] == pytest.approx(0.0, abs=1e-5)
    shuffled = own[torch.randperm(len(own), generator=torch.Generator().manual_seed(1))]
    mismatched = train_one_epoch(student, images, labels, teacher_probabilities=shuffled, **options)
    assert mismatched["loss"] > 1e-3


def test_offline_distillation_with_mixup(tmp_path, tiny_split, capsys):
    train_set, val_set = tiny_split
    teacher = fit(tiny_config(tmp_path / "teacher", epochs=[1]), train_set, val_set, log=print)
    config = tiny_config(
        tmp_path / "student", epochs=[2], teacher=str(teacher.run_dir), distill_mode="offline",
        mixup=0.4,
    )  # fmt: skip
    student = fit(config, train_set, val_set, log=print)
    assert all(np.isfinite(row["train_loss"]) for row in student.history)
    assert f"teacher probabilities for {len(train_set)} faces" in capsys.readouterr().out
    saved = json.loads((student.run_dir / "config.json").read_text())
    assert saved["distill_mode"] == "offline"


def test_unknown_distill_mode_names_the_choices():
    with pytest.raises(FerkitError, match="distill_mode='later'.*online, offline"):
        TrainConfig(distill_mode="later").validate()


def test_cross_validation_with_parallel_folds_matches_sequential(tmp_path):
    from ferkit.data import save_fer2013_csv
    from ferkit.training.crossval import cross_validate

    data = save_fer2013_csv(make_synthetic_dataset(140, seed=2), tmp_path / "faces.csv")
    common = dict(data=str(data), epochs=[1], batch_size=16, progress=False,
                  model_args=TINY_MODEL, precision="fp32")  # fmt: skip
    sequential = cross_validate(TrainConfig(out=str(tmp_path / "a"), **common), folds=2)
    parallel = cross_validate(
        TrainConfig(out=str(tmp_path / "b"), **common), folds=2, parallel_folds=2
    )
    assert [fold["fold"] for fold in parallel["per_fold"]] == [1, 2]
    for one, other in zip(sequential["per_fold"], parallel["per_fold"]):
        assert one["accuracy"] == pytest.approx(other["accuracy"], abs=0.05)
    assert (tmp_path / "b" / "fold_2" / "best.safetensors").is_file()


def test_fp16_needs_cuda(tmp_path, tiny_split):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(FerkitError, match="fp16' needs a CUDA device"):
        fit(tiny_config(tmp_path, precision="fp16"), *tiny_split, log=print)


# --- fp16 gradient scaler in the last/ bundle -----------------------------------------------


def stepped_scaler(steps: int, overflow_at: int | None = None) -> torch.amp.GradScaler:
    """A CPU GradScaler after ``steps`` optimizer steps (one of them overflowing, if asked)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(steps):
        optimizer.zero_grad()
        loss = model(torch.ones(1, 2)).sum() * (float("inf") if step == overflow_at else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return scaler


def test_scaler_state_round_trips_through_the_last_bundle(tmp_path):
    from ferkit.models import create_model
    from ferkit.models.checkpoint import make_model_card
    from ferkit.training.epoch import build_optimizer
    from ferkit.training.state import find_last, load_scaler, save_last

    scaler = stepped_scaler(5, overflow_at=1)  # backed off once, then 3 good steps
    assert scaler.state_dict()["scale"] == 512.0
    assert scaler.state_dict()["_growth_tracker"] == 3
    model = create_model("classic", **TINY_MODEL)
    optimizer = build_optimizer(model, TrainConfig())
    card = make_model_card(model, "abcdefg", {"mean": 0.5, "std": 0.25})
    save_last(tmp_path, model, optimizer, card, {"epoch": 1}, scaler=scaler)
    bundle = find_last(tmp_path)
    assert json.loads((bundle / "scaler.json").read_text()) == scaler.state_dict()

    fresh = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    assert load_scaler(fresh, bundle)
    assert fresh.state_dict() == scaler.state_dict()
    assert fresh.get_scale() == 512.0  # what scale() multiplies by on the next step


def test_bundles_without_a_scaler_state_still_resume(tmp_path):
    from ferkit.models import create_model
    from ferkit.models.checkpoint import make_model_card
    from ferkit.training.epoch import build_optimizer
    from ferkit.training.state import load_scaler, save_last

    model = create_model("classic", **TINY_MODEL)
    optimizer = build_optimizer(model, TrainConfig())
    card = make_model_card(model, "abcdefg", {"mean": 0.5, "std": 0.25})
    bundle = save_last(tmp_path, model, optimizer, card, {"epoch": 1})  # no scaler (bf16, fp32)
    assert not (bundle / "scaler.json").exists()
    fresh = torch.amp.GradScaler("cpu", init_scale=1024.0)
    assert not load_scaler(fresh, bundle)
    assert fresh.get_scale() == 1024.0
    (bundle / "scaler.json").write_text('{"scale": "big"}')
    with pytest.raises(FerkitError, match="scaler.json: not a readable gradient scaler state"):
        load_scaler(fresh, bundle)


def test_resumed_fp16_run_continues_with_the_saved_loss_scale(tmp_path, tiny_split, monkeypatch):
    """fp16 needs CUDA; CPU autocast in float16 with a CPU GradScaler runs the same code path."""
    real_resolve_precision = training_loop.resolve_precision

    def fp16_anywhere(precision, device):
        return torch.float16 if precision == "fp16" else real_resolve_precision(precision, device)

    monkeypatch.setattr(training_loop, "resolve_precision", fp16_anywhere)
    train_set, val_set = tiny_split
    straight = fit(tiny_config(tmp_path / "a", precision="fp16"), train_set, val_set, log=print)
    scaler_a = json.loads((tmp_path / "a" / "run" / "last" / "scaler.json").read_text())

    real_train_one_epoch = training_loop.train_one_epoch
    seen_scales = []

    def interrupted(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt
        scaler = kwargs["scaler"]
        seen_scales.append(scaler.state_dict())
        return real_train_one_epoch(*args, **kwargs)

    config = tiny_config(tmp_path / "b", precision="fp16")
    monkeypatch.setattr(training_loop, "train_one_epoch", interrupted)
    with pytest.raises(training_loop.TrainingInterrupted):
        fit(config, train_set, val_set, log=print)
    saved = json.loads((tmp_path / "b" / "run" / "last" / "scaler.json").read_text())
    initial = torch.amp.GradScaler("cpu").state_dict()
    assert saved != initial  # else the test could not tell a restored scaler from a fresh one

    def recording(*args, **kwargs):
        scaler = kwargs["scaler"]
        seen_scales.append(scaler.state_dict())
        return real_train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(training_loop, "train_one_epoch", recording)
    resumed = fit(dataclasses.replace(config, resume=True), train_set, val_set, log=print)
    assert seen_scales[-1] == saved  # epoch 3 starts with the scale epoch 2 ended with
    assert json.loads((tmp_path / "b" / "run" / "last" / "scaler.json").read_text()) == scaler_a
    for row_a, row_b in zip(straight.history, resumed.history, strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-6, abs=1e-7), key
