"""Plain training functions: ``train_one_epoch``, ``evaluate``, ``fit`` and ``train``.

Determinism: every epoch draws its shuffling, augmentation and dropout randomness from
generators seeded by (run seed, epoch), so a run resumed from ``last`` repeats exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as functional
from tqdm import tqdm  # plain text bars: no ipywidgets needed in notebooks

from ferkit.checkpoint import (
    load_optimizer,
    make_model_card,
    save_checkpoint,
    save_optimizer,
)
from ferkit.choices import canonical_model_name
from ferkit.data.dataset import FerDataset
from ferkit.errors import FerkitError
from ferkit.evaluation import classification_metrics
from ferkit.io import read_json, write_json, write_text
from ferkit.models import count_parameters, create_model
from ferkit.preprocessing import DEFAULT_NORMALIZATION, normalize_batch
from ferkit.runtime import (
    autocast,
    batched_logits,
    prepare_batch,
    resolve_device,
    resolve_precision,
)
from ferkit.training.augment import mix_batch, random_affine, random_erasing
from ferkit.training.config import TrainConfig
from ferkit.training.distributed import Distributed, cleanup, from_environment, setup
from ferkit.training.schedule import learning_rate_at, phase_boundaries

HISTORY_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "images_per_second",
)


class TrainingInterrupted(FerkitError):
    """Ctrl-C during training: the run folder holds the last finished epoch (exit code 130)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=130)


