"""Benchmark: what one training step costs, phase by phase (augmentation, layout, forward, ...).

Usage:
    .venv/bin/python benchmarks/train_step_profile.py [--arch seed] [--batch-size 256]
        [--steps 10] [--warmup 3] [--threads 1] [--precision fp32 bf16]

Runs the steps ``train_one_epoch`` runs (batch gather and normalisation, the affine
augmentation, channels_last layout, forward under autocast, loss, backward, optimizer step,
the ``.item()`` reads) on random faces and times each phase in CPU seconds of this process
(``time.process_time``) as well as wall seconds. CPU seconds count only this process's work, so
the split stays meaningful on a machine shared with other jobs, where wall time is inflated by
waiting; with ``--threads 1`` CPU time is the work itself.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
import torch.nn.functional as functional

from ferkit.data.preprocessing import normalize_batch
from ferkit.models import create_model
from ferkit.models.runtime import autocast, cpu_has_fast_bf16, prepare_batch, tune_allocator
from ferkit.training.augment import random_affine
from ferkit.training.config import TrainConfig
from ferkit.training.loop import build_optimizer

PHASES = ("gather+normalize", "augment", "channels_last", "forward", "loss", "backward",
          "optimizer", "item() reads")  # fmt: skip


class PhaseClock:
    """CPU and wall seconds per named phase, summed over the counted steps."""

    def __init__(self):
        self.cpu, self.wall = defaultdict(float), defaultdict(float)
        self.last, self.counting = (0.0, 0.0), False

    def start(self, counting: bool) -> None:
        self.last, self.counting = (time.process_time(), time.perf_counter()), counting

    def mark(self, name: str) -> None:
        now = (time.process_time(), time.perf_counter())
        if self.counting:
            self.cpu[name] += now[0] - self.last[0]
            self.wall[name] += now[1] - self.last[1]
        self.last = now


def profile(arch: str, batch_size: int, steps: int, warmup: int, dtype) -> dict:
    torch.manual_seed(0)
    model = create_model(arch).to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, TrainConfig())
    images = torch.randint(0, 256, (batch_size * 4, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, 7, (batch_size * 4,))
    generator = torch.Generator().manual_seed(0)
    clock = PhaseClock()
    device = torch.device("cpu")
    for step in range(warmup + steps):
        clock.start(counting=step >= warmup)
        mark = clock.mark
        indices = torch.randperm(len(labels), generator=generator)[:batch_size]
        inputs = normalize_batch(images[indices], None)
        mark("gather+normalize")
        inputs = random_affine(inputs, generator)
        mark("augment")
        inputs = prepare_batch(inputs, device, True)
        mark("channels_last")
        with autocast(device, dtype):
            logits = model(inputs)
        mark("forward")
        loss = functional.cross_entropy(logits.float(), labels[indices])
        mark("loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        optimizer.step()
        mark("optimizer")
        loss.item(), (logits.argmax(dim=1) == labels[indices]).sum().item()
        mark("item() reads")
    return {"cpu": dict(clock.cpu), "wall": dict(clock.wall), "images": steps * batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="seed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    tune_allocator()  # as fit does on the CPU
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"{arguments.arch}, batch {arguments.batch_size}, {arguments.steps} steps, "
          f"{arguments.threads} thread(s), torch {torch.__version__}, CPU capability "
          f"{capability}, native bf16: {cpu_has_fast_bf16()}")  # fmt: skip
    for precision in arguments.precision:
        dtype = torch.bfloat16 if precision == "bf16" else None
        result = profile(arguments.arch, arguments.batch_size, arguments.steps,
                         arguments.warmup, dtype)  # fmt: skip
        total_cpu, total_wall = sum(result["cpu"].values()), sum(result["wall"].values())
        print(f"\n{precision}: {result['images'] / total_cpu:.0f} img per CPU-second, "
              f"{result['images'] / total_wall:.0f} img/s wall")  # fmt: skip
        print(f"{'phase':<20}{'CPU ms/step':>12}{'share':>8}{'wall ms/step':>14}")
        for phase in PHASES:
            cpu_ms = result["cpu"].get(phase, 0.0) / arguments.steps * 1000
            wall_ms = result["wall"].get(phase, 0.0) / arguments.steps * 1000
            share = result["cpu"].get(phase, 0.0) / total_cpu
            print(f"{phase:<20}{cpu_ms:>12.1f}{share:>8.1%}{wall_ms:>14.1f}")


if __name__ == "__main__":
    main()
