"""Record q and k by module hooks, for models whose attention never calls the attention interface.

BLOOM, MPT, Falcon, MPNet and DeBERTa-v2 compute their scores inside their own attention modules
(``_can_set_attn_implementation()`` is False for them). For each such module class one small
:class:`Adapter` names the child modules whose outputs hold q and k (the fused or separate
projections) and rebuilds q and k from those outputs with **the module's own code** — its
``_reshape`` / ``_split_heads`` / ``transpose_for_scores`` and the model file's
``apply_rotary_pos_emb`` — plus the score terms the module receives (ALiBi, a relative bias, DeBERTa's
position tables). The rebuilt tensors are the ones the module multiplies, bit for bit; the first
batch's comparison with the model's eager attention proves it for every capture.

Hooks per attention module: a forward pre-hook (keeps the call's arguments), forward hooks on the
named children (keep their outputs, in call order), and a forward hook that builds the event and
hands it to the active :class:`~._hook.Recorder`. They do nothing outside a recorded batch (the
eager reference pass of the checks runs with them installed), and all are removed on exit.

The model's attention implementation is left alone: these models pick their code path from it
(MPT's mask, Falcon's sdpa branch), and the hooks do not need it changed.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import _hook
from ._terms import RawTerms

__all__ = ["Adapter", "ADAPTERS", "adapters_for", "recording"]


@dataclass(frozen=True)
class Event:
    """What an adapter rebuilt from one call of an attention module."""

    query: torch.Tensor  # [B, H, T, D]
    key: torch.Tensor  # [B, H_kv, T, D]
    value: torch.Tensor | None  # [B, H_kv, T, D_v]
    scaling: float
    causal: bool
    terms: RawTerms
    problem: str | None = None


@dataclass(frozen=True)
class Adapter:
    """How to read one attention module class.

    Attributes
    ----------
    module : str
        The class's module, e.g. ``"transformers.models.bloom.modeling_bloom"`` (class names repeat
        across models: DeBERTa v1 and v2 both have a ``DisentangledSelfAttention``).
    children : tuple of str
        Child modules whose outputs the build function needs, recorded in call order.
    build : callable
        ``build(module, arguments, calls) -> Event`` with ``arguments`` the call's bound arguments
        (name -> value) and ``calls`` child name -> list of outputs.
    """

    module: str
    children: tuple[str, ...]
    build: Callable[[torch.nn.Module, dict[str, Any], dict[str, list[torch.Tensor]]], Event]


def _file(module: torch.nn.Module) -> Any:
    return sys.modules[type(module).__module__]


def _bloom(m: Any, a: dict[str, Any], calls: dict[str, list[torch.Tensor]]) -> Event:
    q, k, v = m._reshape(calls["query_key_value"][0])  # [B, H, T, D] each, as BloomAttention does
    b, h, t, _ = q.shape
    alibi = a["alibi"].view(b, h, -1)[:, :, -t:] * m.beta  # scores = beta·alibi + alpha·q·k
    return Event(q, k, v, float(m.inv_norm_factor), True, RawTerms(key_bias=alibi))


def _mpt(m: Any, a: dict[str, Any], calls: dict[str, list[torch.Tensor]]) -> Event:
    mixed = calls["Wqkv"][0]
    if m.clip_qkv:
        mixed = mixed.clamp(min=-m.clip_qkv, max=m.clip_qkv)
    b, t = mixed.shape[:2]
    q, k, v = (x.reshape(b, t, m.n_heads, m.head_dim).transpose(1, 2) for x in mixed.chunk(3, dim=2))
    pb = a["position_bias"]  # [H, 1, max_seq_len]: m·(j − max_seq_len + 1), sliced as MptAttention does
    if pb is None:
        return Event(q, k, v, float(m.softmax_scale), True, RawTerms())
    pb = pb[:, max(0, pb.size(1) - t) :, max(0, pb.size(2) - t) :]
    key_bias = pb[:, -1, :][None].expand(b, -1, -1)  # [B, H, T]: a function of the key only
    return Event(q, k, v, float(m.softmax_scale), True, RawTerms(key_bias=key_bias))


def _falcon(m: Any, a: dict[str, Any], calls: dict[str, list[torch.Tensor]]) -> Event:
    n_kv = m.num_heads if m.new_decoder_architecture else m.num_kv_heads
    q, k, v = m._split_heads(calls["query_key_value"][0])  # [B, T, H(, kv), D]
    b, t = q.shape[:2]
    q = q.transpose(1, 2).reshape(b, m.num_heads, t, m.head_dim)
    k = k.transpose(1, 2).reshape(b, n_kv, t, m.head_dim)
    v = v.transpose(1, 2).reshape(b, n_kv, t, m.head_dim)
    if a.get("alibi") is not None:
        why = (
            "Falcon's ALiBi path in transformers scores differently in eager and sdpa attention (eager "
            "adds the bias twice), so there is no single attention to reproduce"
        )
        return Event(q, k, v, float(m.inv_norm_factor), True, RawTerms(), problem=why)
    cos, sin = a["position_embeddings"]
    q, k = _file(m).apply_rotary_pos_emb(q, k, cos, sin)  # the model file's own rotary step
    return Event(q, k, v, float(m.inv_norm_factor), True, RawTerms())


def _mpnet(m: Any, a: dict[str, Any], calls: dict[str, list[torch.Tensor]]) -> Event:
    b, t = calls["q"][0].shape[:2]
    shape = (b, t, -1, m.attention_head_size)
    q, k, v = (calls[name][0].view(shape).transpose(1, 2) for name in ("q", "k", "v"))
    pb = a.get("position_bias")
    return Event(q, k, v, 1.0 / math.sqrt(m.attention_head_size), False, RawTerms(pair_bias=pb))


def _deberta_v2(m: Any, a: dict[str, Any], calls: dict[str, list[torch.Tensor]]) -> Event:
    h = m.num_attention_heads
    qc, kc, vc = calls["query_proj"][0], calls["key_proj"][0], calls["value_proj"][0]
    b, t = kc.shape[:2]
    q, k, v = (m.transpose_for_scores(x, h).view(b, h, t, -1) for x in (qc, kc, vc))
    sf = 1 + ("c2p" in m.pos_att_type) + ("p2c" in m.pos_att_type)
    scaling = float(1.0 / _file(m).scaled_size_sqrt(q, sf))  # 1/sqrt(d_head · sf), as the module computes it
    if a.get("query_states") is not None:
        why = "DeBERTa's enhanced mask decoder (query_states) scores other queries than the layer's own"
        return Event(q, k, v, scaling, False, RawTerms(), problem=why)
    if not m.relative_attention:
        return Event(q, k, v, scaling, False, RawTerms())
    span = m.pos_ebd_size
    if m.share_att_key:  # the second call of query_proj / key_proj projects the position embeddings
        pq = calls["query_proj"][1] if len(calls.get("query_proj", [])) > 1 else None
        pk = calls["key_proj"][1] if len(calls.get("key_proj", [])) > 1 else None
    else:
        pq = calls.get("pos_query_proj", [None])[0]
        pk = calls.get("pos_key_proj", [None])[0]
    pos_key = m.transpose_for_scores(pk, h).float() if pk is not None and "c2p" in m.pos_att_type else None
    pos_query = m.transpose_for_scores(pq, h).float() if pq is not None and "p2c" in m.pos_att_type else None
    rel = a.get("relative_pos")
    if rel is None:
        rel = _file(m).build_relative_position(
            q, k, bucket_size=m.position_buckets, max_position=m.max_relative_positions
        )
    rel = rel.reshape(-1, t, t)[0].to(q.device).long()  # bucket(p_i − p_j)
    rows = torch.clamp(rel + span, 0, 2 * span - 1)  # the table row each pair uses
    return Event(q, k, v, scaling, False, RawTerms(rel=rows, pos_key=pos_key, pos_query=pos_query))


_M = "transformers.models"
ADAPTERS: dict[str, Adapter] = {
    "BloomAttention": Adapter(f"{_M}.bloom.modeling_bloom", ("query_key_value",), _bloom),
    "MptAttention": Adapter(f"{_M}.mpt.modeling_mpt", ("Wqkv",), _mpt),
    "FalconAttention": Adapter(f"{_M}.falcon.modeling_falcon", ("query_key_value",), _falcon),
    "MPNetSelfAttention": Adapter(f"{_M}.mpnet.modeling_mpnet", ("q", "k", "v"), _mpnet),
    "DisentangledSelfAttention": Adapter(
        f"{_M}.deberta_v2.modeling_deberta_v2",
        ("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj"),
        _deberta_v2,
    ),
}


def _adapter(module: torch.nn.Module) -> Adapter | None:
    a = ADAPTERS.get(type(module).__name__)
    return a if a is not None and type(module).__module__ == a.module else None


def adapters_for(model: torch.nn.Module) -> list[tuple[torch.nn.Module, Adapter]]:
    """The model's attention modules that an adapter reads, in module order."""
    return [(m, a) for m in model.modules() if (a := _adapter(m)) is not None]


