"""Distributed data-parallel training: 2 processes with gloo on CPU, through torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ferkit.data import write_synthetic_csv
from ferkit.training.distributed import Distributed

MODEL = [
    "--model-arg", "channels=[16,32,32]",
    "--model-arg", "block_dropouts=[0.1,0.1,0.1]",
    "--model-arg", "dense_dropouts=[0.2,0.1]",
]  # fmt: skip


def test_shards_cover_every_face_once_per_epoch():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shards = [Distributed(rank, 3).shard(order) for rank in range(3)]
    assert [len(shard) for shard in shards] == [4, 4, 4]  # padded to equal length
    assert set(torch.cat(shards).tolist()) == set(range(10))
    assert Distributed().shard(order) is order


def torchrun(*arguments, processes: int, environment):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "ferkit", *map(str, arguments),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    data = write_synthetic_csv(folder / "faces.csv", n=1400, seed=5)
    environment = dict(os.environ, FERKIT_CACHE_DIR=str(folder / "cache"), OMP_NUM_THREADS="1")
    return folder, data, environment


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(setting):
    folder, data, environment = setting
    common = ["train", data, "--epochs", 6, 2, "--batch-size", 32, "--no-progress", *MODEL]
    two = torchrun(*common, "--out", folder / "two", processes=2, environment=environment)
    assert two.returncode == 0, two.stderr[-3000:]
    one = torchrun(*common, "--out", folder / "one", processes=1, environment=environment)
    assert one.returncode == 0, one.stderr[-3000:]
    # rank 0 alone reports and writes: one summary, one run folder
    assert two.stdout.count("best epoch") == 1 and two.stdout.count("epoch   1/8") == 1
    accuracies = {}
    for name in ("one", "two"):
        metrics = json.loads((folder / name / "metrics.json").read_text())
        history = json.loads((folder / name / "history.json").read_text())
        assert len(history) == 8
        # the training loss falls in both: same curve shape
        assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
        accuracies[name] = metrics["accuracy"]
    assert min(accuracies.values()) >= 0.9, accuracies
    assert abs(accuracies["one"] - accuracies["two"]) <= 0.06, accuracies


@pytest.mark.slow
def test_two_processes_resume_from_last(setting):
    folder, data, environment = setting
    common = ["train", data, "--out", folder / "resumed", "--batch-size", 32, "--no-progress",
              *MODEL]  # fmt: skip
    first = torchrun(*common, "--epochs", 2, processes=2, environment=environment)
    assert first.returncode == 0, first.stderr[-3000:]
    more = torchrun(*common, "--epochs", 3, "--resume", processes=2, environment=environment)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resuming" in more.stdout and more.stdout.count("resuming") == 1
    history = json.loads((folder / "resumed" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
