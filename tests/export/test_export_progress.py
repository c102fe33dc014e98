"""Long exports show a progress bar over the heads (tqdm.auto: a widget in notebooks, text in terminals)."""

from __future__ import annotations

from typing import ClassVar

import tqdm.auto

import qkviz
from _fakes import synthetic_capture
from qkviz import export


class _Recorder:
    """Stands in for tqdm: records each bar's settings and iterates like the real one."""

    bars: ClassVar[list[dict]] = []

    def __init__(self, iterable=None, **kw):
        self.iterable = list(iterable) if iterable is not None else []
        _Recorder.bars.append({"n": len(self.iterable), **kw})

    def __iter__(self):
        return iter(self.iterable)


def test_save_html_shows_a_bar_over_the_heads_unless_asked_not_to(tmp_path, monkeypatch):
    emb = qkviz.embed(synthetic_capture(n_layers=2, n_heads=3), "pca", cache=False, progress=False)
    monkeypatch.setattr(tqdm.auto, "tqdm", _Recorder)
    _Recorder.bars = []
    export.save_html(emb, tmp_path / "a.html")
    (bar,) = _Recorder.bars
    assert bar["n"] == 6 and bar["unit"] == "head" and not bar["disable"]
    assert bar["delay"] > 0  # quick exports stay quiet
    _Recorder.bars = []
    export.save_html(emb, tmp_path / "b.html", progress=False)
    assert all(b["disable"] for b in _Recorder.bars)
