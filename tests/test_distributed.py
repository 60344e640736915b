"""Distributed data-parallel training: 2 processes with gloo on CPU, through torchrun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ferkit.data import write_synthetic_csv
from ferkit.training.distributed import Distributed
from ferkit.training.state import find_last

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


def torchrun_command(*arguments, processes: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "ferkit", *map(str, arguments),
    ]  # fmt: skip


def torchrun(*arguments, processes: int, environment):
    command = torchrun_command(*arguments, processes=processes)
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


def child_processes(parent: int) -> list[int]:
    """Process ids whose parent is ``parent``, from /proc (Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces: the fields after its ")" are safe.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def environment_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with (torchrun gives each worker its ``RANK``)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


#: FERKIT_DIST_TIMEOUT for the lost-rank tests: long enough for start-up on a busy machine,
#: short enough that a survivor waiting on a hung rank gives up within the test's patience.
SHORT_TIMEOUT = 15


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    ("rank_one", "agent"), [("killed", "watching"), ("killed", "frozen"), ("stopped", "frozen")]
)
def test_a_lost_rank_fails_the_job_instead_of_hanging(setting, tmp_path, rank_one, agent):
    """Rank 1 is lost mid-training: the job must end with an error in bounded time, not hang.

    - killed, agent watching: torchrun's agent notices the dead worker and stops the job.
    - killed, agent frozen (SIGSTOP, like a rank whose agent runs on another machine): rank 0
      fails by itself, its next collective erroring on the closed connection.
    - stopped (a hung rank that is still alive), agent frozen: rank 0 gives up after the
      process-group timeout (``FERKIT_DIST_TIMEOUT``) instead of waiting forever.
    """
    _, data, environment = setting
    run_dir = tmp_path / "run"
    environment = dict(environment, FERKIT_DIST_TIMEOUT=str(SHORT_TIMEOUT), PYTHONUNBUFFERED="1")
    command = torchrun_command(
        "train", data, "--out", run_dir, "--epochs", 500, "--batch-size", 64, "--no-progress",
        "--model-arg", "channels=[4,8,8]", "--model-arg", "dense_units=[16,8]",
        processes=2,
    )  # fmt: skip
    log = tmp_path / "torchrun.log"
    with open(log, "w") as output:
        # Own session: whatever happens, the finally clause can stop torchrun and its agent.
        job = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True,
        )  # fmt: skip
    workers: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 180
        while find_last(run_dir) is None:  # rank 0 saved epoch 1: both ranks are training
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        for pid in child_processes(job.pid):
            rank = environment_of(pid).get("RANK")
            if rank is not None:
                workers[rank] = pid
        assert sorted(workers) == ["0", "1"], workers

        if agent == "frozen":
            os.kill(job.pid, signal.SIGSTOP)
        os.kill(workers["1"], signal.SIGKILL if rank_one == "killed" else signal.SIGSTOP)
        lost_at = time.monotonic()
        if agent == "frozen":
            while is_running(workers["0"]) and time.monotonic() - lost_at < 120:
                time.sleep(0.1)
            survivor_seconds = time.monotonic() - lost_at
            assert not is_running(workers["0"]), f"rank 0 hangs after rank 1 was {rank_one}"
            print(f"rank 0 ended {survivor_seconds:.1f} s after rank 1 was {rank_one}")
            if rank_one == "stopped":
                # It was the timeout that ended the wait (less than it if already waiting).
                assert SHORT_TIMEOUT - 5 <= survivor_seconds <= SHORT_TIMEOUT + 30
                os.kill(workers["1"], signal.SIGKILL)  # as an operator would end a hung rank
            os.kill(job.pid, signal.SIGCONT)  # the agent now collects both workers' ends
        try:
            exit_code = job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"torchrun still running 120 s after rank 1 was {rank_one}:\n"
                        f"{log.read_text()[-3000:]}")  # fmt: skip
        seconds = time.monotonic() - lost_at
        print(f"torchrun exited with {exit_code} {seconds:.1f} s after rank 1 was {rank_one}")
        assert exit_code != 0
        assert seconds < SHORT_TIMEOUT + 45, seconds
        # The surviving rank ended with the job, not left behind training on its own.
        survivor_deadline = time.monotonic() + 10
        while is_running(workers["0"]) and time.monotonic() < survivor_deadline:
            time.sleep(0.1)
        assert not is_running(workers["0"]), "rank 0 outlived torchrun"
        text = log.read_text()
        # torchrun's failure report names the killed rank; a hung rank shows as rank 0's timeout.
        assert f"Signal 9 (SIGKILL) received by PID {workers['1']}" in text, text[-3000:]
        if rank_one == "stopped":
            # Gloo words its timeout two ways, by the operation that was waiting: "Timed out
            # waiting ... for recv" or, when the timeout closed the connection first, "Application
            # timeout caused pair closure". Either is the process-group timeout ending the wait.
            assert re.search(r"Timed out|Application timeout", text), text[-3000:]
    finally:
        # Never leave processes behind, even when an assertion above failed.
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        for pid in workers.values():
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
