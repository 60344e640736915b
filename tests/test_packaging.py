"""The wheel that `pip install .` builds carries everything the CLI needs at run time."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ferkit

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), "."],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{completed.stderr[-3000:]}")
    (path,) = folder.glob("ferkit-*.whl")
    return path


def test_wheel_holds_every_module_and_the_console_script(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    package_root = Path(ferkit.__file__).parent
    modules = {
        str(Path("ferkit") / path.relative_to(package_root)) for path in package_root.rglob("*.py")
    }
    assert modules <= set(names), sorted(modules - set(names))
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "ferkit = ferkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert f"ferkit-{ferkit.__version__}-" in wheel.name


def test_installed_wheel_runs_the_cli_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
    )  # fmt: skip
    environment = dict(os.environ, PYTHONPATH=str(target), FERKIT_CACHE_DIR=str(tmp_path / "c"))
    where = subprocess.run(
        [sys.executable, "-c", "import ferkit; print(ferkit.__file__)"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(target))
    synth = subprocess.run(
        [sys.executable, "-m", "ferkit", "synth", "--out", "faces.csv", "--n", "14"],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    assert len((tmp_path / "faces.csv").read_text().splitlines()) == 15