_SIGNATURES: dict[type, inspect.Signature] = {}


def _signature(cls: type[torch.nn.Module]) -> inspect.Signature:
    if cls not in _SIGNATURES:
        _SIGNATURES[cls] = inspect.signature(cls.forward)
    return _SIGNATURES[cls]


def _bind(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = _signature(type(module)).bind_partial(module, *args, **kwargs)
    out = dict(bound.arguments)
    out.update(out.pop("kwargs", {}) or {})
    return out


@contextlib.contextmanager
def _hooks(pairs: list[tuple[torch.nn.Module, Adapter]]) -> Iterator[None]:
    frames: dict[int, tuple[dict[str, Any], dict[str, list[torch.Tensor]]]] = {}
    handles = []

    def pre(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if _hook.active() is not None:
            frames[id(module)] = (_bind(module, args, kwargs), {})

    def post(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        frame = frames.pop(id(module), None)
        rec = _hook.active()
        if frame is None or rec is None:
            return
        adapter = _adapter(module)
        assert adapter is not None
        try:
            ev = adapter.build(module, *frame)
        except (KeyError, IndexError, AttributeError, TypeError, RuntimeError) as e:
            rec.problems.append(
                f"{type(module).__name__}: its attention code is not the one qkviz's module hooks know ({e!r})"
            )
            return
        if ev.problem:
            rec.problems.append(ev.problem)
        rec.record_event(
            module, ev.query, ev.key, ev.value, scaling=ev.scaling, causal=ev.causal, window=None, terms=ev.terms
        )

    def child_hook(owner: torch.nn.Module, name: str) -> Callable[..., None]:
        def hook(child: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            frame = frames.get(id(owner))
            if frame is not None:
                frame[1].setdefault(name, []).append(output)

        return hook

    try:
        for module, adapter in pairs:
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
            for name in adapter.children:
                child = getattr(module, name, None)
                if isinstance(child, torch.nn.Module):
                    handles.append(child.register_forward_hook(child_hook(module, name)))
        yield
    finally:
        for hd in handles:
            hd.remove()


@contextlib.contextmanager
def recording(model: torch.nn.Module, delegate: str | None = None) -> Iterator[str]:
    """Record through module hooks when an adapter reads the model's attention, else the interface.

    Yields the name of what records (``"module hooks"``, ``"transformer_lens hooks"`` or the
    registered attention function). A TransformerLens model (wrapped by
    :func:`qkviz.models.load_model`) is read at its own hook points (:mod:`._lens`).
    """
    from ..models._wrapped import is_lens_model

    if is_lens_model(model):
        from . import _lens

        with _lens.recording(model) as name:
            yield name
        return
    pairs = adapters_for(model)
    with contextlib.ExitStack() as stack:
        if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
            stack.enter_context(_cross_marks(model))
        if not pairs:
            yield stack.enter_context(_hook.recording(model, delegate))
            return
        stack.enter_context(_hooks(pairs))
        yield "module hooks"


@contextlib.contextmanager
def _cross_marks(model: torch.nn.Module) -> Iterator[None]:
    """Mark cross-attention calls: decoder modules running with ``key_value_states`` set.

    Every encoder–decoder attention module of transformers (BART, mBART, Marian, Pegasus, T5, mT5,
    UMT5, Whisper...) takes the encoder's states as ``key_value_states``; a module that is handed
    them attends from the decoder's tokens to the encoder's.
    """
    handles = []

    def pre(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if _hook.active() is not None:
            _hook.set_cross(_bind(module, args, kwargs).get("key_value_states") is not None)

    def post(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        _hook.set_cross(False)

    try:
        for m in model.get_decoder().modules():  # type: ignore[operator]
            try:
                params = _signature(type(m)).parameters
            except (TypeError, ValueError):  # pragma: no cover - builtin modules without a signature
                continue
            if "key_value_states" in params:
                handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(m.register_forward_hook(post, with_kwargs=True))
        yield
    finally:
        for hd in handles:
            hd.remove()
        _hook.set_cross(False)
