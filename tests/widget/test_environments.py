"""Where the widget runs (Colab, VS Code, Jupyter) and what viewers without the widget see.

No browser and no Colab: a fake ``google.colab.output`` module stands in for Colab's (the calls
qkviz and anywidget make are the ones ``docs/environments.md`` cites), and a fake IPython shell for
the cell-end event. ``test_saved_notebooks_browser.py`` checks the pictures in real viewers.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import types

import anywidget._util
import numpy as np
import pytest
from PIL import Image

from qkviz.errors import WidgetDataError
from qkviz.export._picture import MAX_POINTS, picture_png
from qkviz.widget import QKViz, _hosts
from qkviz.widget._fallback import ColabWatch, page_iframe
from qkviz.wire import MAX_MESSAGE_BYTES, View, WidgetState, binary_to_array

from ._fakes import make_embedding


@pytest.fixture
def fake_colab(monkeypatch):
    """``google``, ``google.colab`` and ``google.colab.output`` in ``sys.modules``, recording calls."""
    calls = []
    output = types.ModuleType("google.colab.output")
    widgets = types.SimpleNamespace(_installed_url=None)

    def enable_custom_widget_manager():
        calls.append("enable")
        widgets._installed_url = "https://ssl.gstatic.com/colaboratory-static/widgets/manager.min.js"

    output.enable_custom_widget_manager = enable_custom_widget_manager
    output._widgets = widgets
    colab = types.ModuleType("google.colab")
    colab.output = output
    google = types.ModuleType("google")
    google.colab = colab
    for name, mod in (("google", google), ("google.colab", colab), ("google.colab.output", output)):
        monkeypatch.setitem(sys.modules, name, mod)
    _hosts._enable_once.cache_clear()
    anywidget._util.enable_custom_widget_manager_once.cache_clear()
    yield calls
    _hosts._enable_once.cache_clear()
    anywidget._util.enable_custom_widget_manager_once.cache_clear()


@pytest.fixture
def no_hosts(monkeypatch):
    for name in ("google", "google.colab", "google.colab.output"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    _hosts._enable_once.cache_clear()


def _hue(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of query-green and key-pink pixels (any coverage over a light or dark background)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (g > r + 30) & (g > b + 10), (r > g + 40) & (r > b + 10)


def _colors(png: bytes) -> dict[str, int]:
    q, k = _hue(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    return {"query": int(q.sum()), "key": int(k.sum())}


# ---- hosts ------------------------------------------------------------------------------------------
def test_jupyter_is_neither_colab_nor_vscode(no_hosts, emb):
    assert not _hosts.in_colab() and not _hosts.in_vscode()
    assert _hosts.message_budget() == MAX_MESSAGE_BYTES
    assert _hosts.enable_colab_widgets() is False
    viz = QKViz(emb)
    assert viz._meta["chunk_points"] * 9 <= MAX_MESSAGE_BYTES < (viz._meta["chunk_points"] + 1) * 9
    assert viz._meta["upload_bytes"] == _hosts.UPLOAD_BUDGET


def test_colab_gets_its_widget_manager_once_and_smaller_messages(fake_colab, emb):
    assert _hosts.in_colab()
    a, _ = QKViz(emb), QKViz(emb)
    # qkviz turns it on once per process (anywidget makes the same call, once, on its own)
    assert fake_colab and _hosts._enable_once.cache_info().misses == 1
    assert a._meta["chunk_points"] * 9 <= _hosts.HOSTED_MESSAGE_BYTES
    # anywidget's Colab metadata survives qkviz's mime bundle (Colab adds it to display_data only)
    data, metadata = a._repr_mimebundle_()
    url = metadata["application/vnd.jupyter.widget-view+json"]["colab"]["custom_widget_manager"]["url"]
    assert url.endswith("manager.min.js")
    assert "application/vnd.jupyter.widget-view+json" in data and "image/png" in data


def test_a_colab_without_the_call_warns_once(fake_colab, recwarn):
    del sys.modules["google.colab.output"].enable_custom_widget_manager
    with pytest.warns(UserWarning, match="enable_custom_widget_manager"):
        assert _hosts.enable_colab_widgets() is False
    assert _hosts.enable_colab_widgets() is False
    assert len([w for w in recwarn if "enable_custom_widget_manager" in str(w.message)]) == 0


def test_vscode_gets_smaller_messages(no_hosts, monkeypatch, emb):
    monkeypatch.setenv("VSCODE_PID", "4242")
    assert _hosts.in_vscode() and not _hosts.in_colab()
    assert QKViz(emb)._meta["chunk_points"] * 9 <= _hosts.HOSTED_MESSAGE_BYTES


# ---- the picture ------------------------------------------------------------------------------------
def test_picture_shows_queries_and_keys_of_the_matrix_and_the_focused_head(emb):
    st = WidgetState.from_embedding(emb)
    matrix = picture_png(st)
    focused = picture_png(st, View(layer=1, head=2))
    assert matrix[:8] == b"\x89PNG\r\n\x1a\n" and focused[:8] == b"\x89PNG\r\n\x1a\n"
    m, f = _colors(matrix), _colors(focused)
    assert m["query"] > 30 and m["key"] > 30
    # the focused head is drawn large beside the matrix: more ink, a wider picture
    assert f["query"] > m["query"] and f["key"] > m["key"]
    assert Image.open(io.BytesIO(focused)).width > Image.open(io.BytesIO(matrix)).width


def test_picture_puts_each_head_in_its_own_cell():
    # cell (layer 1, head 0) holds only queries at the centre, every other cell only keys
    def coords(la, he):
        n = 15
        xy = np.zeros((2 * n, 2))
        if (la, he) == (1, 0):
            xy[n:] = 5.0  # keys outside the [-1, 1] box: not drawn
        else:
            xy[:n] = 5.0
        return xy

    st = WidgetState.from_embedding(make_embedding(coords=coords))
    is_q, is_k = _hue(np.asarray(Image.open(io.BytesIO(picture_png(st))).convert("RGB")))
    qy, qx = np.nonzero(is_q)
    ky, kx = np.nonzero(is_k)
    assert len(qy) and len(ky)
    # one green spot, below (next layer row) and left of (first head column) most of the pink ones
    assert qy.min() > ky.min() and qx.max() < np.median(kx)


def test_picture_of_a_large_grid_samples_points(monkeypatch):
    emb = make_embedding(n_layers=3, n_heads=4, lengths=(40,) * 30)
    st = WidgetState.from_embedding(emb)
    seen = []
    import qkviz.export._picture as pic

    real = pic._splat
    monkeypatch.setattr(pic, "MAX_POINTS", 1200)
    monkeypatch.setattr(pic, "_splat", lambda px, *a, **k: seen.append(len(px)) or real(px, *a, **k))
    picture_png(st, View(layer=0, head=0))
    assert seen[0] <= 1200 + 12 * 200 and seen[0] < st.n_points
    assert MAX_POINTS >= 100_000


def test_dark_theme_picture_has_a_dark_background(emb):
    st = WidgetState.from_embedding(emb)
    corner = Image.open(io.BytesIO(picture_png(st, View(theme="dark")))).convert("RGB").getpixel((1, 1))
    assert sum(corner) < 150
    corner = Image.open(io.BytesIO(picture_png(st, View(theme="light")))).convert("RGB").getpixel((1, 1))
    assert sum(corner) > 700


# ---- the mime bundle ---------------------------------------------------------------------------------
def test_bundle_carries_the_picture_and_the_trait_gets_it(no_hosts, emb):
    viz = QKViz(emb, layer=0, head=1)
    data, _ = viz._repr_mimebundle_()
    assert set(data) == {"text/plain", "application/vnd.jupyter.widget-view+json", "image/png"}
    png = base64.b64decode(data["image/png"])
    assert png[:4] == b"\x89PNG"
    # the same bytes in the synced trait, for a front end without a kernel
    assert binary_to_array(viz._picture).tobytes() == png


def test_fallback_page_and_none(no_hosts, emb):
    viz = QKViz(emb, fallback="page")
    data, _ = viz._repr_mimebundle_()
    html = data["text/html"]
    assert html.startswith('<img class="qkviz-picture" alt=') and data["image/png"] in html  # for sanitised viewers
    assert "<iframe" in html and "srcdoc=" in html and "qkviz-data" in html and "<script" not in html
    viz.fallback = "none"
    data, _ = viz._repr_mimebundle_()
    assert set(data) == {"text/plain", "application/vnd.jupyter.widget-view+json"}
    with pytest.raises(WidgetDataError, match="fallback"):
        viz.fallback = "png"
    with pytest.raises(WidgetDataError, match="fallback"):
        QKViz(emb, fallback="html")


def test_page_iframe_keeps_the_page_text_exactly():
    import html as html_mod
    import re

    page = '<!DOCTYPE html><script>let a = "<b>&amp;</b>";</script>\x80\x9f\u20ac "q" \'s\''
    frag = page_iframe(page, 480)
    src = re.search(r'srcdoc="([^"]*)"', frag).group(1)
    assert html_mod.unescape(src) == page
    assert "height:570px" in frag and "<img" not in frag


# ---- front-end reports and the Colab slot ------------------------------------------------------------
def test_status_reports_are_counted(no_hosts, emb):
    viz = QKViz(emb)
    assert viz._qk_fetch({"kind": "status", "stage": "started"}, []) == ({"ok": True}, [])
    viz._qk_fetch({"kind": "status", "stage": "failed", "error": "no WebGL"}, [])
    assert viz.frontend == {"started": 1, "ready": 0, "failed": 1, "error": "no WebGL"}
    assert "error" in viz._qk_fetch({"kind": "status", "stage": "nope"}, [])[0]


class _Events:
    def __init__(self):
        self.callbacks = {}

    def register(self, name, fn):
        self.callbacks.setdefault(name, []).append(fn)

    def unregister(self, name, fn):
        self.callbacks[name].remove(fn)

    def fire(self, name):
        for fn in list(self.callbacks.get(name, [])):
            fn(None)


class _Handle:
    def __init__(self, log):
        self.log = log

    def update(self, obj):
        self.log.append(obj.data)


def _watch(grace=0.05):
    ip = types.SimpleNamespace(events=_Events())
    log = []
    shown = threading.Event()

    def display(obj, display_id=None):
        assert display_id is True
        log.append(obj.data)
        return _Handle(log)

    def page():
        shown.set()
        return "<iframe>page</iframe>"

    return ColabWatch(page, ip, display, grace_s=grace), ip, log, shown


def test_colab_slot_shows_the_page_when_the_widget_never_starts():
    w, ip, log, shown = _watch()
    w.arm()
    w.arm()  # one slot per display, however often the bundle is asked for
    assert log == []  # nothing until the cell ends
    ip.events.fire("post_run_cell")
    assert log == [""]  # an empty slot under the cell
    assert shown.wait(5)
    w.timer.join(5)
    assert "did not start" in log[-1] and log[-1].endswith("<iframe>page</iframe>")
    # a late start empties the slot again
    w.on_status("started")
    assert log[-1] == ""


def test_colab_slot_stays_empty_when_the_widget_starts_in_time():
    w, ip, log, shown = _watch(grace=0.3)
    w.arm()
    ip.events.fire("post_run_cell")
    w.on_status("started")
    w.timer.join(5)
    assert log == [""] and not shown.is_set()
    # a failure reported later still shows the page, with its reason
    w.on_status("failed", "WebGL is not available")
    assert "WebGL is not available" in log[-1]


def test_colab_display_arms_the_slot(fake_colab, emb, monkeypatch):
    ip = types.SimpleNamespace(events=_Events())
    monkeypatch.setattr("IPython.get_ipython", lambda: ip)
    viz = QKViz(emb)
    viz._repr_mimebundle_()
    assert viz._watch is not None and ip.events.callbacks["post_run_cell"]
    viz._qk_fetch({"kind": "status", "stage": "started"}, [])
    assert viz._watch.started


# ---- the selection on the wire ------------------------------------------------------------------------
def test_selection_wire_is_the_smaller_of_indices_and_bitmask():
    from qkviz.wire import pack_selection, unpack_selection

    rng = np.random.default_rng(3)
    for n, density in ((12, 0.5), (40_000, 0.3), (40_000, 0.001)):
        idx = np.flatnonzero(rng.random(n) < density) + 500
        w = pack_selection(idx)
        size = memoryview(w["view"]).nbytes
        assert size <= max(4 * idx.size, 1)
        assert w.get("encoding") == ("bitmask" if density > 0.1 else None)
        np.testing.assert_array_equal(unpack_selection(w, 10**6), idx)
    # the same bytes as js/src/wire/selection.js (js/test/hosts.test.js checks this literal too)
    w = pack_selection([9, 3, 4, 5, 4])
    assert (bytes(w["view"]), w["start"], w["count"]) == (b"\x47", 3, 4)
    # never trust the page: indices off the grid are dropped
    assert unpack_selection(pack_selection([1, 5, 70]), 60).tolist() == [1, 5]
    with pytest.raises(WidgetDataError, match="encoding"):
        unpack_selection({"encoding": "zip", "view": b""}, 10)


def test_a_selection_in_parts_reaches_python_and_is_not_echoed(no_hosts, emb):
    from qkviz.wire import pack_selection

    viz = QKViz(emb)
    idx = np.arange(0, viz.state.n_points, 3)
    packed = pack_selection(idx)
    data = bytes(packed["view"])
    chunks = [data[i : i + 4] for i in range(0, len(data), 4)]
    for i, c in enumerate(chunks):
        reply, _ = viz._qk_fetch(
            {"kind": "selection_part", "id": "u1", "part": i, "parts": len(chunks)}, [memoryview(c)]
        )
        assert reply == {"ok": True}
    inner = {k: v for k, v in packed.items() if k != "view"}
    wire = {"encoding": "parts", "id": "u1", "count": len(idx), "parts": len(chunks), "inner": inner}
    viz._selection = wire  # what the page sets once every part was acknowledged
    np.testing.assert_array_equal(viz.selection, idx)
    assert viz._selection is wire  # no echo back to the page: it knows what it sent
    assert len(viz.selected) == len(idx)


def test_incomplete_or_oversized_parts_are_refused(no_hosts, emb):
    viz = QKViz(emb)
    before = viz.selection.copy()
    viz._qk_fetch({"kind": "selection_part", "id": "u2", "part": 0, "parts": 2}, [b"\xff"])
    viz._selection = {
        "encoding": "parts",
        "id": "u2",
        "count": 8,
        "parts": 2,
        "inner": {"dtype": "uint8", "shape": [2]},
    }
    np.testing.assert_array_equal(viz.selection, before)  # part 1 never came: nothing changes
    reply, _ = viz._qk_fetch(
        {"kind": "selection_part", "id": "u3", "part": 0, "parts": 1}, [b"\0" * (10 * viz.state.n_points)]
    )
    assert "exceeds" in reply["error"]
    reply, _ = viz._qk_fetch({"kind": "selection_part", "id": "u4", "part": 5, "parts": 2}, [b"x"])
    assert "bad selection part" in reply["error"]


def test_python_selection_goes_to_the_page_compactly(no_hosts, emb):
    viz = QKViz(emb)
    viz.select(np.arange(viz.state.n_points))  # everything: a bitmask of n_points / 8 bytes
    assert viz._selection["encoding"] == "bitmask"
    assert memoryview(viz._selection["view"]).nbytes == -(-viz.state.n_points // 8)


def test_a_failing_picture_never_costs_the_widget(no_hosts, emb, monkeypatch, caplog):
    import qkviz.export._picture as pic

    monkeypatch.setattr(pic, "picture_png", lambda *a, **k: 1 / 0)
    data, _ = QKViz(emb)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data and "image/png" not in data
    assert "no static fallback" in caplog.text


def test_a_new_display_retires_the_old_colab_slot(fake_colab, emb, monkeypatch):
    ip = types.SimpleNamespace(events=_Events())
    monkeypatch.setattr("IPython.get_ipython", lambda: ip)
    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=None: _Handle([]))
    viz = QKViz(emb)
    viz._repr_mimebundle_()
    ip.events.fire("post_run_cell")  # the first display's slot exists, its timer runs
    first = viz._watch
    assert first.timer is not None and first.timer.is_alive()
    viz._repr_mimebundle_()  # shown again in a later cell
    assert viz._watch is not first and first.timer.finished.is_set()  # cancelled: that slot stays empty
