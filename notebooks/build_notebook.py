"""Run ``notebooks/fer_training.py`` and store it, with its outputs, as ``fer_training.ipynb``.

The notebook's source is ``fer_training.py``, a jupytext "percent" script (``# %%`` starts a
code cell, ``# %% [markdown]`` a text cell): it is reviewed, linted and formatted like any other
Python file, and Jupyter with jupytext opens either file as the same notebook. The ``.ipynb`` is
committed with the outputs of a QUICK run on synthetic faces (the run ``tests/test_notebook.py``
does), so a reader on GitHub sees the figures and numbers. After editing the ``.py``::

    .venv/bin/python notebooks/build_notebook.py          # run it and rewrite the .ipynb
    .venv/bin/python notebooks/build_notebook.py --check  # exit 1 if the .ipynb is stale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
SOURCE_PATH = NOTEBOOKS / "fer_training.py"
NOTEBOOK_PATH = NOTEBOOKS / "fer_training.ipynb"
KERNEL_NAME = "python3"
CELL_TIMEOUT_SECONDS = 300


def read_source() -> nbformat.NotebookNode:
    """The notebook as written in ``fer_training.py`` (no outputs)."""
    return jupytext.read(SOURCE_PATH)


def cells_of(notebook) -> list[tuple[str, str]]:
    """(cell type, source) of every cell: what must agree between the ``.py`` and the ``.ipynb``."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def install_kernel_spec(folder: Path) -> Path:
    """Write a ``python3`` kernel spec that runs this interpreter (which has ferkit installed).

    Putting ``folder`` first on ``JUPYTER_PATH`` makes it win over any ``python3`` spec in the
    user's or the system's Jupyter folders, which may name another Python.
    """
    spec_folder = folder / "kernels" / KERNEL_NAME
    spec_folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    (spec_folder / "kernel.json").write_text(json.dumps(spec))
    return folder


def execution_environment(folder: Path, work: Path | None = None) -> dict[str, str]:
    """Environment variables for a QUICK run whose files all stay under ``folder``."""
    values = {
        "FERKIT_NOTEBOOK_QUICK": "1",
        "FERKIT_CACHE_DIR": str(folder / "cache"),
        # Keep Jupyter and IPython files (connection files, profiles) out of the home folder.
        "JUPYTER_PATH": str(install_kernel_spec(folder / "jupyter")),
        "JUPYTER_RUNTIME_DIR": str(folder / "jupyter_runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(folder / "ipython"),
    }
    if work is not None:
        values["FERKIT_NOTEBOOK_WORK"] = str(work)
    return values


def execute(notebook, folder: Path) -> float:
    """Run ``notebook`` in place, in a fresh kernel whose working folder is ``folder``.

    The caller sets the environment (see :func:`execution_environment`). Returns the seconds it
    took; raises ``nbclient.exceptions.CellExecutionError`` with the cell's traceback when a
    cell fails.
    """
    import nbclient

    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(folder)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def build() -> float:
    """Run the source in a temporary folder and write the ``.ipynb`` with its outputs."""
    notebook = read_source()
    with tempfile.TemporaryDirectory(prefix="ferkit-notebook-") as temporary:
        folder = Path(temporary)
        saved = dict(os.environ)
        # WORK stays the default, runs/notebook, so no temporary path shows in the outputs.
        os.environ.pop("FERKIT_NOTEBOOK_WORK", None)
        os.environ.update(execution_environment(folder))
        try:
            seconds = execute(notebook, folder)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    notebook.metadata.pop("widgets", None)
    nbformat.validate(notebook)
    nbformat.write(notebook, NOTEBOOK_PATH)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the .ipynb's cells differ from the .py"
    )
    arguments = parser.parse_args()
    if arguments.check:
        stored = nbformat.read(NOTEBOOK_PATH, as_version=4)
        if cells_of(stored) != cells_of(read_source()):
            print(f"{NOTEBOOK_PATH.name} is stale: run python {Path(__file__).name}")
            return 1
        print(f"{NOTEBOOK_PATH.name} matches {SOURCE_PATH.name}")
        return 0
    seconds = build()
    print(f"ran {SOURCE_PATH.name} in {seconds:.0f} s; wrote {NOTEBOOK_PATH} with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
