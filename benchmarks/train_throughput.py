"""Benchmark: training throughput (images/s) of a model, fp32 vs bf16, channels_last on/off.

Usage:
    .venv/bin/python benchmarks/train_throughput.py [--arch classic] [--batch-size 256]
        [--steps 20] [--warmup 3] [--threads N]

Times full training steps (augmentation, forward, backward, optimizer) through
``train_one_epoch`` on random faces, so it measures what ``ferkit train`` does.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from ferkit.models import count_parameters, create_model
from ferkit.models.runtime import cpu_has_fast_bf16, tune_allocator
from ferkit.training.config import TrainConfig
from ferkit.training.epoch import build_optimizer, train_one_epoch


def measure(
    arch: str,
    batch_size: int,
    steps: int,
    warmup: int,
    precision,
    channels_last: bool,
    compile_model: bool = False,
    **kwargs,
):
    torch.manual_seed(0)
    model = create_model(arch, **kwargs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        compiled = torch.compile(model)
        compiled.ferkit_arguments = model.ferkit_arguments
        model = compiled
    config = TrainConfig(
        batch_size=batch_size, channels_last=channels_last, progress=False, epochs=[1]
    )
    optimizer = build_optimizer(model, config)
    images = torch.randint(0, 256, (batch_size * warmup, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, 7, (batch_size * warmup,))
    device = torch.device("cpu")
    options = dict(optimizer=optimizer, config=config, device=device, autocast_dtype=precision)
    train_one_epoch(model, images, labels, epoch=0, **options)
    images = torch.randint(0, 256, (batch_size * steps, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, 7, (batch_size * steps,))
    stats = train_one_epoch(model, images, labels, epoch=1, **options)
    return stats["images_per_second"], count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="classic")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--bf16-only", action="store_true", help="only bf16 + channels_last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--default-allocator", action="store_true", help="leave glibc's malloc as it is"
    )
    arguments = parser.parse_args()
    model_args = {
        key: json.loads(value)
        for key, _, value in (item.partition("=") for item in arguments.model_arg)
    }
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    if not arguments.default_allocator:
        tune_allocator()  # as fit does on the CPU
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, native bf16: {cpu_has_fast_bf16()}"
    )
    print(f"arch {arguments.arch}, batch {arguments.batch_size}, {arguments.steps} steps timed")
    print(f"{'precision':<10}{'channels_last':>15}{'img/s':>10}")
    results = {}
    settings = [("fp32", None, False), ("fp32", None, True), ("bf16", torch.bfloat16, False),
                ("bf16", torch.bfloat16, True)]  # fmt: skip
    if arguments.bf16_only:
        settings = settings[-1:]
    for precision_name, precision, channels_last in settings:
        speed, parameters = measure(
            arguments.arch, arguments.batch_size, arguments.steps, arguments.warmup,
            precision, channels_last, arguments.compile, **model_args,
        )  # fmt: skip
        results[(precision_name, channels_last)] = speed
        print(f"{precision_name:<10}{str(channels_last):>15}{speed:>10.0f}")
    if arguments.bf16_only:
        print(f"parameters {parameters:,}")
        return
    baseline = results[("fp32", False)]
    best = max(results, key=results.get)
    print(
        f"parameters {parameters:,}; best {best[0]} channels_last={best[1]}: "
        f"{results[best] / baseline:.2f}x over fp32 NCHW"
    )


if __name__ == "__main__":
    main()
