"""The public entry points work through the package's lazy exports."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_public_names_after_importing_the_submodule():
    code = (
        "import qkviz._capture._run, qkviz._capture._store as store, qkviz\n"
        "from qkviz._capture import Capture, HeadGeometry\n"
        "assert qkviz.HeadGeometry is HeadGeometry and callable(qkviz.capture)\n"
        "from qkviz.data import demo_sentences\n"
        "cap = qkviz.capture('minilm', demo_sentences(2), progress=False, layers=[0], heads=[0])\n"
        "print(type(cap).__name__, qkviz.load, qkviz.load_model)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Capture")


def test_capture_pickles(tiny_capture):
    back = pickle.loads(pickle.dumps(tiny_capture))
    np.testing.assert_array_equal(back.q(1, 2), tiny_capture.q(1, 2))
    np.testing.assert_array_equal(back.attention(0, 1, 3), tiny_capture.attention(0, 1, 3))
