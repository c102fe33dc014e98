"""Every notebook in notebooks/ runs from a clean state (fresh kernel, no outputs) without an error.

They are the project's tutorials, so they must keep working as the API moves. Each is executed with
nbclient in a temporary copy of the folder (nothing is written back), and must be committed without
outputs so that diffs stay readable.
"""

from __future__ import annotations

import os
import pathlib
import time

import pytest

ROOT = pathlib.Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT = int(os.environ.get("QK_NOTEBOOK_TIMEOUT", "600"))  # per cell, seconds


def test_there_are_six_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "01-quickstart", "02-decoder-llm", "03-vision", "04-faithfulness", "05-analysis-from-python",
        "06-colab-quickstart",
        "07-findings",
    ]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} of {path.name} has outputs"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # run inside a scratch folder: notebooks may save files (captures, HTML) next to themselves
    # "python3" is ipykernel's own spec, whose "python" jupyter_client resolves to sys.executable:
    # the kernel runs in this environment (the one with qkviz installed).
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()
    print(f"\n[timing] {path.name}: {time.perf_counter() - t0:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
