"""The tutorial notebook: its jupytext source, the committed run of it, and a fresh run.

``notebooks/fer_training.py`` (jupytext "percent" format) is the source; the committed
``notebooks/fer_training.ipynb`` holds the same cells with the outputs of a QUICK run on
synthetic faces (``notebooks/build_notebook.py`` runs it and writes it). The slow test runs the
source again in a fresh kernel, writing only under pytest's temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "fer_training.ipynb"


def load_builder():
    """Import ``notebooks/build_notebook.py`` (a script, not part of the package)."""
    specification = importlib.util.spec_from_file_location(
        "build_notebook", NOTEBOOKS / "build_notebook.py"
    )
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def check_outputs(notebook) -> str:
    """Assert that every code cell ran without error and the figures are there; return the text."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert all(cell.execution_count is not None for cell in code_cells)
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    # distribution, samples, history, prediction, confusion matrix, cross-validation
    assert len(images) >= 6, f"{len(images)} images in the outputs"
    text = "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs
    )
    assert "674,759" in text
    assert "Traceback" not in text
    return text


def test_stored_notebook_matches_its_source_and_carries_its_outputs():
    builder = load_builder()
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(stored)
    assert builder.cells_of(stored) == builder.cells_of(builder.read_source()), (
        "notebook is stale: run .venv/bin/python notebooks/build_notebook.py"
    )
    assert stored.metadata.kernelspec.name == builder.KERNEL_NAME
    assert stored.metadata.jupytext.formats == "ipynb,py:percent"
    text = check_outputs(stored)  # GitHub shows the figures and numbers of the QUICK run
    assert "QUICK=True" in text and "/tmp" not in text


@pytest.mark.slow
def test_notebook_runs_in_quick_mode(tmp_path, monkeypatch):
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    builder = load_builder()
    work = tmp_path / "work"
    for name, value in builder.execution_environment(tmp_path, work).items():
        monkeypatch.setenv(name, value)
    assert KernelSpecManager().get_kernel_spec(builder.KERNEL_NAME).argv[0] == sys.executable

    notebook = builder.read_source()
    # raises CellExecutionError, with the cell's traceback, if a cell fails
    print(f"notebook ran in {builder.execute(notebook, tmp_path):.1f} s")
    check_outputs(notebook)

    run = work / "run"
    for name in (
        "config.json",
        "best.safetensors",
        "best.json",
        "history.csv",
        "history.png",
        "metrics.json",
        "confusion_matrix.png",
    ):
        assert (run / name).is_file(), f"missing {run / name}"
    assert json.loads((run / "config.json").read_text())["epochs"] == [3, 1]
    assert len(json.loads((run / "history.json").read_text())) == 4
    for path in ("explore/label_distribution.png", "explore/samples.png", "face.png"):
        assert (work / path).is_file(), f"missing {work / path}"
    summary = json.loads((work / "cv" / "cv_summary.json").read_text())
    assert summary["folds"] == 3 and len(summary["per_fold"]) == 3
    assert (work / "cv" / "cv_folds.png").is_file()
