"""Record q and k of a TransformerLens model at its own hook points.

TransformerLens computes attention in its own code (``HookedTransformer`` in TransformerLens 2-3;
``TransformerBridge`` in 4.x, which replaces the attention modules of the transformers model it
wraps with reimplementations), so transformers' attention interface is never called. Every layer
exposes the same hook points, ``[batch, pos, head, d_head]`` for the vectors and ``[batch, head,
query_pos, key_pos]`` for the scores:

* ``blocks.{layer}.attn.hook_rot_q`` / ``hook_rot_k`` (rotary models: after the rotation) or
  ``hook_q`` / ``hook_k``: exactly the vectors of the content score ``c · q·k`` (keys per key
  head with grouped-query attention: query head ``h`` reads key head ``h // group``);
* ``hook_attn_scores``: the scores before the softmax (read only for ALiBi, below);
* ``hook_pattern``: the model's own attention, fired last — it closes the layer's event and is
  the reference of the first-batch check and of ``Capture.verify``.

What the hooks do not carry comes from the model: the scale ``c`` (``1 / attn.attn_scale`` of a
``HookedTransformer``, ``scale_attn_by_inverse_layer_idx`` included; ``1 / scale`` of a native
TransformerLens 4 attention; the wrapped transformers attention module's own ``scaling`` in a
bridge), the soft cap
(``cfg.attn_scores_soft_cap`` / the module's ``attn_logit_softcapping``), a sliding window (a
``"local"`` layer's ``cfg.window_size`` / the module's ``sliding_window``), sinks (the module's
``sinks``) and, for ALiBi (``cfg.positional_embedding_type == "alibi"``), the bias each key
received: the model's scores minus ``c · q·k`` on the last real query of every sequence, which
sees every key; the recorder then checks that it is linear in the key position and keeps the
slopes. Each event goes to :meth:`~._hook.Recorder.record_event`, like the other backends'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import UnsupportedModelError
from . import _hook
from ._terms import RawTerms

__all__ = ["recording", "LayerSpec", "layer_specs"]


class LayerSpec:
    """What one layer's hooks do not carry: how its attention scores."""

    def __init__(
        self,
        site: torch.nn.Module,
        scaling: float,
        causal: bool,
        window: int | None,
        softcap: float | None,
        sink: torch.Tensor | None,
        alibi: bool,
        rope: Any = None,
        rotated: bool = False,
    ):
        self.site = site  # the layer's hook_pattern hook point: its identity numbers the layer
        self.scaling = scaling
        self.causal = causal
        self.window = window
        self.softcap = softcap
        self.sink = sink
        self.alibi = alibi
        # a native TransformerLens 4 attention with rotary (its hook_rot_q / hook_rot_k never fire):
        # the module whose own ``rotary.apply_rope`` turns hook_q / hook_k into the rotated vectors
        self.rope = rope
        # a rotary layer read at hook points: its rotated vectors must come from hook_rot_q /
        # hook_rot_k (a bridge may register them and rotate elsewhere, e.g. GPT-NeoX: hook_q /
        # hook_k are then the vectors before the rotation, and q·k would not be the score)
        self.rotated = rotated


def _refuse(why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"TransformerLens model: {why}", reason=why)


