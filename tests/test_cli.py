"""End-to-end tests of the ``ferkit`` CLI at tiny sizes: the real commands, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY_MODEL_ARGS = ["--model-arg", "channels=[4,8,8]", "--model-arg", "dense_units=[16,8]"]


def run_ferkit(*arguments, environment, check=True, timeout=240):
    completed = subprocess.run(
        [sys.executable, "-m", "ferkit", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"ferkit {' '.join(map(str, arguments))} exited {completed.returncode}\n"
            f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
        )
    return completed


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    values = dict(os.environ)
    values["FERKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    return values


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, environment):
    """synth → train once; the other tests reuse the data and the run folder."""
    folder = tmp_path_factory.mktemp("cli")
    run_ferkit(
        "synth", "--out", folder / "faces.csv", "--n", 280, "--seed", 4,
        "--png-dir", folder / "faces", "--png-count", 3,
        environment=environment,
    )  # fmt: skip
    trained = run_ferkit(
        "train", folder / "faces.csv", "--out", folder / "run", "--split", "usage",
        "--epochs", 2, 1, "--batch-size", 32, "--no-progress", *TINY_MODEL_ARGS,
        environment=environment,
    )  # fmt: skip
    return folder, trained


def test_synth_writes_a_fer2013_csv_and_face_images(workspace):
    folder, _ = workspace
    lines = (folder / "faces.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    assert len(lines) == 281
    assert len(lines[1].split(",")[1].split()) == 2304
    assert len(list((folder / "faces").glob("face_*.png"))) == 3


def test_explore_prints_counts_and_writes_plots(workspace, environment):
    folder, _ = workspace
    result = run_ferkit(
        "explore", folder / "faces.csv", "--out", folder / "explore", environment=environment
    )
    assert "Happy" in result.stdout and "PrivateTest" in result.stdout
    assert "40 ( 14.3%)" in result.stdout  # 280 faces / 7 classes
    for name in ("label_distribution.png", "samples.png"):
        assert (folder / "explore" / name).stat().st_size > 1000


def test_train_prints_epoch_lines_and_fills_the_run_folder(workspace):
    folder, trained = workspace
    epoch_lines = [line for line in trained.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 3
    assert "lr 1.0e-03" in epoch_lines[0] and "lr 1.0e-04" in epoch_lines[2]
    assert "224 train, 28 validation (usage split)" in trained.stdout
    run = folder / "run"
    for name in ("config.json", "best.safetensors", "best.json", "last/model.safetensors",
                 "history.json", "history.csv", "history.png", "metrics.json",
                 "confusion_matrix.png", "calibration.json",
                 "reliability_diagram.png"):  # fmt: skip
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["split"] == "usage"
    assert "calibration: temperature" in trained.stdout


def test_evaluate_on_a_usage_split(workspace, environment):
    folder, _ = workspace
    result = run_ferkit(
        "evaluate", folder / "faces.csv", "--model", folder / "run", "--split", "PrivateTest",
        "--out", folder / "evaluation", environment=environment,
    )  # fmt: skip
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    assert metrics["count"] == 28 and metrics["split"] == "PrivateTest"
    assert {"accuracy", "macro_f1", "per_class"} <= set(metrics)
    assert sum(sum(row) for row in metrics["confusion_matrix"]) == 28
    assert f"{metrics['accuracy']:.2%}".replace("%", " %") in result.stdout
    assert (folder / "evaluation" / "confusion_matrix.png").is_file()
    # Without --split every row is evaluated; default output is the run folder.
    run_ferkit("evaluate", folder / "faces.csv", "--model", folder / "run", environment=environment)
    assert json.loads((folder / "run" / "metrics.json").read_text())["count"] == 280


def test_evaluate_unknown_split_names_the_available_ones(workspace, environment):
    folder, _ = workspace
    result = run_ferkit(
        "evaluate", folder / "faces.csv", "--model", folder / "run", "--split", "Nope",
        environment=environment, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "PrivateTest" in result.stderr and "Traceback" not in result.stderr


def test_predict_face_crops_table_json_csv_and_a_bad_file(workspace, environment):
    folder, _ = workspace
    faces = sorted((folder / "faces").glob("*.png"))
    crops = ["--model", folder / "run", "--detector", "none"]
    table = run_ferkit("predict", *faces, *crops, environment=environment)
    assert len(table.stdout.strip().splitlines()) == 1 + len(faces)
    assert "Surprise"[:8] in table.stdout.splitlines()[0]
    as_json = run_ferkit(
        "predict", folder / "faces", *crops, "--json", "--csv", folder / "faces.csv.out",
        environment=environment,
    )  # fmt: skip
    records = json.loads(as_json.stdout)
    assert [record["source"] for record in records] == [str(face) for face in faces]
    for record in records:
        (face,) = record["faces"]
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-4
        assert face["box"] == {"x": 0, "y": 0, "width": 96, "height": 96, "score": 1.0}
    csv_lines = (folder / "faces.csv.out").read_text().splitlines()
    assert csv_lines[0].startswith("source,frame,timestamp,face,x,y,width,height")
    assert len(csv_lines) == 1 + len(faces)
    broken = folder / "broken.jpg"
    broken.write_text("not an image")
    mixed = run_ferkit(
        "predict", broken, faces[0], *crops, "--json", environment=environment, check=False
    )
    assert mixed.returncode == 1
    assert str(broken) in mixed.stderr and "Traceback" not in mixed.stderr
    assert len(json.loads(mixed.stdout)) == 1


def test_cross_validation(workspace, environment):
    folder, _ = workspace
    result = run_ferkit(
        "cv", folder / "faces.csv", "--out", folder / "cv", "--folds", 2, "--epochs", 1,
        "--batch-size", 32, "--no-progress", *TINY_MODEL_ARGS, environment=environment,
    )  # fmt: skip
    summary = json.loads((folder / "cv" / "cv_summary.json").read_text())
    assert summary["folds"] == 2 and len(summary["per_fold"]) == 2
    accuracies = [fold["accuracy"] for fold in summary["per_fold"]]
    assert summary["accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert "2-fold accuracy" in result.stdout and "±" in result.stdout
    assert (folder / "cv" / "cv_folds.png").is_file()
    assert (folder / "cv" / "fold_1" / "best.safetensors").is_file()
    assert (folder / "cv" / "fold_2" / "best.safetensors").is_file()


def test_ctrl_c_saves_and_resume_finishes(workspace, environment):
    folder, _ = workspace
    run = folder / "interrupted"
    command = [
        sys.executable, "-m", "ferkit", "train", str(folder / "faces.csv"), "--out", str(run),
        "--epochs", "15", "--batch-size", "32", "--no-progress", *TINY_MODEL_ARGS,
    ]  # fmt: skip
    # A test run launched in the background of a non-interactive shell inherits SIGINT
    # ignored, and Python keeps it ignored: give the trainer the default disposition back.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    state = run / "last" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert state.exists(), "no epoch finished in time"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    finished = json.loads(state.read_text())["epoch"]
    assert 1 <= finished < 15
    history = json.loads((run / "history.json").read_text())
    assert len(history) == finished
    resumed = run_ferkit(
        *command[3:5], "--out", run, "--epochs", 15, "--batch-size", 32, "--no-progress",
        *TINY_MODEL_ARGS, "--resume", environment=environment,
    )  # fmt: skip
    assert f"resuming {run} after epoch {finished}/15" in resumed.stdout
    assert len(json.loads((run / "history.json").read_text())) == 15


def test_version(environment):
    from ferkit import __version__

    result = run_ferkit("--version", environment=environment)
    assert result.stdout.strip() == f"ferkit {__version__}"


def test_train_twice_into_the_same_folder_is_refused(workspace, environment):
    folder, _ = workspace
    result = run_ferkit(
        "train", folder / "faces.csv", "--out", folder / "run", "--epochs", 1,
        environment=environment, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "already holds a run" in result.stderr


def test_module_entry_point_matches_console_script():
    script = Path(sys.executable).parent / "ferkit"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("synth", "explore", "train", "evaluate", "predict", "cv"):
        assert command in result.stdout
