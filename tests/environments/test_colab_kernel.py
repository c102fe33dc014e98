"""The Colab fallback in a real kernel, with a fake ``google.colab`` and no browser.

Colab itself cannot run here; what qkviz does there is kernel-side, so a real ipykernel with a
stand-in ``google.colab.output`` module (the calls qkviz and anywidget make, docs/environments.md)
shows it: the custom widget manager is turned on, the widget's display carries Colab's metadata and
the picture, an empty output slot follows the cell, and that slot gets the standalone page when no
front end reports within the grace period — and stays empty when one does (the front end's report
is sent here as Colab's widget manager would relay it: a comm message with anywidget's command).
"""

from __future__ import annotations

import contextlib
import os
import queue
import time

import pytest

from .conftest import TESTS

pytestmark = pytest.mark.slow

FAKE_COLAB = """
import sys, types
calls = []
output = types.ModuleType("google.colab.output")
output._widgets = types.SimpleNamespace(_installed_url=None)
def enable_custom_widget_manager():
    calls.append("enable")
    output._widgets._installed_url = "https://ssl.gstatic.com/colaboratory-static/widgets/fake/manager.min.js"
output.enable_custom_widget_manager = enable_custom_widget_manager
colab = types.ModuleType("google.colab"); colab.output = output
google = types.ModuleType("google"); google.colab = colab
sys.modules.update({"google": google, "google.colab": colab, "google.colab.output": output})
sys.path.insert(0, TESTS)
from widget._fakes import make_embedding
import qkviz, qkviz.widget._fallback as fb
fb.GRACE_S = 1.5
emb = make_embedding()
"""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code: str, timeout=120) -> list[dict]:
    """Execute ``code``; the iopub messages of that execution (until idle)."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            out.append(m)  # messages of an earlier request (late updates): keep them too
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return out


def _drain(kc, seconds: float) -> list[dict]:
    out, end = [], time.time() + seconds
    while time.time() < end:
        with contextlib.suppress(queue.Empty):
            out.append(kc.get_iopub_msg(timeout=0.2))
    return out


def _displays(msgs):
    return [m for m in msgs if m["msg_type"] in ("display_data", "execute_result", "update_display_data")]


def _status_from_frontend(kc, model_id: str, stage: str) -> None:
    """What Colab's widget manager relays when the view calls experimental.invoke (anywidget's protocol)."""
    content = {
        "comm_id": model_id,
        "data": {
            "method": "custom",
            "content": {
                "id": f"t-{stage}",
                "kind": "anywidget-command",
                "name": "_qk_fetch",
                "msg": {"kind": "status", "stage": stage},
            },
        },
    }
    kc.session.send(kc.shell_channel.socket, kc.session.msg("comm_msg", content))


def test_colab_slot_fills_when_no_front_end_starts_and_stays_empty_when_one_does(kernel):
    kc = kernel
    _run(kc, f"TESTS = {str(TESTS)!r}\n" + FAKE_COLAB)
    # 1. nobody renders the widget: the slot gets the standalone page after the grace period
    msgs = _run(kc, "viz = qkviz.QKViz(emb)\nviz")
    shown = _displays(msgs)
    widget = next(m for m in shown if WIDGET_VIEW in m["content"]["data"])
    data, meta = widget["content"]["data"], widget["content"]["metadata"]
    assert "image/png" in data
    assert meta[WIDGET_VIEW]["colab"]["custom_widget_manager"]["url"].endswith("manager.min.js")
    slot = shown[-1]  # displayed after the cell's own output
    assert slot["content"]["data"].get("text/html") == "" and slot["content"]["transient"]["display_id"]
    later = _displays(_drain(kc, 5))
    assert later and later[-1]["msg_type"] == "update_display_data"
    assert later[-1]["content"]["transient"]["display_id"] == slot["content"]["transient"]["display_id"]
    html = later[-1]["content"]["data"]["text/html"]
    assert "did not start within" in html and "<iframe" in html and "srcdoc=" in html
    # a late start empties it again
    _status_from_frontend(kc, data[WIDGET_VIEW]["model_id"], "started")
    again = _displays(_drain(kc, 2))
    assert again and again[-1]["content"]["data"]["text/html"] == ""

    # 2. the front end reports in time: the slot stays empty
    msgs = _run(kc, "viz2 = qkviz.QKViz(emb)\nviz2")
    model_id = next(m for m in _displays(msgs) if WIDGET_VIEW in m["content"]["data"])["content"]["data"][WIDGET_VIEW][
        "model_id"
    ]
    _status_from_frontend(kc, model_id, "started")
    replies = _drain(kc, 4)
    answered = [m for m in replies if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id]
    assert answered and answered[0]["content"]["data"]["content"]["response"] == {"ok": True}
    assert [m for m in _displays(replies) if m["msg_type"] == "update_display_data"] == []
    # and qkviz (with anywidget) asked Colab for its widget manager
    out = _run(kc, "print(calls)")
    assert "enable" in "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
