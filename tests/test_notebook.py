"""The tutorial notebook: stored without outputs, in sync with its generator, and it runs.

The run executes ``notebooks/fer_training.ipynb`` in a fresh kernel in QUICK mode on synthetic
faces (``FERKIT_NOTEBOOK_QUICK=1``), writing only under pytest's temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "fer_training.ipynb"
KERNEL_NAME = "python3"
CELL_TIMEOUT_SECONDS = 300


def load_builder():
    """Import ``notebooks/build_notebook.py`` (a script, not part of the package)."""
    specification = importlib.util.spec_from_file_location(
        "build_notebook", NOTEBOOKS / "build_notebook.py"
    )
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def install_kernel_spec(folder: Path) -> Path:
    """Write a ``python3`` kernel spec that runs this interpreter (which has ferkit installed).

    Putting ``folder`` first on ``JUPYTER_PATH`` makes it win over any ``python3`` spec in the
    user's or the system's Jupyter folders, which may name another Python.
    """
    spec_folder = folder / "kernels" / KERNEL_NAME
    spec_folder.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ferkit tests)",
        "language": "python",
    }
    (spec_folder / "kernel.json").write_text(json.dumps(spec))
    return folder


def test_stored_notebook_has_no_outputs_and_matches_its_generator():
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(stored)
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has stored outputs"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"
    generated = load_builder().build_notebook()
    assert [(cell.cell_type, cell.source) for cell in stored.cells] == [
        (cell.cell_type, cell.source) for cell in generated.cells
    ], "notebook is stale: run .venv/bin/python notebooks/build_notebook.py"
    assert stored.metadata.kernelspec.name == KERNEL_NAME


@pytest.mark.slow
def test_notebook_runs_in_quick_mode(tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("FERKIT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("FERKIT_NOTEBOOK_WORK", str(work))
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    # Keep Jupyter and IPython files (connection files, profiles) out of the home folder.
    monkeypatch.setenv("JUPYTER_PATH", str(install_kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter_runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell's traceback, if a cell fails
    print(f"notebook ran in {time.perf_counter() - start:.1f} s")

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
