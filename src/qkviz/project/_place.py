"""Placing new inputs into an embedding's existing layouts (``Embedding.place``, the live probe).

Per head, new tokens go through exactly what the head's own points went through:

1. the head's joint normalisation (its recorded :class:`qkviz.joint.JointTransform`);
2. the cloud the reducer saw (the dot lift with the *reference* keys' ``max‖k‖`` for
   ``metric="dot"``);
3. the reducer's own ``transform``, after :meth:`anchor` readies it on the head's reference cloud
   (rebuilt from the capture) and its stored layout (un-boxed through the head's :class:`Frame`);
4. the head's frame: alignment rotation and box.

Nothing fitted is kept between calls, so a layout that came from the cache, from disk or from a
worker process places alike. PCA is exact: a token already in the corpus lands where it is.
t-SNE and UMAP place a point by its nearest reference points and a short optimisation against the
fixed reference, so a known token lands near, not on, its own point (``docs/how-to/probe.md``
gives the measured distances).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EmbeddingError
from ..joint import dot_lift
from ._driver import HeadSpec, layout_input, make_reducer
from ._methods import METHODS

if TYPE_CHECKING:
    from .._capture import Capture
    from ._embedding import Embedding, HeadKey

__all__ = ["place", "reducer_spec", "check_same_model"]

#: Keys of ``Embedding.params`` that are not method parameters (see ``embed``).
_NOT_METHOD = (
    "translate", "scale", "metric", "align", "random_state", "placed", "aligned_to_reference", "translate_off",
    "method_params",
)  # fmt: skip


def reducer_spec(embedding: Embedding) -> HeadSpec:
    """The :class:`HeadSpec` that made an embedding, read back from its recorded parameters."""
    p = dict(embedding.params)
    if embedding.method not in METHODS:
        raise EmbeddingError(
            f"method {embedding.method!r} cannot place new points: only layouts made by qkviz.embed "
            f"({', '.join(METHODS)}) can."
        )
    names = p.get("method_params")
    if names is not None:  # recorded by embed
        method_params = {k: p[k] for k in names if k in p}
    else:  # an older record: everything but embed's own entries
        method_params = {k: v for k, v in p.items() if k not in _NOT_METHOD}
    return HeadSpec(
        method=embedding.method,
        dim=int(embedding.dim),
        translate=bool(p.get("translate", True)),
        scale=p.get("scale", "auto"),
        metric=str(p.get("metric") or METHODS[embedding.method].default_metric),
        params=method_params,
        random_state=p.get("random_state", 0),
    )


def _anchored(spec: HeadSpec, x_ref: np.ndarray, y_raw: np.ndarray) -> Any:
    params = spec.reducer_params()
    params.pop("init", None)  # initialisation only matters to a fit
    params.pop("init_std", None)
    reducer = make_reducer(spec.method, spec.dim, params, spec.random_state)
    if not callable(getattr(reducer, "anchor", None)):
        raise EmbeddingError(f"method {spec.method!r} cannot place new points into a fitted layout (no anchor).")
    return reducer.anchor(x_ref, y_raw)


def check_same_model(capture: Capture, fresh: Capture, *, rtol: float = 1e-3) -> float:
    """Largest relative q/k difference between a stored sequence and the same text captured again.

    Raises
    ------
    EmbeddingError
        Above ``rtol``: the model (or its settings) is not the one that made ``capture``.
    """
    n = int(fresh.sequences["n_tokens"].iloc[0])
    off, n_ref = capture._seq_rows(0)
    if n != n_ref:
        raise EmbeddingError(
            f"the model tokenises the capture's first text into {n} tokens, not {n_ref}: it is not the "
            "model (or tokenizer) that made this capture; pass model= with the right one."
        )
    worst = 0.0
    for layer in fresh.layers:
        for head in fresh.heads:
            for a, b in ((capture.q(layer, head)[off : off + n], fresh.q(layer, head)),
                         (capture.k(layer, head)[off : off + n], fresh.k(layer, head))):  # fmt: skip
                scale = max(float(np.abs(a).max()), 1e-6)
                worst = max(worst, float(np.abs(a - b).max()) / scale)
    if worst > rtol:
        raise EmbeddingError(
            f"the model does not reproduce this capture (q/k differ by {worst:.2g} of their range on "
            "its first text): different weights or settings. Pass model= with the model that made it."
        )
    return worst


def place(
    embedding: Embedding,
    inputs: Any,
    *,
    model: Any = None,
    batch_size: int = 16,
    check: bool = True,
    progress: bool = False,
    **transform_params: Any,
) -> Embedding:
    """See :meth:`qkviz.Embedding.place`."""
    from .._capture._handle import resolve_model
    from .._capture._run import capture as run_capture

    cap = embedding.capture
    if cap is None:
        raise EmbeddingError(
            "placing new inputs needs the capture (its vectors rebuild each head's reference cloud); "
            "pass capture= to Embedding.load."
        )
    if embedding.attns != ("self",):
        raise EmbeddingError(
            f"placing new inputs works on embeddings of a model with one self-attention; this one holds "
            f"{', '.join(embedding.attns)} attention (an encoder-decoder model), which place does not "
            "support yet."
        )
    spec = reducer_spec(embedding)
    missing = [key for key in embedding.cells if key not in embedding.frames or key not in embedding.transforms]
    if missing:
        raise EmbeddingError(
            f"{len(missing)} heads have no recorded frame (e.g. {missing[0]}): this embedding was made before "
            "qkviz recorded them, or by Embedding.from_coords. Embed again (the layout cache makes it quick)."
        )
    lm = embedding._model if model is None and embedding._model is not None else resolve_model(cap, model)
    kw = dict(
        layers=list(embedding.layers),
        heads=list(embedding.heads),
        batch_size=batch_size,
        max_length=cap.params.get("max_length"),
        dtype=cap.params.get("dtype", "float32"),
        values=bool(cap.has_values),
        progress=progress,
        check=False,
    )
    texts = cap.sequences["text"].astype(str)
    if check and embedding._model is not lm and cap.model.get("modality", "text") == "text" and len(texts):
        check_same_model(cap, run_capture(lm, [texts.iloc[0]], **{**kw, "progress": False}))
    embedding._model = lm  # resolved and checked: later probes skip both
    new = run_capture(lm, inputs, **kw)

    coords: dict[HeadKey, np.ndarray] = {}
    norms: dict[HeadKey, np.ndarray] = {}
    for key in embedding.cells:
        t, frame = embedding.transforms[key], embedding.frames[key]
        qn, kn = t.apply(*cap.layout_vectors(*key))  # ALiBi heads: the augmented vectors
        x_ref = layout_input(qn, kn, spec.metric)
        y_raw = frame.invert(embedding.coords(*key))
        reducer = _anchored(spec, x_ref, y_raw)
        qn2, kn2 = t.apply(*new.layout_vectors(*key))
        if spec.metric == "dot":
            # M exactly as dot_lift computed it for the reference (float64 norms): the last lifted
            # coordinate sqrt(1 - |k|²/M²) amplifies any rounding of M near the longest key
            x_new = dot_lift(qn2, kn2, max_norm=float(np.linalg.norm(np.asarray(kn, np.float64), axis=1).max()))
        else:
            x_new = np.concatenate([qn2, kn2])
        y = reducer.transform(x_new, **transform_params) if transform_params else reducer.transform(x_new)
        coords[key] = frame.apply(y)
        norms[key] = np.concatenate([np.linalg.norm(qn2, axis=1), np.linalg.norm(kn2, axis=1)]).astype(np.float32)
    return type(embedding)(  # an Embedding (named through the instance: _embedding imports this module)
        coords,
        new.tokens,
        new.sequences,
        norms=norms,
        method=embedding.method,
        params={**embedding.params, "placed": True},
        capture=new,
        transforms={k: embedding.transforms[k] for k in embedding.cells},
        rotations={k: embedding.rotations[k] for k in embedding.cells if k in embedding.rotations},
        frames={k: embedding.frames[k] for k in embedding.cells},
    )
