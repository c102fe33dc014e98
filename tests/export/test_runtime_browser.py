"""The page runtime in a real browser, with a test module standing in for the widget bundle.

This pins what any bundle can rely on in a static page: DataViews with the exact bytes at the places
Python had buffers, the anywidget model API (get/set/on/off/save_changes/send), and
``experimental.invoke`` answered by a hook the bundle registers on ``globalThis.qkvizStatic``.
"""

from __future__ import annotations

import numpy as np
import pytest

from qkviz import export
from qkviz.export import _pack
from qkviz.export._pack import page_bytes

pytestmark = pytest.mark.browser

PROBE = r"""
export default {
  async initialize({ model }) { model.set("initialized", true); },
  async render({ model, el, experimental }) {
    const w = model.get("xy");
    const xy = new Float32Array(w.view.buffer, w.view.byteOffset, w.view.byteLength / 4);
    const ids = model.get("ids");
    const u = new Uint32Array(ids.view.buffer, ids.view.byteOffset, ids.view.byteLength / 4);
    let changes = 0;
    const onChange = () => { changes += 1; };
    model.on("change:layer", onChange);
    model.set("layer", 3); model.save_changes();
    model.off("change:layer", onChange);
    model.set("layer", 4);
    globalThis.qkvizStatic.answer = async (name, msg) => [{ echo: msg.x * 2, name }, []];
    const [resp] = await experimental.invoke("_qk_fetch", { x: 21 });
    window.probe = {
      sum: Array.from(xy).reduce((a, b) => a + b, 0), n: xy.length, ids: Array.from(u),
      nested: model.get("meta").label, changes, layer: model.get("layer"),
      initialized: model.get("initialized"), resp,
    };
    el.textContent = "probe ready";
  },
};
"""


def _write_page(state, path, title="qkviz", **kw):
    """A page around any trait state (the runtime does not care what the widget's traits are)."""
    path.write_bytes(page_bytes(export.page_html({"state": state}, title=title, **kw)))
    return path


@pytest.mark.parametrize("compress, compact", [(True, False), (False, False), (True, True)])
def test_runtime_restores_state_and_answers_commands(tmp_path, monkeypatch, offline_page, compress, compact):
    bundle = tmp_path / "widget.js"
    bundle.write_text(PROBE)
    monkeypatch.setattr(export, "BUNDLE", bundle)
    xy = np.linspace(-1, 1, 5001, dtype=np.float32)
    ids = np.array([7, 0, 2**32 - 1], np.uint32)
    state = {
        "xy": {"view": memoryview(xy.view(np.uint8)), "dtype": "float32", "shape": [5001]},
        "ids": ids,
        "meta": {"label": "héllo </script>"},
        "layer": 0,
    }
    out = _write_page(state, tmp_path / "probe.html", compress=compress, compact=compact)
    page = offline_page
    page.goto(out.as_uri())
    page.wait_for_function("window.probe !== undefined", timeout=20_000)
    probe = page.evaluate("window.probe")
    assert probe["n"] == 5001
    assert probe["sum"] == pytest.approx(float(xy.sum(dtype=np.float64)), abs=1e-3 if not compact else 5001 * 2e-5)
    assert probe["ids"] == ids.tolist()
    assert probe["nested"] == "héllo </script>"
    assert probe["changes"] == 1 and probe["layer"] == 4 and probe["initialized"] is True
    assert probe["resp"] == {"echo": 42, "name": "_qk_fetch"}
    assert page.get_attribute("#qkviz-root", "data-qk-static") == "ready"
    assert page.qk_external == [] and page.qk_errors == []


def test_runtime_shows_a_readable_error(tmp_path, monkeypatch, offline_page):
    bundle = tmp_path / "widget.js"
    bundle.write_text('export default { render() { throw new Error("boom in render"); } };')
    monkeypatch.setattr(export, "BUNDLE", bundle)
    out = _write_page({}, tmp_path / "bad.html")
    offline_page.goto(out.as_uri())
    offline_page.wait_for_selector(".qkviz-static-error", timeout=20_000)
    assert "boom in render" in offline_page.get_attribute("#qkviz-root", "data-qk-error")


def _probe_page(tmp_path, monkeypatch):
    bundle = tmp_path / "widget.js"
    bundle.write_text(PROBE)
    monkeypatch.setattr(export, "BUNDLE", bundle)
    # values whose bytes cover 0x00-0xFF, so every byte survives (or not) the trip through the page
    xy = np.frombuffer(bytes(range(256)) * 40, np.float32).copy()
    xy[~np.isfinite(xy)] = 0
    state = {"xy": {"view": memoryview(xy.view(np.uint8)), "dtype": "float32", "shape": [xy.size]},
             "ids": np.array([1, 2], np.uint32), "meta": {"label": "é"}, "layer": 0}  # fmt: skip
    out = _write_page(state, tmp_path / "probe.html", compress=False, compact=False)
    return out, float(xy.sum(dtype=np.float64))


def test_runtime_reads_its_own_bytes_when_a_server_says_utf8(tmp_path, monkeypatch, chromium):
    """A web server's ``charset=utf-8`` header overrides the page's ``<meta charset>``: the page
    must fetch its own bytes back instead of decoding U+FFFD."""
    out, total = _probe_page(tmp_path, monkeypatch)
    body = out.read_bytes()
    ctx = chromium.new_context()
    page = ctx.new_page()
    served = []

    def serve(route):
        served.append(route.request.url)
        route.fulfill(status=200, body=body, headers={"content-type": "text/html; charset=utf-8"})

    page.route("http://qkviz.test/**", serve)
    page.goto("http://qkviz.test/probe.html")
    page.wait_for_function("window.probe !== undefined", timeout=20_000)
    assert page.evaluate("document.characterSet").lower() == "utf-8"
    probe = page.evaluate("window.probe")
    assert probe["sum"] == pytest.approx(total, rel=1e-6)
    assert len(served) == 2, served  # the page, then the page's own bytes
    ctx.close()


def test_runtime_says_when_the_file_was_resaved_as_utf8(tmp_path, monkeypatch, offline_page):
    out, _ = _probe_page(tmp_path, monkeypatch)
    # what a text editor does: read the page in its declared encoding, save it as UTF-8
    text = out.read_bytes().decode("latin-1").translate(_pack._TO_PAGE)
    out.write_bytes(text.encode("utf-8"))
    offline_page.goto(out.as_uri())
    offline_page.wait_for_selector(".qkviz-static-error", timeout=20_000)
    error = offline_page.get_attribute("#qkviz-root", "data-qk-error")
    assert "damaged" in error and "save_html" in error, error