def _positive(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and x > 0 else None


def _hf_scaling(hf: Any) -> float | None:
    """The scale a transformers attention module (or its ``self`` child, BERT) multiplies ``q·k`` by."""
    for m in (hf, getattr(hf, "self", None)):
        if m is None:
            continue
        for name in ("scaling", "inv_norm_factor", "softmax_scale"):
            v = getattr(m, name, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return None


def layer_specs(lens: Any) -> list[LayerSpec]:
    """How every layer of a TransformerLens model scores, or :class:`UnsupportedModelError` why not."""
    cfg = lens.cfg
    hooks = lens.hook_dict
    n_layers = int(cfg.n_layers)
    pos_type = str(getattr(cfg, "positional_embedding_type", "standard") or "standard")
    if pos_type not in ("standard", "rotary", "alibi", "shortformer"):
        raise _refuse(f"positional_embedding_type={pos_type!r} adds terms to the scores that qkviz does not read")
    if getattr(cfg, "use_logn_attn", False):
        raise _refuse("use_logn_attn scales the queries after the hook points qkviz reads")
    if getattr(cfg, "attn_only", False) is None:  # pragma: no cover - defensive: malformed config
        raise _refuse("malformed config")
    out = []
    for layer in range(n_layers):
        names = [f"blocks.{layer}.attn.hook_{n}" for n in ("q", "k", "pattern")]
        missing = [n for n in names if n not in hooks]
        if missing:
            raise _refuse(f"layer {layer} has no hook point {missing[0]} (not a standard attention layer)")
        attn = lens.blocks[layer].attn
        rope: Any = None
        hf = getattr(attn, "original_component", None)  # TransformerBridge: the transformers module
        direction = getattr(attn, "_attention_dir_override", None) or getattr(cfg, "attention_dir", "causal")
        if hf is None:  # HookedTransformer: TransformerLens' own attention code
            scale = getattr(attn, "attn_scale", None)
            if isinstance(scale, torch.Tensor):
                scale = float(scale)
            if not isinstance(scale, (int, float)) or scale == 0:
                raise _refuse(f"layer {layer} has no attn_scale")
            scaling = 1.0 / float(scale)
            window = int(cfg.window_size) if getattr(attn, "attn_type", "global") == "local" else None
            softcap = _positive(getattr(cfg, "attn_scores_soft_cap", -1.0))
            sink = attn.sinks.detach() if getattr(cfg, "use_attention_sinks", False) else None
            if pos_type != "rotary":  # with rotary, hook_rot_q / hook_rot_k come after these steps
                if getattr(cfg, "use_qk_norm", False) or getattr(attn, "q_norm", None) is not None:
                    raise _refuse("use_qk_norm normalises q and k after the hook points hook_q / hook_k")
                if getattr(cfg, "clip_qkv", None) is not None:
                    raise _refuse("clip_qkv clamps q and k after the hook points hook_q / hook_k")
        elif type(hf).__name__ == "NativeAttention":  # a TransformerLens 4 native model (boot_native)
            scaling = 1.0 / float(hf.scale)  # scores = q·k / scale
            window = None
            softcap = _positive(getattr(hf, "attn_scores_soft_cap", -1.0))
            sink = None
            direction = "causal" if getattr(hf, "causal", True) else "bidirectional"
            if getattr(hf, "rotary", None) is not None:
                rope = hf
        else:
            found = _hf_scaling(hf)
            if found is None:
                raise _refuse(f"layer {layer}: cannot tell the scale of {type(attn).__name__} over {type(hf).__name__}")
            scaling = found
            window = getattr(hf, "sliding_window", None)
            softcap = _positive(getattr(hf, "attn_logit_softcapping", None))
            if softcap is None:
                softcap = _positive(getattr(cfg, "attn_scores_soft_cap", -1.0))
            sinks = getattr(hf, "sinks", None)
            sink = sinks.detach() if isinstance(sinks, torch.Tensor) else None
        alibi = pos_type == "alibi"
        if alibi and (softcap is not None or window):
            raise _refuse(f"layer {layer} combines ALiBi with a soft cap or a window, which qkviz does not read")
        out.append(
            LayerSpec(
                site=hooks[f"blocks.{layer}.attn.hook_pattern"],
                scaling=scaling,
                causal=direction == "causal",
                window=int(window) if window else None,
                softcap=softcap,
                sink=sink,
                alibi=alibi,
                rope=rope,
                rotated=pos_type == "rotary" and rope is None,
            )
        )
    return out


def _as_seen(point: torch.nn.Module, output: torch.Tensor) -> torch.Tensor:
    """A hook point's value in TransformerLens' layout: a bridge's hook point may hold the wrapped
    model's tensor (e.g. ``[batch, pos, d_model]``) and a conversion to the documented shape that
    TransformerLens' own hook functions receive; apply it as they do."""
    conversion = getattr(point, "hook_conversion", None)
    return output if conversion is None else conversion.convert(output)


def _heads_first(t: torch.Tensor) -> torch.Tensor:
    """``[batch, pos, head, d_head]`` (the hook points' layout) -> ``[batch, head, pos, d_head]``."""
    return t.transpose(1, 2)


def _key_bias(spec: LayerSpec, q: torch.Tensor, k: torch.Tensor, scores: torch.Tensor, rec: Any) -> torch.Tensor:
    """ALiBi: ``[B, head, key_pos]`` bias of every key, from the last real query of each sequence."""
    group = q.shape[1] // k.shape[1]
    kx = k.repeat_interleave(group, dim=1) if group > 1 else k
    b, _, t, _ = q.shape
    padding = rec.padding
    lengths = padding.sum(1).tolist() if padding is not None else [t] * b
    out = torch.zeros((b, q.shape[1], t), dtype=torch.float64, device=q.device)
    for row, n in enumerate(lengths):
        n = int(n)
        if n == 0:
            continue
        content = (q[row, :, n - 1 : n].double() @ kx[row, :, :n].double().transpose(-1, -2))[:, 0] * spec.scaling
        out[row, :, :n] = scores[row, :, n - 1, :n].double() - content
    return out


@contextlib.contextmanager
def recording(model: Any) -> Iterator[str]:
    """Install the hooks on a :class:`qkviz.models._wrapped.LensModel`'s TransformerLens model.

    The hooks hand each layer's event to the active recorder (they do nothing outside a recorded
    batch, e.g. during the reference pass of the checks) and are removed on exit. Yields the name
    of what records.
    """
    lens = model.lens
    specs = layer_specs(lens)
    hooks = lens.hook_dict
    frames: dict[int, dict[str, Any]] = {}  # layer -> hook name -> tensor (position_ids may be None)
    handles = []

    def keep(layer: int, name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            if _hook.active() is not None:
                frames.setdefault(layer, {})[name] = _as_seen(module, output)

        return hook

    def positions(layer: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
            if _hook.active() is not None:
                frames.setdefault(layer, {})["position_ids"] = kwargs.get("position_ids")

        return hook

    closed: list[int] = []  # layers whose event was handed over in the running forward pass

    def close(layer: int) -> Any:
        spec = specs[layer]

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            rec = _hook.active()
            frame = frames.pop(layer, {})
            if rec is None:
                return
            closed.append(layer)
            q = frame.get("rot_q", frame.get("q"))
            k = frame.get("rot_k", frame.get("k"))
            if spec.rotated and ("rot_q" not in frame or "rot_k" not in frame):
                rec.problems.append(
                    f"layer {layer}: rotary attention whose hook_rot_q / hook_rot_k never fired (this "
                    f"{type(lens).__name__} rotates q and k where no hook point shows them)"
                )
                return
            if q is None or k is None:
                rec.problems.append(f"layer {layer}: the q/k hook points did not fire before hook_pattern")
                return
            q, k = _heads_first(q), _heads_first(k)
            if spec.rope is not None and "rot_q" not in frame:  # the module's own rotary step, same tensors
                q, k = spec.rope.rotary.apply_rope(q, k, position_ids=frame.get("position_ids"))
            v = frame.get("v")
            terms = RawTerms(softcap=spec.softcap, sink=spec.sink)
            if spec.alibi:
                scores = frame.get("attn_scores")
                if scores is None:
                    rec.problems.append(f"layer {layer}: hook_attn_scores did not fire (needed for ALiBi)")
                    return
                terms.key_bias = _key_bias(spec, q, k, scores, rec)
            rec.record_event(
                spec.site,
                q,
                k,
                None if v is None else _heads_first(v),
                scaling=spec.scaling,
                causal=spec.causal,
                window=spec.window,
                terms=terms,
            )

        return hook

    def start(module: torch.nn.Module, args: Any) -> None:
        closed.clear()

    def finish(module: torch.nn.Module, args: Any, output: Any) -> None:
        rec = _hook.active()
        if rec is not None and closed != list(range(len(specs))):
            silent = sorted(set(range(len(specs))) - set(closed))
            rec.problems.append(
                f"the hook points hook_pattern of layer(s) {silent} never fired (this TransformerLens "
                f"{type(lens).__name__} computes attention where qkviz cannot read it)"
                if silent
                else "TransformerLens layers fired their hook points out of order"
            )

    try:
        handles.append(model.register_forward_pre_hook(start))
        handles.append(model.register_forward_hook(finish))
        for layer, spec in enumerate(specs):
            wanted = ["q", "k", "rot_q", "rot_k", "v"] + (["attn_scores"] if spec.alibi else [])
            for name in wanted:
                point = hooks.get(f"blocks.{layer}.attn.hook_{name}")
                if point is not None:
                    handles.append(point.register_forward_hook(keep(layer, name)))
            if spec.rope is not None:
                handles.append(spec.rope.register_forward_pre_hook(positions(layer), with_kwargs=True))
            handles.append(spec.site.register_forward_hook(close(layer)))
        yield "transformer_lens hooks"
    finally:
        for hd in handles:
            hd.remove()
        frames.clear()