def _silent(line: str) -> None:
    """A log function for ranks other than 0."""


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s random streams (a pure function, so resume repeats it).

    Example:
        >>> epoch_seed(0, 1) != epoch_seed(0, 2) != epoch_seed(1, 1)
        True
    """
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with Nesterov momentum, as the config says.

    Example:
        >>> model = create_model("classic", channels=[4, 4, 4])
        >>> type(build_optimizer(model, TrainConfig(optimizer="sgd"))).__name__
        'SGD'
    """
    parameters = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def train_one_epoch(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    normalization: dict | None = None,
    class_weights: torch.Tensor | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    teachers: list[torch.nn.Module] | None = None,
    distributed: Distributed | None = None,
    scaler: torch.amp.GradScaler | None = None,
    teacher_probabilities: torch.Tensor | None = None,
) -> dict:
    """Train one pass over ``images`` (uint8 N×H×W) in shuffled, augmented batches.

    Augmentation (affine, random erasing, MixUp/CutMix) follows ``config``; ``ema``, when
    given, is updated after every optimizer step. With ``teachers`` (eval-mode models fed the
    same augmented batch), the loss mixes in the KL divergence to their averaged softened
    predictions (knowledge distillation, weight ``config.distill_weight``). Offline
    distillation passes ``teacher_probabilities`` instead: one softened distribution per face
    of ``images`` (see :func:`offline_teacher_probabilities`), mixed along with the labels
    under MixUp/CutMix.

    Returns:
        ``{"loss", "accuracy", "seconds", "images_per_second"}`` over the epoch.

    Example:
        >>> config = TrainConfig(batch_size=4, progress=False)
        >>> model = create_model("classic", channels=[4, 4, 4])
        >>> optimizer = build_optimizer(model, config)
        >>> images, labels = torch.zeros(8, 48, 48, dtype=torch.uint8), torch.zeros(8).long()
        >>> cpu = torch.device("cpu")
        >>> stats = train_one_epoch(model, images, labels, optimizer, config, 0, cpu)
        >>> sorted(stats)
        ['accuracy', 'images_per_second', 'loss', 'seconds']
    """
    model.train()
    core = getattr(model, "module", model)  # the model inside a DDP wrapper
    num_classes = int(getattr(core, "ferkit_arguments", {}).get("num_classes", 7))
    distributed = distributed or Distributed()
    generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
    torch.manual_seed(epoch_seed(config.seed, epoch) + 1 + distributed.rank)  # dropout
    # The same permutation on every rank, then each rank takes its shard of it.
    order = distributed.shard(torch.randperm(len(labels), generator=generator))
    if distributed.enabled:  # each rank draws its own augmentations
        generator.manual_seed(epoch_seed(config.seed, epoch) + 1_000_003 * distributed.rank)
    # --batch-size is the global batch: each of the N ranks takes 1/N of it.
    batch_size = max(1, config.batch_size // distributed.world_size)
    batch_starts = list(range(0, len(order), batch_size))
    # A last batch of one face would break batch norm's training statistics: fold it in.
    if len(batch_starts) > 1 and len(order) - batch_starts[-1] < 2:
        batch_starts.pop()
    total_loss, correct, seen = 0.0, 0, 0
    start_time = time.perf_counter()
    bar = tqdm(
        total=len(order),
        desc=f"epoch {epoch + 1}/{config.total_epochs}",
        unit="img",
        leave=False,
        disable=not config.progress or not distributed.is_main,
        dynamic_ncols=True,
    )
    for position, first in enumerate(batch_starts):
        last = batch_starts[position + 1] if position + 1 < len(batch_starts) else len(order)
        indices = order[first:last]
        inputs = normalize_batch(images[indices], normalization)
        if config.augment:
            inputs = random_affine(
                inputs,
                generator,
                max_shift=config.max_shift,
                max_rotation=config.max_rotation,
                max_scale=config.max_scale,
            )
        if config.random_erasing:
            inputs = random_erasing(inputs, generator, config.random_erasing)
        targets = labels[indices]
        loss_targets = targets
        teacher_batch = None if teacher_probabilities is None else teacher_probabilities[indices]
        if config.mixup or config.cutmix:
            soft = functional.one_hot(targets, num_classes).float()
            if teacher_batch is not None:  # mix the teacher's targets with the same partners
                soft = torch.cat([soft, teacher_batch], dim=1)
            inputs, soft = mix_batch(inputs, soft, generator, config.mixup, config.cutmix)
            loss_targets = soft[:, :num_classes]
            if teacher_batch is not None:
                teacher_batch = soft[:, num_classes:]
        inputs = prepare_batch(inputs, device, config.channels_last)
        targets = targets.to(device, non_blocking=True)
        loss_targets = loss_targets.to(device, non_blocking=True)
        with autocast(device, autocast_dtype):
            logits = model(inputs)
        loss = functional.cross_entropy(
            logits.float(),
            loss_targets,
            weight=class_weights,
            label_smoothing=config.label_smoothing,
        )
        if teachers or teacher_batch is not None:
            temperature = config.distill_temperature
            if teacher_batch is not None:
                soft_teacher = teacher_batch.to(device, non_blocking=True)
            else:
                with torch.no_grad(), autocast(device, autocast_dtype):
                    soft_teacher = torch.stack(
                        [torch.softmax(teacher(inputs).float() / temperature, dim=1)
                         for teacher in teachers]
                    ).mean(dim=0)  # fmt: skip
            distillation = functional.kl_div(
                functional.log_softmax(logits.float() / temperature, dim=1),
                soft_teacher,
                reduction="batchmean",
            ) * (temperature**2)  # keeps gradient scale independent of the temperature
            loss = (1.0 - config.distill_weight) * loss + config.distill_weight * distillation
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        count = len(indices)
        total_loss += loss.item() * count
        correct += (logits.argmax(dim=1) == targets).sum().item()
        seen += count
        bar.update(count)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.1%}")
    bar.close()
    seconds = time.perf_counter() - start_time
    # Every rank reports the epoch over all ranks' faces.
    total_loss, correct, seen = distributed.all_reduce_sum([total_loss, correct, seen], device)
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "seconds": seconds,
        "images_per_second": seen / max(seconds, 1e-9),
    }


