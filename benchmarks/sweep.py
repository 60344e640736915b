"""Run many ``ferkit train`` jobs side by side and tabulate their PublicTest results.

Usage:
    python benchmarks/sweep.py JOBS.json --data CSV --runs DIR [--workers N] [--threads T]
        [--deadline-minutes M] [--summary FILE]

``JOBS.json`` is a list of ``{"name": ..., "config": RECIPE, "args": [ferkit train options]}`` in
priority order (``config``, optional, is a recipe file such as ``recipes/fer2013-default.json``;
``args`` override it); each job trains ``ferkit train CSV --out DIR/NAME --split usage [--config
RECIPE] ARGS --no-progress`` and logs to ``DIR/NAME.log``. ``--workers`` jobs run at once (one
per core on a CPU machine, several per GPU on an accelerator, where each process adds CUDA
streams the GPU can interleave). A job
that has not started when ``--deadline-minutes`` have passed is skipped; one still running at
the deadline is stopped and reported as unfinished with its last epoch (its ``last/`` checkpoint
resumes with ``ferkit train ... --resume``).

Prints one row per job (best PublicTest accuracy with the job's TTA, macro-F1, best epoch,
minutes, training img/s, per-class recall) and writes them as JSON to ``--summary``. The
ablation and model rows of ``docs/accuracy.md`` come from this table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def job_command(
    data: str, run_dir: Path, arguments: list[str], recipe: str | None = None
) -> list[str]:
    """The ``ferkit train`` command line of one job (its ``args`` override its recipe)."""
    config = ["--config", recipe] if recipe else []
    return [sys.executable, "-m", "ferkit", "train", data, "--out", str(run_dir),
            "--split", "usage", *config, *arguments, "--no-progress"]  # fmt: skip


def job_result(name: str, run_dir: Path, arguments: list[str], seconds: float, status: str):
    """What a job's run folder says about it (empty figures when it has none)."""
    row = {"name": name, "args": arguments, "status": status, "minutes": round(seconds / 60, 2)}
    history_file = run_dir / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    if isinstance(history, dict):  # tolerate {"history": [...]} layouts
        history = history.get("history", [])
    row["epochs_done"] = len(history)
    if history:
        row["best_epoch_val_accuracy"] = max(entry["val_accuracy"] for entry in history)
        speeds = [entry["images_per_second"] for entry in history[1:] or history]
        row["train_images_per_second"] = round(sum(speeds) / len(speeds), 1)
        row["final_train_accuracy"] = history[-1]["train_accuracy"]
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        row.update(
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            best_epoch=metrics.get("best_epoch"),
            recall={key: round(value["recall"], 4) for key, value in metrics["per_class"].items()},
        )
    return row


def run_jobs(jobs, data, runs, workers, threads, deadline_seconds):
    """Run ``jobs`` with ``workers`` at a time until done or past the deadline."""
    runs.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.monotonic()
    pending = list(jobs)
    running = {}  # name -> (process, started, job, log file)
    results = []
    while pending or running:
        now = time.monotonic()
        while pending and len(running) < workers and now - start < deadline_seconds:
            job = pending.pop(0)
            run_dir = runs / job["name"]
            # A resumed job (--resume in its args) appends to the log of its first part.
            mode = "a" if "--resume" in job["args"] else "w"
            log_file = open(runs / f"{job['name']}.log", mode)
            process = subprocess.Popen(
                job_command(data, run_dir, job["args"], job.get("config")), stdout=log_file,
                stderr=subprocess.STDOUT, env=environment, start_new_session=True,
            )  # fmt: skip
            running[job["name"]] = (process, now, job, log_file)
            print(f"[{now - start:6.0f} s] started {job['name']}", flush=True)
        if now - start >= deadline_seconds:
            for job in pending:
                skipped = job_result(job["name"], runs / job["name"], job["args"], 0, "skipped")
                results.append(skipped)
            pending = []
        for name, (process, started, job, log_file) in list(running.items()):
            code = process.poll()
            overdue = code is None and now - start >= deadline_seconds
            if overdue:
                os.killpg(process.pid, signal.SIGINT)  # ferkit saves last/ and exits
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            if code is None and not overdue:
                continue
            log_file.close()
            status = "done" if code == 0 else ("stopped at deadline" if overdue else f"exit {code}")
            row = job_result(name, runs / name, job["args"], now - started, status)
            results.append(row)
            del running[name]
            print(f"[{now - start:6.0f} s] {name}: {status}, epochs {row['epochs_done']}, "
                  f"accuracy {row.get('accuracy', float('nan')):.4f}", flush=True)  # fmt: skip
        time.sleep(1.0)
    order = {job["name"]: index for index, job in enumerate(jobs)}
    return sorted(results, key=lambda row: order[row["name"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", help="JSON list of {name, args}")
    parser.add_argument("--data", required=True, help="FER2013 CSV with a Usage column")
    parser.add_argument("--runs", required=True, help="folder for the run folders and logs")
    parser.add_argument("--workers", type=int, default=1, help="jobs at once (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per job (default 2)")
    parser.add_argument("--deadline-minutes", type=float, default=float("inf"))
    parser.add_argument("--summary", help="write the result rows here as JSON")
    arguments = parser.parse_args()
    jobs = json.loads(Path(arguments.jobs).read_text())
    names = [job["name"] for job in jobs]
    if len(set(names)) != len(names):
        parser.error(f"{arguments.jobs}: job names repeat: {names}")
    results = run_jobs(
        jobs, arguments.data, Path(arguments.runs), arguments.workers, arguments.threads,
        arguments.deadline_minutes * 60,
    )  # fmt: skip
    print(f"\n{'job':<28} {'status':<20} {'ep':>4} {'acc':>7} {'F1':>6} {'best':>4} "
          f"{'min':>6} {'img/s':>7}  recall")  # fmt: skip
    for row in results:
        recall = " ".join(f"{value:.2f}" for value in row.get("recall", {}).values())
        accuracy, macro_f1 = row.get("accuracy", float("nan")), row.get("macro_f1", float("nan"))
        print(f"{row['name']:<28} {row['status']:<20} {row['epochs_done']:>4} "
              f"{accuracy:>7.4f} {macro_f1:>6.3f} "
              f"{row.get('best_epoch') or 0:>4} {row['minutes']:>6.1f} "
              f"{row.get('train_images_per_second', 0):>7.0f}  {recall}")  # fmt: skip
    if arguments.summary:
        Path(arguments.summary).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
