"""A training run as a recipe: ``fit`` sets up, loops over epochs and finishes; ``train`` loads
the data and calls it.

The parts live beside this module: one epoch and one evaluation pass in
:mod:`ferkit.training.epoch`, the resumable :class:`~ferkit.training.state.TrainState` and the
``last/`` bundle in :mod:`ferkit.training.state`, teachers in :mod:`ferkit.training.distill`,
history and epoch lines in :mod:`ferkit.training.report`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ferkit.data.dataset import FerDataset
from ferkit.data.preprocessing import DEFAULT_NORMALIZATION
from ferkit.evaluation.evaluate import classification_metrics
from ferkit.models import count_parameters, create_model, hub
from ferkit.models.checkpoint import (
    load_checkpoint,
    make_model_card,
    save_checkpoint,
    transfer_weights,
)
from ferkit.models.runtime import resolve_device, resolve_precision, tune_allocator
from ferkit.training.config import TrainConfig
from ferkit.training.distill import load_teachers, offline_teacher_probabilities
from ferkit.training.distributed import Distributed, cleanup, from_environment, setup
from ferkit.training.epoch import (  # noqa: F401 (build_optimizer, epoch_seed: public here too)
    Criterion,
    build_optimizer,
    epoch_seed,
    evaluate,
    train_one_epoch,
)
from ferkit.training.report import git_commit, history_row, summary_line, write_history
from ferkit.training.schedule import learning_rate_at
from ferkit.training.state import (  # noqa: F401 (the bundle functions: public here too)
    LAST,
    RESUMABLE_CHANGES,
    TrainState,
    find_last,
    load_scaler,
    make_ema,
    save_last,
    save_scaler,
)
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import read_json, write_json


class TrainingInterrupted(FerkitError):
    """Ctrl-C during training: the run folder holds the last finished epoch (exit code 130)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=130)


@dataclass
class FitResult:
    """What :func:`fit` returns: the best model, its metrics and the run's history."""

    model: torch.nn.Module
    history: list[dict]
    metrics: dict
    run_dir: Path
    best_epoch: int
    card: dict = field(default_factory=dict)


@dataclass
class _Run:
    """Where and how a run trains: fixed once :func:`fit` has set it up."""

    config: TrainConfig
    run_dir: Path
    distributed: Distributed
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    normalization: dict
    class_names: tuple
    log: object
    trained: torch.nn.Module | None = None  # the model as trained (compiled, DDP-wrapped)
    criterion: Criterion | None = None
    teacher_probabilities: torch.Tensor | None = None
    soft_labels: torch.Tensor | None = None  # FER+'s vote distributions (--targets votes)
    card_base: dict = field(default_factory=dict)


def _silent(line: str) -> None:
    """A log function for ranks other than 0."""


def fit(config: TrainConfig, train_set: FerDataset, val_set: FerDataset, log=print) -> FitResult:
    """Train ``config.arch`` on ``train_set``, select on ``val_set``, fill the run folder.

    The run folder (``config.out``) receives ``config.json``, the ``best`` checkpoint
    (``best.safetensors`` + ``best.json`` model card), the ``last/`` bundle for ``--resume``,
    ``history.json``/``.csv``/``.png``, ``metrics.json`` and ``confusion_matrix.png`` for the
    validation set, and ``calibration.json`` and ``reliability_diagram.png``: the temperature
    fitted on the validation logits (stored in ``best.json``) and ECE/NLL/Brier before/after.

    Example:
        >>> from ferkit.data.synth import make_synthetic_dataset
        >>> from ferkit.data import split_dataset
        >>> train_set, val_set = split_dataset(make_synthetic_dataset(140))
        >>> config = TrainConfig(out="/tmp/ferkit-doctest", epochs=[1], progress=False,
        ...                      model_args={"channels": [4, 4, 4]}, overwrite=True)
        >>> result = fit(config, train_set, val_set, log=lambda line: None)
        >>> len(result.history), (result.run_dir / "best.safetensors").exists()
        (1, True)
    """
    run, last_bundle = _set_up(config, train_set, val_set, log)
    state = _initial_state(run, train_set.num_classes, last_bundle)
    _prepare_training(run, state, train_set, val_set)
    train_images = torch.from_numpy(train_set.images)
    train_labels = torch.from_numpy(train_set.labels)
    epoch = state.epoch
    try:
        for epoch in range(state.epoch, config.total_epochs):
            _one_epoch(run, state, epoch, train_images, train_labels, val_set)
    except KeyboardInterrupt:
        _stop_after_interrupt(run, state, epoch)
    return _finish(run, state, val_set)


