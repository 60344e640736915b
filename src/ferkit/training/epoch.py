"""One epoch of training and one evaluation pass: ``train_one_epoch`` and ``evaluate``.

Laid out like torchvision's reference scripts: the epoch is a loop of batch → forward → loss →
step; the loss is a :class:`Criterion`; augmentation lives in :mod:`ferkit.training.augment`.

Determinism: every epoch draws its shuffling, augmentation and dropout randomness from
generators seeded by (run seed, epoch), so a run resumed from ``last`` repeats exactly what an
uninterrupted run would have done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as functional
from tqdm import tqdm  # plain text bars: no ipywidgets needed in notebooks

from ferkit.data.preprocessing import normalize_batch
from ferkit.models.runtime import autocast, batched_logits, prepare_batch
from ferkit.training.augment import mix_batch, random_affine, random_erasing
from ferkit.training.config import TrainConfig
from ferkit.training.distributed import Distributed


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
        >>> from ferkit.models import create_model
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


@dataclass
class Criterion:
    """The training loss: cross-entropy mixed with knowledge distillation from teachers.

    ``loss = (1 - w) * CE(logits, targets) + w * T² * KL(teacher ‖ student)`` at temperature
    ``T``, where the distillation term is present when teacher probabilities are (online: from
    ``teachers`` run on the batch; offline: rows of a precomputed table).

    Example:
        >>> criterion = Criterion(label_smoothing=0.1)
        >>> float(criterion(torch.zeros(2, 7), torch.tensor([0, 3]))) > 0
        True
    """

    class_weights: torch.Tensor | None = None
    label_smoothing: float = 0.0
    teachers: list[torch.nn.Module] = field(default_factory=list)
    distill_weight: float = 0.5
    temperature: float = 2.0

    @classmethod
    def from_config(cls, config: TrainConfig, class_weights=None, teachers=None) -> Criterion:
        """The criterion ``config`` describes (weights and teachers are built by the caller)."""
        return cls(
            class_weights=class_weights,
            label_smoothing=config.label_smoothing,
            teachers=list(teachers or []),
            distill_weight=config.distill_weight,
            temperature=config.distill_temperature,
        )

    @torch.no_grad()
    def teacher_probabilities(self, inputs: torch.Tensor, device, autocast_dtype=None):
        """The online teachers' averaged softened probabilities for a batch (None: no teachers)."""
        if not self.teachers:
            return None
        with autocast(device, autocast_dtype):
            return torch.stack(
                [torch.softmax(teacher(inputs).float() / self.temperature, dim=1)
                 for teacher in self.teachers]
            ).mean(dim=0)  # fmt: skip

    def __call__(self, logits, targets, teacher_probabilities=None) -> torch.Tensor:
        """The loss of ``logits`` for class indices or class probabilities ``targets``."""
        loss = functional.cross_entropy(
            logits.float(),
            targets,
            weight=self.class_weights,
            label_smoothing=self.label_smoothing,
        )
        if teacher_probabilities is None:
            return loss
        distillation = functional.kl_div(
            functional.log_softmax(logits.float() / self.temperature, dim=1),
            teacher_probabilities,
            reduction="batchmean",
        ) * (self.temperature**2)  # keeps gradient scale independent of the temperature
        return (1.0 - self.distill_weight) * loss + self.distill_weight * distillation


