"""Code that the Notebook 7 kernel and the marimo app run (imported there through ``QK_TESTS``).

One small real capture (the tiny random BERT of ``tests/_models.py`` over 4 demo sentences:
2 layers x 4 heads, 129 tokens), projected with PCA, shown focused on one head.
"""

from __future__ import annotations

import json
import os
import pathlib

LAYER, HEAD = 1, 2  # the focused head
N_HEADS = 4  # heads per layer of the tiny BERT
CELL = LAYER * N_HEADS + HEAD  # its cell in the global point order


def small_embedding():
    """The embedding every environment test shows (about 5 s, torch import included)."""
    import qkviz
    from _models import tiny_bert
    from qkviz.data import demo_sentences

    cap = qkviz.capture(tiny_bert(), demo_sentences(4), progress=False)
    return qkviz.embed(cap, method="pca", progress=False, cache=False)


def widget_class():
    """``QKViz``, or a subclass loading the front end from ``$QK_ESM`` when that is set."""
    from qkviz import QKViz

    esm = os.environ.get("QK_ESM")
    if not esm:
        return QKViz
    return type("QKVizOtherBundle", (QKViz,), {"_esm": pathlib.Path(esm)})


def selection_report(viz, emb) -> str:
    """One line the tests parse: the selected global indices, and per selected point its seq's length."""
    sel = viz.selected
    seq = emb.tokens["seq"].to_numpy()
    lengths = [int((seq == s).sum()) for s in sel["seq"]]
    return "QK-SELECTED " + json.dumps({"index": sel.index.tolist(), "seq": sel["seq"].tolist(), "seq_len": lengths})