def _set_up(config: TrainConfig, train_set, val_set, log) -> tuple[_Run, Path | None]:
    """Check the data and the run folder, pick device and precision, clear a replaced run."""
    config.validate()
    run_dir = Path(config.out)
    distributed = from_environment()
    if len(train_set) < 2 or len(val_set) == 0:
        raise FerkitError(
            f"need at least 2 training and 1 validation faces, got {len(train_set)} and "
            f"{len(val_set)}"
        )
    if tuple(train_set.class_names) != tuple(val_set.class_names):
        raise FerkitError("training and validation sets have different class lists")
    if config.targets == "votes" and train_set.votes is None:
        raise FerkitError(
            f"targets='votes' needs each face's vote distribution (a FER+ folder); "
            f"{config.data or train_set.source} has one label per face (use --targets majority)"
        )
    last_bundle = find_last(run_dir)
    if config.resume and last_bundle is None:
        raise FerkitError(f"{run_dir}: nothing to resume (no complete {LAST}/ checkpoint there)")
    if not config.resume and last_bundle is not None and not config.overwrite:
        raise FerkitError(
            f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    device = setup(distributed, resolve_device(config.device))
    if device.type == "cpu":
        tune_allocator()  # keep freed tensor memory between steps: 27 % faster on CPU
    distributed.barrier()  # every rank has checked the folder before rank 0 changes it
    if distributed.is_main:
        if not config.resume:
            for name in (LAST, f"{LAST}.new", f"{LAST}.old"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(
        config=config,
        run_dir=run_dir,
        distributed=distributed,
        device=device,
        autocast_dtype=resolve_precision(config.precision, device),
        channels_last=config.channels_last and device.type != "mps",
        normalization=dict(DEFAULT_NORMALIZATION),
        class_names=tuple(train_set.class_names),
        log=log if distributed.is_main else _silent,  # only rank 0 prints and writes
    )
    return run, last_bundle


def _initial_state(run: _Run, num_classes: int, last_bundle: Path | None) -> TrainState:
    """The model (new, fine-tuned from ``--init``, or resumed), its optimizer, EMA and scaler."""
    config, device = run.config, run.device
    torch.manual_seed(config.seed)
    if config.init:
        model = initialise_from(config, run.class_names, run.log)
    else:
        model = create_model(config.arch, num_classes=num_classes, **config.model_args)
    model = model.to(device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if run.distributed.enabled and device.type == "cuda":
        # Per-GPU batches are small: batch norm statistics over all GPUs matter there.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    state = TrainState(model, build_optimizer(model, config))
    if config.ema_decay:
        state.ema = make_ema(model, config.ema_decay)
    # fp16 needs loss scaling so small gradients do not underflow (bf16 and fp32 do not).
    if run.autocast_dtype == torch.float16:
        state.scaler = torch.amp.GradScaler(device.type)
    return state


def _prepare_training(run: _Run, state: TrainState, train_set, val_set) -> None:
    """Teachers and loss, resume, ``config.json``, compile/DDP, the card's training record."""
    config, device = run.config, run.device
    teachers = load_teachers(config.teacher, run.class_names, run.normalization, device)
    run.criterion = Criterion.from_config(
        config, class_weights=_class_weights(config, train_set, device), teachers=teachers
    )
    if config.resume:
        state.load(find_last(run.run_dir), config, device, run.log)
        run.log(f"resuming {run.run_dir} after epoch {state.epoch}/{config.total_epochs}")
    if run.distributed.is_main:
        write_json(run.run_dir / "config.json", config.to_dict())
    # DDP averages gradients across ranks; the unwrapped `state.model` is what gets saved.
    run.trained = torch.compile(state.model) if config.compile else state.model
    if run.distributed.enabled:
        run.trained = torch.nn.parallel.DistributedDataParallel(
            run.trained, device_ids=[device.index] if device.type == "cuda" else None
        )
    run.card_base = {
        "parameters": count_parameters(state.model),
        "training": {
            "data": config.data,
            "train_size": len(train_set),
            "val_size": len(val_set),
            "seed": config.seed,
            "targets": config.targets,
            "git_commit": git_commit(),
            "config": config.to_dict(),
        },
    }
    if config.targets == "votes":
        run.soft_labels = torch.from_numpy(train_set.votes)
    if teachers and config.distill_mode == "offline":
        began = time.perf_counter()
        run.teacher_probabilities = offline_teacher_probabilities(
            teachers, train_set.images, config.distill_temperature, run.normalization,
            config.eval_batch_size, device, run.autocast_dtype, run.channels_last,
        )  # fmt: skip
        run.criterion.teachers = []  # their work is done: free the step of their forward passes
        run.log(f"offline distillation: teacher probabilities for {len(train_set)} faces "
                f"(and mirrors) in {time.perf_counter() - began:.0f} s")  # fmt: skip


def _class_weights(config: TrainConfig, train_set, device) -> torch.Tensor | None:
    """Inverse class frequencies, normalised so the average weight per face stays 1."""
    if not config.class_weighting:
        return None
    counts = np.bincount(train_set.labels, minlength=train_set.num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def _one_epoch(run: _Run, state: TrainState, epoch: int, images, labels, val_set) -> None:
    """Train, validate, keep ``best`` when it improved, save ``last`` and the history."""
    config = run.config
    lr = learning_rate_at(
        epoch, config.epochs, config.lr, config.lr_drop, config.schedule,
        config.warmup_epochs, config.min_lr_ratio,
    )  # fmt: skip
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    stats = train_one_epoch(
        run.trained, images, labels, optimizer=state.optimizer, config=config, epoch=epoch,
        device=run.device, autocast_dtype=run.autocast_dtype, normalization=run.normalization,
        criterion=run.criterion, ema=state.ema, scaler=state.scaler,
        distributed=run.distributed, teacher_probabilities=run.teacher_probabilities,
        soft_labels=run.soft_labels,
    )  # fmt: skip
    # With EMA, the averaged weights are the model that is validated and kept.
    validation = evaluate(
        state.selected, val_set.images, val_set.labels, batch_size=config.eval_batch_size,
        device=run.device, autocast_dtype=run.autocast_dtype, normalization=run.normalization,
        channels_last=run.channels_last, tta=config.tta,
    )  # fmt: skip
    row = history_row(epoch, lr, stats, validation)
    improved = state.record(row)
    card = make_model_card(
        state.model, run.class_names, run.normalization, epoch=epoch + 1, tta=config.tta,
        **run.card_base,
    )  # fmt: skip
    if run.distributed.is_main:
        if improved:
            best_card = dict(card, best_epoch=state.best_epoch, val_accuracy=state.best_accuracy)
            save_checkpoint(state.selected, run.run_dir / "best", best_card)
        state.save(run.run_dir, card, config)
        write_history(run.run_dir, state.history, config, plot=False)
    run.log(summary_line(row, config.total_epochs, improved))


def _stop_after_interrupt(run: _Run, state: TrainState, epoch: int) -> None:
    """Ctrl-C: keep the history of the epochs whose checkpoint was saved, then stop."""
    # Only epochs whose checkpoint was saved count (Ctrl-C may land while saving one).
    saved = find_last(run.run_dir) if run.distributed.is_main else None
    completed = read_json(saved / "state.json")["epoch"] if saved else 0
    if run.distributed.is_main:
        write_history(run.run_dir, state.history[:completed], run.config, plot=True)
    raise TrainingInterrupted(
        f"interrupted during epoch {epoch + 1}; {run.run_dir} holds epoch {completed} "
        f"(continue with: ferkit train {run.config.data} --out {run.run_dir} --resume)"
    ) from None


def _finish(run: _Run, state: TrainState, val_set) -> FitResult:
    """Reload ``best``, measure it in fp32, write metrics, the confusion matrix and its card."""
    from ferkit.evaluation.calibrate import calibrate_validation
    from ferkit.plots import plot_confusion_matrix

    config, run_dir, main = run.config, run.run_dir, run.distributed.is_main
    if main:
        write_history(run_dir, state.history, config, plot=True)
    run.distributed.barrier()  # rank 0 has written best before the others read it
    best_model, best_card = load_checkpoint(run_dir / "best", device=run.device)
    # Final metrics in fp32, the way `ferkit evaluate` and Predictor compute them, so the
    # numbers agree; per-epoch selection above may use bf16 for speed.
    validation = evaluate(
        best_model, val_set.images, val_set.labels, batch_size=config.eval_batch_size,
        device=run.device, normalization=run.normalization, tta=config.tta,
    )  # fmt: skip
    metrics = classification_metrics(val_set.labels, validation["predictions"], run.class_names)
    metrics.update(split="validation", best_epoch=state.best_epoch, loss=validation["loss"])
    # The best card carries its final validation metrics, so a model explains itself.
    best_card["metrics"] = {
        "validation_accuracy": metrics["accuracy"],
        "validation_macro_f1": metrics["macro_f1"],
        "per_class_recall": {name: row["recall"] for name, row in metrics["per_class"].items()},
    }
    # Temperature scaling on the validation logits: calibration.json, reliability_diagram.png.
    best_card["calibration"] = calibrate_validation(
        validation["logits"], val_set.labels, run_dir if main else None
    )
    if main:
        write_json(run_dir / "metrics.json", metrics)
        plot_confusion_matrix(
            np.array(metrics["confusion_matrix"]),
            run.class_names,
            run_dir / "confusion_matrix.png",
            title="validation",
        )
        write_json(run_dir / "best.json", best_card)
    run.distributed.barrier()
    return FitResult(best_model, state.history, metrics, run_dir, state.best_epoch, best_card)


def initialise_from(config: TrainConfig, class_names, log=print) -> torch.nn.Module:
    """Build the model of ``config.init``'s checkpoint and copy its weights (fine-tuning).

    ``config.init`` is ``"pretrained"`` (the bundled ``default`` model) or a run folder or
    checkpoint. The architecture and its arguments come from that model's card and are written
    into ``config``; when the class list differs, the classifier's last layer is rebuilt
    (:func:`ferkit.models.checkpoint.transfer_weights`).

    Example:
        >>> model = initialise_from(TrainConfig(init="pretrained"), "ABCDEFG")  # doctest: +SKIP
    """
    from ferkit.pretrained import pretrained_for

    source = pretrained_for(class_names) if config.init == "pretrained" else config.init
    pretrained, card = hub.load(source).single("--init")
    model, copied, total = transfer_weights(pretrained, card, class_names)
    config.arch = model.ferkit_name
    config.model_args = {
        key: value for key, value in card["arguments"].items() if key != "num_classes"
    }
    same = [name.lower() for name in card["class_names"]] == [name.lower() for name in class_names]
    rebuilt = "" if same else f"; classifier rebuilt for {len(class_names)} classes"
    log(f"initialised from {source} ({config.arch}): {copied}/{total} tensors{rebuilt}")
    return model


def train(config: TrainConfig, log=print) -> FitResult:
    """Load ``config.data``, split it as configured and :func:`fit` — ``ferkit train``'s twin.

    Example:
        >>> result = train(TrainConfig(data="faces.csv", out="runs/demo"))  # doctest: +SKIP
        >>> result.metrics["accuracy"]  # doctest: +SKIP
        0.97
    """
    from ferkit.data import (
        describe_excluded,
        describe_skipped,
        load_fer2013,
        split_dataset,
        write_skipped,
    )

    config.validate()
    if not from_environment().is_main:
        log = _silent
    dataset = load_fer2013(config.data, skip_bad_rows=config.skip_bad_rows)
    if dataset.skipped:
        listing = write_skipped(dataset, config.out)
        log(f"{describe_skipped(dataset.skipped)} (all listed in {listing})")
    if dataset.excluded:
        log(describe_excluded(dataset))
    train_set, val_set = split_dataset(dataset, config.split, config.val_fraction, config.seed)
    log(
        f"data: {dataset.source}: {len(dataset)} faces → {len(train_set)} train, "
        f"{len(val_set)} validation ({config.split} split)"
    )
    try:
        return fit(config, train_set, val_set, log=log)
    finally:
        cleanup(from_environment())