def _epoch_batches(count: int, config: TrainConfig, epoch: int, distributed: Distributed):
    """This rank's shuffled batches of face indices, and the epoch's augmentation generator."""
    generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
    torch.manual_seed(epoch_seed(config.seed, epoch) + 1 + distributed.rank)  # dropout
    # The same permutation on every rank, then each rank takes its shard of it.
    order = distributed.shard(torch.randperm(count, generator=generator))
    if distributed.enabled:  # each rank draws its own augmentations
        generator.manual_seed(epoch_seed(config.seed, epoch) + 1_000_003 * distributed.rank)
    # --batch-size is the global batch: each of the N ranks takes 1/N of it.
    batch_size = max(1, config.batch_size // distributed.world_size)
    starts = list(range(0, len(order), batch_size))
    # A last batch of one face would break batch norm's training statistics: fold it in.
    if len(starts) > 1 and len(order) - starts[-1] < 2:
        starts.pop()
    ends = starts[1:] + [len(order)]
    return [order[first:last] for first, last in zip(starts, ends)], generator


def augment_batch(inputs, targets, teacher_batch, config: TrainConfig, generator, num_classes):
    """Augment a normalised batch as ``config`` says; returns (inputs, loss targets, teacher).

    ``targets`` are class indices (N,) or class probabilities (N, classes; FER+'s votes). The
    loss targets are those, or class probabilities after MixUp/CutMix, which mix the teacher's
    probabilities (offline distillation) with the same partners.
    """
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
    if not (config.mixup or config.cutmix):
        return inputs, targets, teacher_batch
    soft = targets if targets.dim() == 2 else functional.one_hot(targets, num_classes).float()
    if teacher_batch is not None:
        soft = torch.cat([soft, teacher_batch], dim=1)
    inputs, soft = mix_batch(inputs, soft, generator, config.mixup, config.cutmix)
    teacher_batch = soft[:, num_classes:] if teacher_batch is not None else None
    return inputs, soft[:, :num_classes], teacher_batch


def train_one_epoch(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    normalization: dict | None = None,
    criterion: Criterion | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    scaler: torch.amp.GradScaler | None = None,
    distributed: Distributed | None = None,
    teacher_probabilities: torch.Tensor | None = None,
    soft_labels: torch.Tensor | None = None,
) -> dict:
    """Train one pass over ``images`` (uint8 N×H×W) in shuffled, augmented batches.

    ``criterion`` defaults to ``config``'s (no class weights, no teachers); ``ema`` is updated
    after every optimizer step; fp16's ``scaler`` scales the loss. Offline distillation passes
    ``teacher_probabilities``: one softened distribution per face of ``images`` (see
    :func:`ferkit.training.distill.offline_teacher_probabilities`). ``soft_labels`` (N x
    classes, rows summing to 1; FER+'s vote distributions) replace the one-hot targets in the
    loss; accuracy is still counted against ``labels``.

    Returns:
        ``{"loss", "accuracy", "seconds", "images_per_second"}`` over the epoch (all ranks).

    Example:
        >>> from ferkit.models import create_model
        >>> config = TrainConfig(batch_size=4, progress=False)
        >>> model = create_model("classic", channels=[4, 4, 4])
        >>> images, labels = torch.zeros(8, 48, 48, dtype=torch.uint8), torch.zeros(8).long()
        >>> stats = train_one_epoch(model, images, labels, optimizer=build_optimizer(model, config),
        ...                         config=config, epoch=0, device=torch.device("cpu"))
        >>> sorted(stats)
        ['accuracy', 'images_per_second', 'loss', 'seconds']
    """
    model.train()
    core = getattr(model, "module", model)  # the model inside a DDP wrapper
    num_classes = int(getattr(core, "ferkit_arguments", {}).get("num_classes", 7))
    distributed = distributed or Distributed()
    criterion = criterion or Criterion.from_config(config)
    batches, generator = _epoch_batches(len(labels), config, epoch, distributed)
    meter = _EpochMeter(sum(map(len, batches)), epoch, config, distributed)
    for indices in batches:
        teacher_batch = None if teacher_probabilities is None else teacher_probabilities[indices]
        targets = labels[indices] if soft_labels is None else soft_labels[indices]
        inputs, loss_targets, teacher_batch = augment_batch(
            normalize_batch(images[indices], normalization), targets, teacher_batch,
            config, generator, num_classes,
        )  # fmt: skip
        inputs = prepare_batch(inputs, device, config.channels_last)
        with autocast(device, autocast_dtype):
            logits = model(inputs)
        if teacher_batch is None:
            teacher_batch = criterion.teacher_probabilities(inputs, device, autocast_dtype)
        else:
            teacher_batch = teacher_batch.to(device, non_blocking=True)
        loss = criterion(logits, loss_targets.to(device, non_blocking=True), teacher_batch)
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
        meter.update(loss, logits, labels[indices].to(device, non_blocking=True))
    return meter.finish(device)


class _EpochMeter:
    """Loss and accuracy over an epoch, with a progress bar on rank 0."""

    def __init__(self, total: int, epoch: int, config: TrainConfig, distributed: Distributed):
        self.distributed = distributed
        self.loss, self.correct, self.seen = 0.0, 0, 0
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{config.total_epochs}",
            unit="img",
            leave=False,
            disable=not config.progress or not distributed.is_main,
            dynamic_ncols=True,
        )

    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        count = len(targets)
        self.loss += loss.item() * count
        self.correct += (logits.argmax(dim=1) == targets).sum().item()
        self.seen += count
        self.bar.update(count)
        self.bar.set_postfix(
            loss=f"{self.loss / self.seen:.3f}", acc=f"{self.correct / self.seen:.1%}"
        )

    def finish(self, device) -> dict:
        self.bar.close()
        seconds = time.perf_counter() - self.start
        # Every rank reports the epoch over all ranks' faces.
        loss, correct, seen = self.distributed.all_reduce_sum(
            [self.loss, self.correct, self.seen], device
        )
        return {
            "loss": loss / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "seconds": seconds,
            "images_per_second": seen / max(seconds, 1e-9),
        }


def evaluate(
    model: torch.nn.Module,
    images,
    labels=None,
    *,
    batch_size: int = 512,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    normalization: dict | None = None,
    channels_last: bool = False,
    tta: str = "none",
) -> dict:
    """Class probabilities (and loss/accuracy when ``labels`` are given) for uint8 faces.

    Returns:
        ``{"logits", "probabilities": float32 (N, classes), "predictions": (N,)}`` plus
        ``"loss"`` and ``"accuracy"`` with labels.

    Example:
        >>> from ferkit.models import create_model
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
        "logits": logits.numpy(),
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