def evaluate(
    model: torch.nn.Module,
    images,
    labels=None,
    batch_size: int = 512,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    normalization: dict | None = None,
    channels_last: bool = False,
    tta: str = "none",
) -> dict:
    """Class probabilities (and loss/accuracy when ``labels`` are given) for uint8 faces.

    Returns:
        ``{"probabilities": float32 (N, classes), "predictions": (N,)}`` plus ``"loss"`` and
        ``"accuracy"`` with labels.

    Example:
        >>> model = create_model("classic", channels=[4, 4, 4]).eval()
        >>> result = evaluate(model, np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 2]))
        >>> result["probabilities"].shape, 0.0 <= result["accuracy"] <= 1.0
        ((3, 7), True)
    """
    logits = batched_logits(
        model, images, normalization, batch_size, device, autocast_dtype, channels_last, tta
    )
    probabilities = torch.softmax(logits, dim=1)
    result = {
        "probabilities": probabilities.numpy(),
        "predictions": probabilities.argmax(dim=1).numpy(),
    }
    if labels is not None:
        targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        result["loss"] = (
            float(functional.cross_entropy(logits, targets).item()) if len(targets) else 0.0
        )
        result["accuracy"] = (
            float(np.mean(result["predictions"] == targets.numpy())) if len(targets) else 0.0
        )
    return result


@dataclass
class FitResult:
    """What :func:`fit` returns: the best model, its metrics and the run's history."""

    model: torch.nn.Module
    history: list[dict]
    metrics: dict
    run_dir: Path
    best_epoch: int
    card: dict = field(default_factory=dict)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    write_json(run_dir / "history.json", history)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in HISTORY_FIELDS} for row in history)
    write_text(run_dir / "history.csv", buffer.getvalue())


def _summary_line(row: dict, total_epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{total_epochs}  "
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:6.2%}  "
        f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:6.2%}  "
        f"lr {row['lr']:.1e}  {row['seconds']:.1f}s ({row['images_per_second']:.0f} img/s)"
        + ("  *best" if improved else "")
    )


#: Config fields that may change when a run is resumed (they do not change what is learned,
#: or, for ``epochs``, extend the schedule); every other field must match the saved run.
RESUMABLE_CHANGES = frozenset(
    {"resume", "overwrite", "progress", "device", "precision", "channels_last",
     "eval_batch_size", "epochs", "compile"}
)  # fmt: skip

LAST = "last"


SCALER = "scaler.json"


def save_scaler(scaler: torch.amp.GradScaler | None, folder: Path) -> bool:
    """Write fp16's gradient scaler state (scale, growth tracker) as ``folder/scaler.json``.

    The state is a handful of plain numbers, so JSON holds it exactly (no pickle needed).

    Returns:
        True when a state was written; False without a scaler or with a disabled one.

    Example:
        >>> import tempfile
        >>> save_scaler(None, Path(tempfile.mkdtemp()))
        False
    """
    if scaler is None or not scaler.is_enabled():
        return False
    write_json(Path(folder) / SCALER, scaler.state_dict())
    return True


def load_scaler(scaler: torch.amp.GradScaler | None, folder: Path) -> bool:
    """Restore what :func:`save_scaler` wrote into ``scaler``.

    Bundles written before the scaler was saved (or by bf16/fp32 runs) have no
    ``scaler.json``; the scaler then keeps its initial state.

    Returns:
        True when a saved state was loaded.

    Raises:
        FerkitError: when ``scaler.json`` exists but is not a scaler state.

    Example:
        >>> import tempfile
        >>> load_scaler(torch.amp.GradScaler("cpu"), Path(tempfile.mkdtemp()))
        False
    """
    path = Path(folder) / SCALER
    if scaler is None or not scaler.is_enabled() or not path.is_file():
        return False
    try:
        state = read_json(path)
        scaler.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as error:
        raise FerkitError(f"{path}: not a readable gradient scaler state ({error})") from error
    return True


