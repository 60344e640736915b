"""Resumable training state: :class:`TrainState` and the run folder's ``last/`` bundle.

The bundle holds everything a resumed run needs to repeat what an uninterrupted run would have
done: the model (``model.safetensors`` + card), the EMA weights (``ema``), the optimizer
(``optimizer``), fp16's gradient scaler (``scaler.json``) and ``state.json`` (epochs done,
best epoch, history, config). Random number streams need no saving: each epoch seeds its own
from (run seed, epoch) (:func:`ferkit.training.epoch.epoch_seed`). No pickles: tensors are
safetensors, the rest JSON.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ferkit.models.checkpoint import (
    load_checkpoint,
    load_optimizer,
    save_checkpoint,
    save_optimizer,
)
from ferkit.training.config import TrainConfig
from ferkit.utils.choices import canonical_model_name
from ferkit.utils.errors import FerkitError
from ferkit.utils.io import read_json, write_json

LAST = "last"
SCALER = "scaler.json"

#: Config fields that may change when a run is resumed (they do not change what is learned,
#: or, for ``epochs``, extend the schedule); every other field must match the saved run.
RESUMABLE_CHANGES = frozenset(
    {"resume", "overwrite", "progress", "device", "precision", "channels_last",
     "eval_batch_size", "epochs", "compile"}
)  # fmt: skip


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers, updated per step.

    Example:
        >>> from ferkit.models import create_model
        >>> make_ema(create_model("classic", channels=[4, 4, 4]), 0.999).module.ferkit_name
        'classic'
    """
    ema = torch.optim.swa_utils.AveragedModel(
        model,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
        use_buffers=True,
    )
    ema.module.ferkit_name, ema.module.ferkit_arguments = model.ferkit_name, model.ferkit_arguments
    return ema


@dataclass
class TrainState:
    """What changes as a run trains, and what ``--resume`` restores.

    Attributes:
        model: the unwrapped model (what is saved; training may run a compiled/DDP wrapper).
        optimizer: its optimizer.
        ema: the moving average of its weights, or None.
        scaler: fp16's gradient scaler, or None.
        epoch: epochs finished.
        history: one row per finished epoch.
        best_accuracy: the best validation accuracy so far (-1 before the first epoch).
        best_epoch: the 1-based epoch that reached it.

    Example:
        >>> from ferkit.models import create_model
        >>> model = create_model("classic", channels=[4, 4, 4])
        >>> state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1))
        >>> state.epoch, state.selected is model
        (0, True)
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_epoch: int = 0

    @property
    def selected(self) -> torch.nn.Module:
        """The model that is validated and kept: the EMA weights when there are any."""
        return self.ema.module if self.ema is not None else self.model

    def record(self, row: dict) -> bool:
        """Append a finished epoch's history row; True when it is the best so far."""
        self.history.append(row)
        self.epoch = row["epoch"]
        if row["val_accuracy"] <= self.best_accuracy:
            return False
        self.best_accuracy, self.best_epoch = row["val_accuracy"], row["epoch"]
        return True

    def save(self, run_dir: Path, card: dict, config: TrainConfig) -> Path:
        """Write the ``last`` bundle of ``run_dir`` (see :func:`save_last`)."""
        state = {
            "epoch": self.epoch,
            "best_val_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "config": config.to_dict(),
        }
        if self.ema is not None:
            state["ema_updates"] = int(self.ema.n_averaged.item())
        ema_model = self.ema.module if self.ema is not None else None
        return save_last(run_dir, self.model, self.optimizer, card, state, ema_model, self.scaler)

    def load(self, bundle: Path, config: TrainConfig, device, log=print) -> None:
        """Restore a ``last`` bundle into this state, after checking ``config`` may resume it.

        Raises:
            FerkitError: naming the config fields that differ from the saved run's.
        """
        saved = read_json(bundle / "state.json")
        check_resumable(config, saved["config"], bundle.parent)
        loaded, _ = load_checkpoint(bundle / "model", device=device)
        self.model.load_state_dict(loaded.state_dict())
        load_optimizer(self.optimizer, bundle / "optimizer")
        if self.ema is not None:
            ema_model, _ = load_checkpoint(bundle / "ema", device=device)
            self.ema.module.load_state_dict(ema_model.state_dict())
            self.ema.n_averaged.fill_(saved["ema_updates"])
        if self.scaler is not None and not load_scaler(self.scaler, bundle):
            log(f"{bundle} holds no fp16 gradient scale; it restarts from the initial one")
        self.history = saved["history"]
        self.best_accuracy, self.best_epoch = saved["best_val_accuracy"], saved["best_epoch"]
        self.epoch = saved["epoch"]


def check_resumable(config: TrainConfig, saved: dict, run_dir: Path) -> None:
    """Refuse to resume a run with a config that changes what it learns.

    Raises:
        FerkitError: naming each changed field with its new and saved values.

    Example:
        >>> check_resumable(TrainConfig(lr=0.1), TrainConfig(lr=0.2).to_dict(), Path("run"))
        Traceback (most recent call last):
        ferkit.utils.errors.FerkitError: run: cannot resume with a different config: lr=0.1 ...
    """
    # A field added after the run was saved is absent from its config: the run had its default.
    saved = {**TrainConfig().to_dict(), **saved}
    # Runs saved before the rename say "seed" for what is now "classic".
    saved["arch"] = canonical_model_name(saved["arch"])
    current = config.to_dict()
    changed = [
        key for key in current if key not in RESUMABLE_CHANGES and saved.get(key) != current[key]
    ]
    if changed:
        details = ", ".join(f"{key}={current[key]!r} (run: {saved.get(key)!r})" for key in changed)
        raise FerkitError(f"{run_dir}: cannot resume with a different config: {details}")


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
    run_dir = Path(run_dir)
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
        state = Path(run_dir) / name / "state.json"
        if state.is_file():
            try:
                complete.append((read_json(state)["epoch"], Path(run_dir) / name))
            except (ValueError, KeyError, OSError):
                continue  # a damaged bundle is not a resume point
    return max(complete)[1] if complete else None
