"""Data-parallel training across processes with PyTorch's own engine (DDP via ``torchrun``).

``torchrun --nproc_per_node=N -m ferkit train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` then joins the process group (``nccl`` on CUDA, ``gloo`` on CPU)
with a timeout, so a dead rank makes the others fail instead of hanging.

Batch-size rule: ``--batch-size`` is the *global* (effective) batch. Each of the N processes
trains on ``batch_size / N`` faces per step and the gradients are averaged, so one step equals
one single-process step on the whole batch and the learning rate needs no scaling: a run gives
the same schedule and comparable accuracy whatever N is.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from ferkit.utils.errors import FerkitError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder, prints and shows progress bars."""
        return self.rank == 0

    def all_reduce_sum(self, values: list[float], device) -> list[float]:
        """Sum ``values`` over all ranks (identity when not distributed)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.enabled:
            torch.distributed.barrier()

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's permutation (padded so all ranks get equally many).

        Example:
            >>> Distributed(1, 2).shard(torch.arange(5)).tolist()
            [1, 3, 0]
        """
        if not self.enabled:
            return order
        padding = (-len(order)) % self.world_size
        if padding:  # like DistributedSampler: repeat the first faces to even out the shards
            order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size]


def from_environment() -> Distributed:
    """The job layout from torchrun's environment variables.

    Example:
        >>> from_environment().world_size >= 1
        True
    """
    return Distributed(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def setup(distributed: Distributed, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if not distributed.enabled:
        return device
    if torch.distributed.is_initialized():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise FerkitError(f"distributed training runs on cuda or cpu, not {device.type}")
    timeout = datetime.timedelta(seconds=float(os.environ.get("FERKIT_DIST_TIMEOUT", 600)))
    torch.distributed.init_process_group(backend=backend, timeout=timeout)
    return device


def cleanup(distributed: Distributed) -> None:
    """Leave the process group."""
    if distributed.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
