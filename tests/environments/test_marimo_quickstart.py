"""notebooks/marimo_quickstart.py is a valid marimo notebook and runs from top to bottom."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .conftest import ROOT

QUICKSTART = ROOT / "notebooks" / "marimo_quickstart.py"


def test_marimo_check_passes():
    # marimo's own linter: parse errors, cycles, names defined twice, formatting it cares about
    proc = subprocess.run(
        [sys.executable, "-m", "marimo", "check", "--strict", str(QUICKSTART)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.notebook
def test_marimo_quickstart_runs():
    import marimo

    from qkviz import QKViz

    spec = importlib.util.spec_from_file_location("marimo_quickstart", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _outputs, defs = module.app.run()
    viz, emb = defs["viz"], defs["emb"]
    assert isinstance(viz, marimo.ui.anywidget) and isinstance(viz.widget, QKViz)
    assert (len(emb.layers), len(emb.heads)) == (6, 12)
    assert len(emb.tokens) > 500 and emb.tokens["seq"].nunique() == 40
    assert len(defs["sel"]) == 0 and viz.layer is None  # nothing selected, the matrix shown