def save_last(
    run_dir: Path, model, optimizer, card: dict, state: dict, ema_model=None, scaler=None
) -> Path:
    """Save the ``last`` bundle (weights, card, optimizer, training state) as one unit.

    With fp16's ``scaler``, its state goes into the bundle too (``scaler.json``), so a
    resumed run continues with the loss scale it had learned rather than the initial one.

    The bundle is written to ``last.new/`` and swapped in by renaming folders, so a kill at
    any moment leaves a complete bundle behind (``last``, or ``last.new``/``last.old`` mid-swap;
    :func:`find_last` picks the newest complete one).
    """
    staging, current, old = run_dir / f"{LAST}.new", run_dir / LAST, run_dir / f"{LAST}.old"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_checkpoint(model, staging / "model", card)
    save_optimizer(optimizer, staging / "optimizer")
    if ema_model is not None:
        save_checkpoint(ema_model, staging / "ema", card)
    save_scaler(scaler, staging)
    write_json(staging / "state.json", state)  # written last: marks the bundle complete
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(current, old)
    os.replace(staging, current)
    shutil.rmtree(old, ignore_errors=True)
    return current


def find_last(run_dir: Path) -> Path | None:
    """The newest complete ``last`` bundle of a run folder, or None.

    Example:
        >>> find_last(Path("/nonexistent")) is None
        True
    """
    complete = []
    for name in (LAST, f"{LAST}.new", f"{LAST}.old"):
        state = run_dir / name / "state.json"
        if state.is_file():
            try:
                complete.append((read_json(state)["epoch"], run_dir / name))
            except (ValueError, KeyError, OSError):
                continue  # a damaged bundle is not a resume point
    return max(complete)[1] if complete else None


def git_commit() -> str | None:
    """The commit of the ferkit source tree that is training (None outside a git checkout)."""
    import subprocess

    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5,
    ).stdout.strip()  # fmt: skip
    return completed.stdout.strip() + ("-dirty" if dirty else "")


def load_teachers(location: str, class_names, normalization: dict, device) -> list:
    """The eval-mode models of a teacher run or ensemble folder ([] when ``location`` is "").

    Raises:
        FerkitError: when the teacher's classes or input normalisation differ from the student's.
    """
    if not location:
        return []
    from ferkit.inference import Predictor

    teacher = Predictor.from_run(location, device=str(device))
    if [name.lower() for name in teacher.class_names] != [name.lower() for name in class_names]:
        raise FerkitError(
            f"teacher {location}: classes {list(teacher.class_names)} differ from the data's "
            f"{list(class_names)}"
        )
    models = []
    for model, card in teacher.members:
        if card["normalization"] != normalization:
            raise FerkitError(f"teacher {location}: a member uses another input normalisation")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        models.append(model.eval())
    return models


