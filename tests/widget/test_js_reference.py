"""The numbers the JS unit tests compare the front end's twins of Python formulas with.

``js/test/reference.json`` holds inputs and Python's outputs of the formulas the front end
repeats: renormalisation (hiding tokens, value weighting), the image view (``image_detail``, with
AttentionViz's overlay strength) and the static page's key-delta layout of top-k tables. This test recomputes them, so the file cannot drift from Python; ``js/test/*.test.js``
(``npm test``) checks the JS against the file. After changing a formula, rewrite the file with

    PYTHONPATH=src python tests/widget/test_js_reference.py
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "js" / "test" / "reference.json"
NONE32 = 2**32 - 1


def _attention(rng, n):
    a = rng.random((n, n)) ** 3
    return (a / a.sum(axis=1, keepdims=True)).astype(np.float32)


class _Image:
    """An image's token table (CLS, then a 2 x 3 patch grid) and its attention: an AttentionSource."""

    def __init__(self, att):
        self._att = att
        self.tokens = pd.DataFrame(
            {"seq": 0, "pos": range(7), "row": [-1, 0, 0, 0, 1, 1, 1], "col": [-1, 0, 1, 2, 0, 1, 2]}
        )

    def attention(self, layer, head, seq):
        return self._att


def reference() -> dict:
    from qkviz.analysis import image_detail
    from qkviz.attention import overlay_strength, renormalize
    from qkviz.export._pack import key_delta
    from qkviz.wire import array_to_binary, binary_to_array

    rng = np.random.default_rng(7)
    a = _attention(rng, 6)
    a[4] = 0  # a row with nothing left (e.g. a masked query) stays zero
    norms = (rng.random(6) * 3 + 0.1).astype(np.float32)
    cases = [
        {"hidden_keys": [], "hidden_queries": [], "key_weights": None},
        {"hidden_keys": [0], "hidden_queries": [], "key_weights": None},
        {"hidden_keys": [1, 3], "hidden_queries": [2], "key_weights": None},
        {"hidden_keys": [], "hidden_queries": [], "key_weights": norms.tolist()},
        {"hidden_keys": [5], "hidden_queries": [0, 5], "key_weights": norms.tolist()},
    ]
    for c in cases:
        out = renormalize(
            a,
            key_weights=None if c["key_weights"] is None else np.asarray(c["key_weights"], np.float32),
            hidden_keys=c["hidden_keys"],
            hidden_queries=c["hidden_queries"],
        )
        c["expected"] = out.reshape(-1).tolist()

    # one head's top-k table ([token, k], strongest first; 2**32-1 = none: a sequence shorter than k)
    keys = np.array([[2, 0, 1], [1, 2, 0], [0, 1, NONE32], [1, 0, NONE32], [3, 0, 1]], np.uint32)
    weights = np.array(
        [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.7, 0.3, 0.0], [0.9, 0.1, 0.0], [0.4, 0.35, 0.25]], np.float32
    )
    entry = key_delta(
        {"layer": 0, "head": 1, "keys": array_to_binary(keys, "uint32"), "weights": array_to_binary(weights, "float32")}
    )
    order = np.argsort(keys.astype(np.int64), axis=1, kind="stable")  # what the page gets back

    img = _attention(rng, 7)
    img[2, [1, 4]] = img[2].max()  # a tie: argmax takes the first
    source = _Image(img)
    views = []
    for patch, kind in [(2, "query"), (5, "key"), (0, "query")]:
        d = image_detail(source, 0, 0, 0, patch, kind=kind)
        views.append({"patch": patch, "kind": kind, **{
            k: (np.asarray(d[k]).reshape(-1).tolist() if isinstance(d[k], np.ndarray) else d[k])
            for k in ("grid", "patch_row", "patch_col", "heat", "strength", "to_special", "cls_heat", "argmax",
                      "argmax_weight")
        }})  # fmt: skip
    heats = [[0.1, 0.4, 0.2, 0.3], [0.0, 0.0, 0.0], [0.5], [-0.2, 0.6, 0.1], []]
    return {
        "image": {
            "attention": img.reshape(-1).tolist(),
            "row": source.tokens["row"].tolist(),
            "col": source.tokens["col"].tolist(),
            "views": views,
        },
        "overlay_strength": [
            {"heat": h, "expected": overlay_strength(np.array(h, np.float32)).tolist()} for h in heats
        ],
        "renormalize": {"attention": a.reshape(-1).tolist(), "n": 6, "cases": cases},
        "key_delta": {
            "n_tokens": int(keys.shape[0]),
            "layout": entry["layout"],
            "keys": binary_to_array(entry["keys"]).reshape(-1).tolist(),
            "weights": binary_to_array(entry["weights"]).reshape(-1).tolist(),
            "expected_keys": np.take_along_axis(keys, order, axis=1).reshape(-1).tolist(),
            "expected_weights": np.take_along_axis(weights, order, axis=1).reshape(-1).tolist(),
        },
    }


def _text(ref: dict) -> str:
    return json.dumps(ref) + "\n"


def test_js_reference_matches_python():
    ref = reference()
    stored = json.loads(REFERENCE.read_text())
    assert stored.keys() == ref.keys()
    for name in ref:
        assert json.dumps(stored[name]) == json.dumps(json.loads(json.dumps(ref[name]))), (
            f"js/test/reference.json[{name!r}] is stale: run `PYTHONPATH=src python {pathlib.Path(__file__).relative_to(ROOT)}`"
        )


if __name__ == "__main__":
    REFERENCE.write_text(_text(reference()))
    print(f"wrote {REFERENCE}")
