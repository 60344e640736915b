"""Tests for ferkit.cli on bad input: short ``error:`` messages and exit codes, no tracebacks.

Every test runs ``python -m ferkit`` in a subprocess (about 2-3 s each: the parser imports
torch), so only commands that fail fast or do no training are used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ferkit
from ferkit.data import save_fer2013_csv
from ferkit.data.synth import make_synthetic_dataset


def run_ferkit(*arguments: str, cache_dir: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, FERKIT_CACHE_DIR=str(cache_dir))
    return subprocess.run(
        [sys.executable, "-m", "ferkit", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cache_dir.parent,
        timeout=120,
    )


def with_pixel(line: str, position: int, value: str) -> str:
    label, pixels, usage = line.split(",")
    values = pixels.split(" ")
    values[position - 1] = value
    return ",".join([label, " ".join(values), usage])


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def faces_csv(tmp_path) -> Path:
    return save_fer2013_csv(make_synthetic_dataset(n=14, seed=0), tmp_path / "faces.csv")


def break_lines(path: Path, line_numbers) -> Path:
    """Give each of ``line_numbers`` (1-based) a non-integer 11th pixel."""
    lines = path.read_text().split("\n")
    for line_number in line_numbers:
        lines[line_number - 1] = with_pixel(lines[line_number - 1], 11, "12a")
    path.write_text("\n".join(lines))
    return path


def assert_clean_error(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_bad_row_exits_2_naming_file_and_line(faces_csv, cache_dir, tmp_path):
    break_lines(faces_csv, [5, 9])
    result = run_ferkit("explore", faces_csv, "--out", tmp_path / "explore", cache_dir=cache_dir)
    assert_clean_error(result)
    assert result.stderr == (
        f"error: {faces_csv}: line 5: field 'pixels': value 11 is '12a', not an integer "
        "(and 1 more bad rows)\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "explore").exists()


def test_skip_bad_rows_reports_skipped_lines(faces_csv, cache_dir, tmp_path):
    break_lines(faces_csv, [3, 7])
    out = tmp_path / "explore"
    result = run_ferkit("explore", faces_csv, "--out", out, "--skip-bad-rows", cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    problem = "field 'pixels': value 11 is '12a', not an integer"
    assert f"skipped 2 bad row(s): line 3: {problem}; line 7: {problem}" in result.stdout
    total_line = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    assert total_line.split()[1] == "12"
    assert (out / "label_distribution.png").is_file()
    assert (out / "samples.png").is_file()


def test_missing_data_file_exits_2(cache_dir, tmp_path):
    missing = tmp_path / "absent.csv"
    result = run_ferkit("explore", missing, "--out", tmp_path / "explore", cache_dir=cache_dir)
    assert_clean_error(result)
    assert result.stderr == f"error: {missing}: no such file or folder\n"
    assert not (tmp_path / "explore").exists()


def test_evaluate_with_missing_model_exits_2(faces_csv, cache_dir, tmp_path):
    missing_model = tmp_path / "no-such-run"
    result = run_ferkit("evaluate", faces_csv, "--model", missing_model, cache_dir=cache_dir)
    assert_clean_error(result)
    assert result.stderr.startswith(f"error: {missing_model}: not a model")
    assert not missing_model.exists()


def test_invalid_choice_exits_2_naming_valid_choices(faces_csv, cache_dir, tmp_path):
    run_folder = tmp_path / "run"
    result = run_ferkit(
        "train", faces_csv, "--out", run_folder, "--optimizer", "foo", cache_dir=cache_dir
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--optimizer: invalid choice: 'foo'" in result.stderr
    for choice in ("adam", "adamw", "sgd"):
        assert f"'{choice}'" in result.stderr or f" {choice}" in result.stderr
    assert result.stdout == ""
    assert not run_folder.exists()


@pytest.fixture(scope="module")
def version_run(tmp_path_factory) -> subprocess.CompletedProcess:
    """``ferkit --version``, with Python's import log on stderr (one subprocess, two tests)."""
    cache_dir = tmp_path_factory.mktemp("version") / "cache"
    environment = dict(os.environ, FERKIT_CACHE_DIR=str(cache_dir))
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ferkit", "--version"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_version(version_run):
    assert version_run.returncode == 0
    assert version_run.stdout == f"ferkit {ferkit.__version__}\n"


def test_version_does_not_import_torch(version_run):
    imported = {
        line.split("|")[-1].strip()
        for line in version_run.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "ferkit.cli" in imported
    assert "torch" not in imported


def test_cli_choices_match_the_library():
    """The CLI (torch-free) and the library take their choices from ferkit.utils.choices."""
    from ferkit.cli import build_parser
    from ferkit.faces.detection import DETECTORS
    from ferkit.utils.choices import BACKENDS

    commands = next(
        action for action in build_parser()._actions if action.dest == "command"
    ).choices
    for name in ("predict", "serve"):
        options = {action.dest: action for action in commands[name]._actions}
        assert tuple(options["detector"].choices) == DETECTORS
        assert tuple(options["backend"].choices) == BACKENDS