def offline_teacher_probabilities(
    teachers: list[torch.nn.Module],
    images,
    temperature: float,
    normalization: dict | None = None,
    batch_size: int = 512,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """The teachers' softened probabilities (N, classes) for each clean face, computed once.

    For offline distillation: each teacher's ``softmax(logits / temperature)``, its logits
    averaged over the face and its mirror image (the ``flip`` test-time augmentation; training
    flips faces at random), then averaged over the teachers. One pass over the training set
    replaces a teacher forward pass per step.

    Example:
        >>> from ferkit.models import create_model
        >>> teacher = create_model("classic", channels=[4, 4, 4]).eval()
        >>> table = offline_teacher_probabilities([teacher], np.zeros((3, 48, 48), np.uint8), 2.0)
        >>> table.shape, bool(torch.allclose(table.sum(dim=1), torch.ones(3)))
        (torch.Size([3, 7]), True)
    """
    tables = [
        torch.softmax(
            batched_logits(teacher, images, normalization, batch_size, device, autocast_dtype,
                           channels_last, tta="flip") / temperature,
            dim=1,
        )
        for teacher in teachers
    ]  # fmt: skip
    return torch.stack(tables).mean(dim=0)


def initialise_from(config: TrainConfig, class_names, log=print) -> torch.nn.Module:
    """Build the model of ``config.init``'s checkpoint and copy its weights (fine-tuning).

    ``config.init`` is ``"pretrained"`` (the bundled ``default`` model) or a run folder or
    checkpoint. The architecture and its arguments come from that model's card and are written
    into ``config``; when the class list differs, the classifier's last layer is rebuilt.
    """
    from ferkit.checkpoint import load_checkpoint

    source = "default" if config.init == "pretrained" else config.init
    pretrained, card = load_checkpoint(source)
    config.arch = card["architecture"]
    config.model_args = {
        key: value for key, value in card["arguments"].items() if key != "num_classes"
    }
    model = create_model(config.arch, num_classes=len(class_names), **config.model_args)
    head = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
    head_names = {name for name, parameter in model.named_parameters() if any(
        parameter is other for other in head.parameters())}  # fmt: skip
    same_classes = [name.lower() for name in card["class_names"]] == [
        name.lower() for name in class_names
    ]
    own = model.state_dict()
    copied = {
        name: tensor
        for name, tensor in pretrained.state_dict().items()
        if name in own
        and own[name].shape == tensor.shape
        and (same_classes or name not in head_names)
    }
    model.load_state_dict(copied, strict=False)
    rebuilt = "" if same_classes else f"; classifier rebuilt for {len(class_names)} classes"
    log(f"initialised from {source} ({config.arch}): {len(copied)}/{len(own)} tensors{rebuilt}")
    return model


def fit(
    config: TrainConfig,
    train_set: FerDataset,
    val_set: FerDataset,
    log=print,
) -> FitResult:
    """Train ``config.arch`` on ``train_set``, select on ``val_set``, fill the run folder.

    The run folder (``config.out``) receives ``config.json``, the ``best`` checkpoint
    (``best.safetensors`` + ``best.json`` model card), the ``last/`` bundle for ``--resume``,
    ``history.json``/``.csv``/``.png``, ``metrics.json`` and ``confusion_matrix.png`` for the
    validation set.

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
    from ferkit.checkpoint import load_checkpoint
    from ferkit.plots import plot_confusion_matrix, plot_history

    config.validate()
    run_dir = Path(config.out)
    distributed = from_environment()
    if not distributed.is_main:  # only rank 0 prints and writes the run folder
        log = _silent
    if len(train_set) < 2 or len(val_set) == 0:
        raise FerkitError(
            f"need at least 2 training and 1 validation faces, got {len(train_set)} and "
            f"{len(val_set)}"
        )
    if tuple(train_set.class_names) != tuple(val_set.class_names):
        raise FerkitError("training and validation sets have different class lists")
    last_bundle = find_last(run_dir)
    if config.resume and last_bundle is None:
        raise FerkitError(f"{run_dir}: nothing to resume (no complete {LAST}/ checkpoint there)")
    if not config.resume and last_bundle is not None and not config.overwrite:
        raise FerkitError(
            f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    device = setup(distributed, resolve_device(config.device))
    distributed.barrier()  # every rank has checked the folder before rank 0 changes it
    if distributed.is_main:
        if not config.resume:
            for name in (LAST, f"{LAST}.new", f"{LAST}.old"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)

    autocast_dtype = resolve_precision(config.precision, device)
    channels_last = config.channels_last and device.type != "mps"
    torch.manual_seed(config.seed)
    if config.init:
        model = initialise_from(config, train_set.class_names, log)
    else:
        model = create_model(config.arch, num_classes=train_set.num_classes, **config.model_args)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed.enabled and device.type == "cuda":
        # Per-GPU batches are small: batch norm statistics over all GPUs matter there.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, config)
    normalization = dict(DEFAULT_NORMALIZATION)
    ema = None
    if config.ema_decay:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay),
            use_buffers=True,
        )
        ema.module.ferkit_name, ema.module.ferkit_arguments = (
            model.ferkit_name,
            model.ferkit_arguments,
        )
    teachers = load_teachers(config.teacher, train_set.class_names, normalization, device)
    class_weights = None
    if config.class_weighting:
        counts = np.bincount(train_set.labels, minlength=train_set.num_classes).astype(np.float64)
        # Inverse frequency, normalised so the average weight per face stays 1.
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        class_weights = torch.tensor(weights, dtype=torch.float32, device=device)

    # fp16 needs loss scaling so small gradients do not underflow (bf16 and fp32 do not).
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None

    history: list[dict] = []
    best_accuracy, best_epoch, start_epoch = -1.0, 0, 0
    if config.resume:
        state = read_json(last_bundle / "state.json")
        saved, current = dict(state["config"]), config.to_dict()
        # Runs saved before the rename say "seed" for what is now "classic".
        saved["arch"] = canonical_model_name(saved.get("arch", ""))
        changed = [
            key
            for key in current
            if key not in RESUMABLE_CHANGES and saved.get(key) != current[key]
        ]
        if changed:
            details = ", ".join(
                f"{key}={current[key]!r} (run: {saved.get(key)!r})" for key in changed
            )
            raise FerkitError(f"{run_dir}: cannot resume with a different config: {details}")
        loaded, _ = load_checkpoint(last_bundle / "model", device=device)
        model.load_state_dict(loaded.state_dict())
        load_optimizer(optimizer, last_bundle / "optimizer")
        if ema is not None:
            ema_model, _ = load_checkpoint(last_bundle / "ema", device=device)
            ema.module.load_state_dict(ema_model.state_dict())
            ema.n_averaged.fill_(state["ema_updates"])
        if scaler is not None and not load_scaler(scaler, last_bundle):
            log(f"{last_bundle} holds no fp16 gradient scale; it restarts from the initial one")
        history = state["history"]
        best_accuracy, best_epoch = state["best_val_accuracy"], state["best_epoch"]
        start_epoch = state["epoch"]
        log(f"resuming {run_dir} after epoch {start_epoch}/{config.total_epochs}")
    if distributed.is_main:
        write_json(run_dir / "config.json", config.to_dict())
    # DDP averages gradients across ranks; the unwrapped `model` is what gets saved.
    trained = torch.compile(model) if config.compile else model
    if distributed.enabled:
        trained = torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None
        )

    card_base = {
        "parameters": count_parameters(model),
        "training": {
            "data": config.data,
            "train_size": len(train_set),
            "val_size": len(val_set),
            "seed": config.seed,
            "git_commit": git_commit(),
            "config": config.to_dict(),
        },
    }
    train_images = torch.from_numpy(train_set.images)
    train_labels = torch.from_numpy(train_set.labels)
    teacher_probabilities = None
    if teachers and config.distill_mode == "offline":
        began = time.perf_counter()
        teacher_probabilities = offline_teacher_probabilities(
            teachers, train_set.images, config.distill_temperature, normalization,
            config.eval_batch_size, device, autocast_dtype, channels_last,
        )  # fmt: skip
        teachers = []  # their work is done: free the step of their forward passes
        log(f"offline distillation: teacher probabilities for {len(train_images)} faces "
            f"(and mirrors) in {time.perf_counter() - began:.0f} s")  # fmt: skip
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.total_epochs):
            lr = learning_rate_at(
                epoch, config.epochs, config.lr, config.lr_drop, config.schedule,
                config.warmup_epochs, config.min_lr_ratio,
            )  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr
            stats = train_one_epoch(
                trained, train_images, train_labels, optimizer, config, epoch, device,
                autocast_dtype, normalization, class_weights, ema, teachers, distributed, scaler,
                teacher_probabilities,
            )  # fmt: skip
            # With EMA, the averaged weights are the model that is validated and kept.
            evaluated = ema.module if ema is not None else model
            validation = evaluate(
                evaluated, val_set.images, val_set.labels, config.eval_batch_size, device,
                autocast_dtype, normalization, channels_last, config.tta,
            )  # fmt: skip
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": stats["loss"],
                "train_accuracy": stats["accuracy"],
                "val_loss": validation["loss"],
                "val_accuracy": validation["accuracy"],
                "seconds": stats["seconds"],
                "images_per_second": stats["images_per_second"],
            }
            history.append(row)
            improved = validation["accuracy"] > best_accuracy
            card = make_model_card(
                model, train_set.class_names, normalization, epoch=epoch + 1, tta=config.tta,
                **card_base,
            )  # fmt: skip
            if improved:
                best_accuracy, best_epoch = validation["accuracy"], epoch + 1
                best_card = dict(card, best_epoch=best_epoch, val_accuracy=best_accuracy)
                if distributed.is_main:
                    save_checkpoint(evaluated, run_dir / "best", best_card)
            state = {
                "epoch": epoch + 1,
                "best_val_accuracy": best_accuracy,
                "best_epoch": best_epoch,
                "history": history,
                "config": config.to_dict(),
            }
            if ema is not None:
                state["ema_updates"] = int(ema.n_averaged.item())
            if distributed.is_main:
                save_last(
                    run_dir, model, optimizer, card, state, ema.module if ema else None, scaler
                )
                _write_history(run_dir, history)
            log(_summary_line(row, config.total_epochs, improved))
    except KeyboardInterrupt:
        # Only epochs whose checkpoint was saved count (Ctrl-C may land while saving one).
        saved = find_last(run_dir) if distributed.is_main else None
        completed = read_json(saved / "state.json")["epoch"] if saved else 0
        history = history[:completed]
        if distributed.is_main:
            _write_history(run_dir, history)
            if history:
                plot_history(history, run_dir / "history.png", _drop_epochs(config))
        raise TrainingInterrupted(
            f"interrupted during epoch {epoch + 1}; {run_dir} holds epoch {completed} "
            f"(continue with: ferkit train {config.data} --out {run_dir} --resume)"
        ) from None

    if distributed.is_main:
        _write_history(run_dir, history)
        plot_history(history, run_dir / "history.png", _drop_epochs(config))
    distributed.barrier()  # rank 0 has written best before the others read it
    best_model, best_card = load_checkpoint(run_dir / "best", device=device)
    # Final metrics in fp32, the way `ferkit evaluate` and Predictor compute them, so the
    # numbers agree; per-epoch selection above may use bf16 for speed.
    validation = evaluate(
        best_model, val_set.images, val_set.labels, config.eval_batch_size, device,
        None, normalization, tta=config.tta,
    )  # fmt: skip
    metrics = classification_metrics(
        val_set.labels, validation["predictions"], train_set.class_names
    )
    metrics.update(split="validation", best_epoch=best_epoch, loss=validation["loss"])
    if distributed.is_main:
        write_json(run_dir / "metrics.json", metrics)
        plot_confusion_matrix(
            np.array(metrics["confusion_matrix"]),
            train_set.class_names,
            run_dir / "confusion_matrix.png",
            title="validation",
        )
    # The best card carries its final validation metrics, so a model explains itself.
    best_card["metrics"] = {
        "validation_accuracy": metrics["accuracy"],
        "validation_macro_f1": metrics["macro_f1"],
        "per_class_recall": {name: row["recall"] for name, row in metrics["per_class"].items()},
    }
    if distributed.is_main:
        write_json(run_dir / "best.json", best_card)
    distributed.barrier()
    return FitResult(best_model, history, metrics, run_dir, best_epoch, best_card)


def _drop_epochs(config: TrainConfig) -> list[int]:
    """1-based epochs that start a lower-LR phase."""
    return [boundary + 1 for boundary in phase_boundaries(config.epochs)]


def train(config: TrainConfig, log=print) -> FitResult:
    """Load ``config.data``, split it as configured and :func:`fit` — ``ferkit train``'s twin.

    Example:
        >>> result = train(TrainConfig(data="faces.csv", out="runs/demo"))  # doctest: +SKIP
        >>> result.metrics["accuracy"]  # doctest: +SKIP
        0.97
    """
    from ferkit.data import describe_skipped, load_fer2013, split_dataset, write_skipped

    config.validate()
    if not from_environment().is_main:
        log = _silent
    dataset = load_fer2013(config.data, skip_bad_rows=config.skip_bad_rows)
    if dataset.skipped:
        listing = write_skipped(dataset, config.out)
        log(f"{describe_skipped(dataset.skipped)} (all listed in {listing})")
    train_set, val_set = split_dataset(dataset, config.split, config.val_fraction, config.seed)
    log(
        f"data: {dataset.source}: {len(dataset)} faces → {len(train_set)} train, "
        f"{len(val_set)} validation ({config.split} split)"
    )
    try:
        return fit(config, train_set, val_set, log=log)
    finally:
        cleanup(from_environment())
