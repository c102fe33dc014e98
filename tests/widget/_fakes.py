"""Small, exact test inputs for the widget: a real ``Embedding`` over a real in-memory capture.

The capture (``tests/_fakes.py``) holds seeded random vectors, so attention is softmax(q kᵀ / sqrt(d))
and tests know the exact top-k keys without torch or a model.
"""

from __future__ import annotations

import numpy as np

from _fakes import make_tokens, random_capture
from qkviz import Embedding

__all__ = ["make_embedding", "make_tokens"]


def make_embedding(n_layers=2, n_heads=3, lengths=(6, 5, 4), seed=0, capture=True, coords=None) -> Embedding:
    """A real Embedding with random layouts (or ``coords(layer, head) -> [point, 2]``)."""
    tokens = make_tokens(lengths)
    n = len(tokens)
    layers, heads = range(n_layers), range(n_heads)
    rng = np.random.default_rng(seed)
    xy = {(la, h): (coords(la, h) if coords else rng.uniform(-1, 1, size=(2 * n, 2))) for la in layers for h in heads}
    norms = {k: rng.uniform(0.5, 3.0, size=2 * n).astype(np.float32) for k in xy}
    cap = random_capture(tokens, n_layers, n_heads, seed=seed) if capture else None
    emb = (
        Embedding.from_coords(xy, tokens, norms=norms, capture=cap)
        if not coords
        else Embedding({k: np.asarray(v, np.float32) for k, v in xy.items()}, tokens, norms=norms, capture=cap)
    )
    return emb
