"""Record q, k (and v) where the model computes its attention scores.

transformers routes attention through ``ALL_ATTENTION_FUNCTIONS``: each attention module calls
``f(module, query [B, H, T, D], key [B, H_kv, T, D], value, attention_mask, scaling=..., **kw)``
with the vectors *after* RoPE, QK-norm and any per-model transformation, i.e. exactly those whose
dot product the model uses. We register one recording function per delegate implementation
(``qkviz_sdpa``, ``qkviz_eager``, ...) which records and then calls the delegate, and switch the
model's configs to that name for the duration of a capture.

The mask function must be registered under the same name: without it transformers 5 passes
``attention_mask=None`` and padded batches silently attend to padding (DESIGN §3).

Besides ``scaling``, the interface hands over what some families add to ``scaling · q·k``:
``softcap`` (Gemma 2), ``s_aux`` / ``sinks`` (gpt-oss) and ``position_bias`` (T5). The recorder
keeps them as the layer's score terms (:mod:`._terms`). Models whose attention never calls the
interface are recorded by module hooks instead (:mod:`._modules`), which hand the same
:meth:`Recorder.record_event` what they saw.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UnsupportedModelError
from ._terms import LayerTerms, RawTerms

__all__ = [
    "Recorder",
    "MultiRecorder",
    "set_cross",
    "LayerInfo",
    "recording",
    "active",
    "eager",
    "visible_t",
    "attention_t",
    "choose_delegate",
]

_PREFIX = "qkviz_"
_STATE = threading.local()  # per thread: a stack of active recorders (forward runs in the caller's thread)


def _active() -> list[Recorder | MultiRecorder]:
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    return stack


def active() -> Recorder | MultiRecorder | None:
    """The recorder of the batch running in this thread, if any (what every backend reports to)."""
    stack = _active()
    return stack[-1] if stack else None


def visible_t(n: int, causal: bool, window: int | None, device: Any = None, n_keys: int | None = None) -> torch.Tensor:
    """Torch twin of :func:`qkviz.attention.visible`: bool ``[query_pos, key_pos]``."""
    nk = n if n_keys is None else n_keys
    diff = torch.arange(n, device=device)[:, None] - torch.arange(nk, device=device)[None, :]  # query_pos - key_pos
    ok = torch.ones((n, nk), dtype=torch.bool, device=device)
    if causal:
        ok &= diff >= 0
    if window:
        ok &= diff < window
    return ok


def attention_t(
    q: torch.Tensor,
    k: torch.Tensor,
    scaling: float,
    causal: bool,
    window: int | None,
    terms: dict[str, Any] | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Torch twin of :func:`qkviz.attention.attention_rows` over heads: ``[head, query_pos, key_pos]``.

    ``q``, ``k``: float ``[head, pos, d_head]`` (one sequence, positions ``0..n-1``; cross-attention:
    the decoder's and the encoder's tokens). ``terms``: the
    stored arrays of :mod:`._terms` restricted to these heads (``sink``, ``alibi`` ``[head]``;
    ``offset_bias`` ``[head, 2L-1]``; ``rel_index`` ``[2L-1]``; ``pos_key``, ``pos_query``
    ``[head, R, d_head]``), numpy or torch. Tested against the numpy definition.
    """
    terms = terms or {}
    n, nk, dev, dt = q.shape[-2], k.shape[-2], q.device, q.dtype

    def t(name: str) -> torch.Tensor | None:
        a = terms.get(name)
        return None if a is None else torch.as_tensor(a, device=dev)

    s = q @ k.transpose(-1, -2) * scaling
    kpos = torch.arange(nk, device=dev)
    diff = torch.arange(n, device=dev)[:, None] - kpos[None, :]  # query_pos - key_pos
    alibi, offset_bias, rel_index = t("alibi"), t("offset_bias"), t("rel_index")
    if alibi is not None:
        s = s + alibi.to(dt)[:, None, None] * kpos.to(dt)[None, None, :]
    if offset_bias is not None:
        length = (offset_bias.shape[-1] + 1) // 2
        s = s + offset_bias.to(dt)[:, -diff + length - 1]
    if rel_index is not None:
        length = (rel_index.shape[0] + 1) // 2
        r = rel_index.long()[diff + length - 1]  # [query, key]
        pos_key, pos_query = t("pos_key"), t("pos_query")
        if pos_key is not None:  # q_i . PK[r_ij]
            c2p = q @ pos_key.to(dt).transpose(-1, -2)  # [head, query, R]
            s = s + scaling * torch.gather(c2p, 2, r[None].expand(q.shape[0], -1, -1))
        if pos_query is not None:  # k_j . PQ[r_ij]
            p2c = k @ pos_query.to(dt).transpose(-1, -2)  # [head, key, R]
            s = s + scaling * torch.gather(p2c.transpose(1, 2), 1, r[None].expand(q.shape[0], -1, -1))
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    s = s.masked_fill(~visible_t(n, causal, window, dev, n_keys=nk), float("-inf"))
    sink = t("sink")
    if sink is None:
        return torch.softmax(s, dim=-1)
    col = sink.to(dt)[:, None, None].expand(-1, n, 1)
    return torch.softmax(torch.cat([s, col], dim=-1), dim=-1)[..., :-1]


@dataclass
class LayerInfo:
    """What one attention call told us about its layer (geometry, scaling, mask pattern)."""

    scaling: float
    causal: bool
    sliding_window: int | None
    n_heads: int
    n_kv_heads: int
    d_head: int
    softcap: float | None = None
    terms: tuple[str, ...] = ()


@dataclass
class Recorder:
    """Collects per-layer q/k/v of the real (non-padding) tokens of one batch at a time.

    A layer is numbered by the order of its attention call within a forward pass. For sequential
    models this equals both ``layer_idx`` and the modules' order in ``named_modules()`` (ViT-style
    modules have no ``layer_idx``), and it also numbers a module shared by several layers (ALBERT)
    correctly. Later batches must make the same calls in the same order.

    Parameters
    ----------
    layers : set of int or None
        Layers (call order = model numbering) to record; ``None``: all.
    heads : tuple of int or None
        Query heads to record; ``None``: all.
    values : bool
        Also record value vectors.
    """

    layers: set[int] | None
    heads: tuple[int, ...] | None
    values: bool = False
    # set per batch by `batch()`
    attn: str = "self"  # which attention of the model (encoder-decoder: "encoder", "decoder", "cross")
    token_index: torch.Tensor | None = None  # long [token]: flat indices b*T + t of real query tokens
    padding: torch.Tensor | None = None  # bool [B, T]: True for real query tokens
    key_index: torch.Tensor | None = None  # the same for the key tokens (other tokens in cross-attention)
    key_padding: torch.Tensor | None = None
    check_mask: bool = False
    # results of the current batch: layer -> tensor [token, head, d_head]
    q: dict[int, torch.Tensor] = field(default_factory=dict)
    k: dict[int, torch.Tensor] = field(default_factory=dict)
    v: dict[int, torch.Tensor] = field(default_factory=dict)
    # learnt on the first batch
    info: dict[int, LayerInfo] = field(default_factory=dict)
    modules: list[int] = field(default_factory=list)  # id(module) per layer, in call order
    _calls: int = 0
    seq_len: int | None = None  # T of the last batch (images: known only once the model ran)
    _head_index: torch.Tensor | None = None
    _kv_index: torch.Tensor | None = None
    problems: list[str] = field(default_factory=list)  # shared by the recorders of one model
    # score terms of the recorded layers, accumulated over every batch
    terms: dict[int, LayerTerms] = field(default_factory=dict)
    _moved: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @contextlib.contextmanager
    def batch(
        self, padding: torch.Tensor | None, *, check_mask: bool = False, key_padding: Any = "same"
    ) -> Iterator[None]:
        """Record one forward pass.

        ``padding`` is the ``[B, T]`` attention mask (1 = real token) of the queries' tokens, or
        ``None`` when every position is real (images, audio frames); ``key_padding`` that of the
        keys' tokens when they are other tokens (cross-attention; ``None``: every key is real;
        default ``"same"``: ``padding``).
        """
        self.begin(padding, check_mask=check_mask, key_padding=key_padding)
        _active().append(self)
        try:
            yield
        finally:
            _active().pop()
        self.end()

    def begin(self, padding: torch.Tensor | None, *, check_mask: bool = False, key_padding: Any = "same") -> None:
        """Start a batch (see :meth:`batch`)."""
        self.padding, self.token_index = _padding(padding)
        self.key_padding, self.key_index = (
            (self.padding, self.token_index) if isinstance(key_padding, str) else _padding(key_padding)
        )
        self.seq_len = None
        self.check_mask = check_mask
        self.q, self.k, self.v = {}, {}, {}
        self._calls = 0

    def end(self) -> None:
        """Finish a batch: raise if what the model did cannot be reproduced."""
        if self.problems:
            raise UnsupportedModelError(
                "q.k does not reproduce this model's attention: " + "; ".join(self.problems),
                reason=self.problems[0],
            )
        if self._calls == 0:
            raise UnsupportedModelError(
                "the model never called the transformers attention interface, and qkviz has no module "
                "hooks for its attention code, so its queries and keys cannot be recorded exactly "
                "(its attention code bypasses AttentionInterface)",
                reason="bypasses the attention interface",
            )
        if self.modules and self._calls != len(self.modules):
            raise UnsupportedModelError(
                f"the model made {self._calls} {self.attn} attention calls in this batch but {len(self.modules)} "
                "in the first one; qkviz needs one attention call per layer",
                reason="irregular attention calls",
            )

    # -- the hot path ---------------------------------------------------------------------------

    def record(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        kw: dict[str, Any],
    ) -> None:
        """One call of the attention interface: ``kw`` are the keyword arguments it received."""
        scaling = kw.get("scaling")
        if scaling is None:  # the interface's documented default
            scaling = query.shape[-1] ** -0.5
        causal = kw.get("is_causal")
        if causal is None:
            causal = bool(getattr(module, "is_causal", False))
        sink = kw.get("s_aux") if kw.get("s_aux") is not None else kw.get("sinks")
        raw = RawTerms(
            softcap=None if kw.get("softcap") is None else float(kw["softcap"]),
            sink=sink if isinstance(sink, torch.Tensor) else None,
            pair_bias=kw.get("position_bias"),
        )
        if sink is not None and not isinstance(sink, torch.Tensor):
            self.problems.append(f"attention sinks of an unknown form ({type(sink).__name__})")
        self.record_event(
            module,
            query,
            key,
            value,
            scaling=float(scaling),
            causal=bool(causal),
            window=kw.get("sliding_window"),
            terms=raw,
            mask=mask,
            mask_seen=True,
        )

    def record_event(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None,
        *,
        scaling: float,
        causal: bool,
        window: int | None,
        terms: RawTerms | None = None,
        mask: torch.Tensor | None = None,
        mask_seen: bool = False,
    ) -> None:
        """One attention call from any backend.

        Parameters
        ----------
        module : torch.nn.Module
            The attention module (its identity numbers the layer, with the call order).
        query, key, value : float tensor [B, H, T, D], [B, H_kv, T, D], [B, H_kv, T, D_v]
            Exactly the vectors whose dot product is the content score.
        scaling, causal, window
            ``c`` in ``c · q·k``, and the mask pattern.
        terms : RawTerms, optional
            What the model added to ``c · q·k``.
        mask, mask_seen
            The mask the model used, when the backend sees it (the interface does): compared with
            the pattern qkviz rebuilds on the first batch.
        """
        terms = terms or RawTerms()
        layer = self._calls
        self._calls += 1
        if layer >= len(self.modules):  # first batch: learn the layer order and geometry
            self._learn(layer, module, query, key, scaling, causal, window, terms)
        elif self.modules[layer] != id(module):
            self.problems.append("attention modules were called in a different order between batches")
            return
        if self.check_mask and mask_seen:
            self._check_mask(layer, query, key, mask)
        if self.layers is not None and layer not in self.layers:
            return
        if terms.names():
            state = self.terms.setdefault(layer, LayerTerms())
            for why in state.update(terms, self.key_padding):
                self.problems.append(f"layer {layer}: {why}")
        b, h, t, d = query.shape
        tk = key.shape[2]
        self.seq_len = tk
        idx, kidx = self._on(query.device, "token_index"), self._on(query.device, "key_index")
        # [B, H, T, D] -> [B*T, H, D] is a free view when query came from a transpose (the usual case);
        # one gather per tensor strips the padding.
        hk = key.shape[1]
        # Gather rows of the 2-D [B*T, H*D] view, then view as [token, H, D] (no further copy).
        q = query.transpose(1, 2).reshape(b * t, h * d)
        k = key.transpose(1, 2).reshape(b * tk, hk * d)
        if idx is not None:
            q = q.index_select(0, idx)
        if kidx is not None:
            k = k.index_select(0, kidx)
        q, k = q.view(-1, h, d), k.view(-1, hk, d)
        head_index, kv_index = self._on(query.device, "_head_index"), self._on(query.device, "_kv_index")
        if head_index is not None and kv_index is not None:
            q = q.index_select(1, head_index)
            k = k.index_select(1, kv_index)
        self.q[layer] = q
        self.k[layer] = k
        if self.values and value is not None:
            hv, dv = value.shape[1], value.shape[-1]
            v = value.transpose(1, 2).reshape(b * tk, hv * dv)
            if kidx is not None:
                v = v.index_select(0, kidx)
            v = v.view(-1, hv, dv)
            if kv_index is not None:
                v = v.index_select(1, kv_index)
            self.v[layer] = v

    def _on(self, device: torch.device, name: str) -> torch.Tensor | None:
        """An index tensor on ``device`` (with ``device_map`` layers live on different GPUs)."""
        t = getattr(self, name)
        if t is None or t.device == device:
            return t
        key = (name, str(device))
        if key not in self._moved or self._moved[key][0] is not t:
            self._moved[key] = (t, t.to(device))
        return self._moved[key][1]

    # -- first batch only -----------------------------------------------------------------------

    def _learn(
        self,
        layer: int,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        scaling: float,
        causal: bool,
        window: int | None,
        terms: RawTerms,
    ) -> None:
        if self.attn != "cross" and query.shape[2] != key.shape[2]:
            self.problems.append(
                f"layer {layer} attends from {query.shape[2]} queries to {key.shape[2]} keys "
                "(cross-attention qkviz could not tell apart, or a cache)"
            )
        n_heads, n_kv = query.shape[1], key.shape[1]
        if n_heads % n_kv:
            self.problems.append(f"{n_heads} query heads do not divide among {n_kv} key heads")
        self.modules.append(id(module))
        self.info[layer] = LayerInfo(
            scaling=float(scaling),
            causal=bool(causal),
            sliding_window=window,
            n_heads=n_heads,
            n_kv_heads=n_kv,
            d_head=query.shape[-1],
            softcap=terms.softcap,
            terms=terms.names(),
        )
        if layer == 0 and self.heads is not None:
            group = n_heads // max(n_kv, 1)
            kv = sorted({h // group for h in self.heads})
            self._head_index = torch.tensor(self.heads, device=query.device)
            self._kv_index = torch.tensor(kv, device=query.device)

    def _check_mask(self, layer: int, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Compare the mask the model passed with the one :meth:`Capture.attention` will rebuild.

        Only over real (query, key) pairs: what the model does with padding rows is irrelevant.
        """
        info = self.info[layer]
        b, t, tk = query.shape[0], query.shape[2], key.shape[2]
        dev = query.device
        qpad = self.padding if self.padding is not None else torch.ones((b, t), dtype=torch.bool, device=dev)
        kpad = self.key_padding if self.key_padding is not None else torch.ones((b, tk), dtype=torch.bool, device=dev)
        pattern = visible_t(t, info.causal, info.sliding_window, qpad.device, n_keys=tk)
        expected = kpad[:, None, :].expand(-1, t, -1) & pattern
        if mask is not None and not isinstance(mask, torch.Tensor):
            return  # e.g. flex attention's BlockMask: built by transformers from the same pattern
        if mask is None:
            # sdpa lets `is_causal` (or nothing) stand in for the mask when there is no padding.
            got = visible_t(t, info.causal, None, qpad.device, n_keys=tk).expand_as(expected)
            if bool((~kpad).any()):
                self.problems.append(
                    f"layer {layer} received no attention mask for a padded batch; padding would be "
                    "attended to (no mask function registered for this attention implementation?)"
                )
                return
        else:
            m = mask[:, 0] if mask.dim() == 4 else mask
            if m.dtype == torch.bool:
                got = m
            else:
                finite = m > torch.finfo(m.dtype).min / 2
                if bool((m[finite] != 0).any()):
                    self.problems.append(f"layer {layer}: the attention mask carries an additive bias")
                    return
                got = finite
            got = got.to(qpad.device).expand(b, t, tk)
        real = qpad[:, :, None] & kpad[:, None, :]
        if bool(((got != expected) & real).any()):
            self.problems.append(
                f"layer {layer}: the model's attention mask differs from the causal={info.causal}, "
                f"sliding_window={info.sliding_window} pattern qkviz can reproduce"
            )


def _padding(padding: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(bool [B, T] real-token mask, long [token] flat indices of real tokens)``, or ``(None, None)``."""
    if padding is None:
        return None, None
    pad = padding.bool()
    return pad, pad.reshape(-1).nonzero().squeeze(1)


class MultiRecorder:
    """Several :class:`Recorder`, one per attention of an encoder–decoder model.

    Each call goes to the recorder of its kind: ``"encoder"`` for modules inside the model's
    encoder; in the decoder, ``"cross"`` while a module runs with ``key_value_states`` (the
    module-hook backend sets :func:`set_cross`), else ``"decoder"``. Within a kind, layers are
    numbered by call order as in :class:`Recorder`.
    """

    def __init__(self, model: torch.nn.Module, layers: set[int] | None, heads: tuple[int, ...] | None, values: bool):
        self.problems: list[str] = []
        self.encoder = {id(m) for m in model.get_encoder().modules()}  # type: ignore[operator]
        self.recorders = {
            name: Recorder(layers, heads, values=values, attn=name, problems=self.problems)
            for name in ("encoder", "decoder", "cross")
        }

    def kind(self, module: torch.nn.Module) -> str:
        if id(module) in self.encoder:
            return "encoder"
        return "cross" if getattr(_STATE, "cross", False) else "decoder"

    def record(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        self.recorders[self.kind(module)].record(module, *args, **kwargs)

    def record_event(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        self.recorders[self.kind(module)].record_event(module, *args, **kwargs)

    @contextlib.contextmanager
    def batch(
        self, padding: torch.Tensor | None, decoder_padding: torch.Tensor | None, *, check_mask: bool = False
    ) -> Iterator[None]:
        """Record one forward pass: ``padding`` of the encoder's tokens, ``decoder_padding`` of the decoder's."""
        rec = self.recorders
        rec["encoder"].begin(padding, check_mask=check_mask)
        rec["decoder"].begin(decoder_padding, check_mask=check_mask)
        rec["cross"].begin(decoder_padding, check_mask=check_mask, key_padding=padding)
        _active().append(self)
        try:
            yield
        finally:
            _active().pop()
        for r in rec.values():
            r.end()


def set_cross(value: bool) -> None:
    """Mark (in this thread) that the attention calls now running are cross-attention."""
    _STATE.cross = value


def _module_eager(module: torch.nn.Module):
    """The model file's own ``eager_attention_forward`` (eager is not in the global registry)."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward
    return fn


def _make_recording(delegate: str) -> Callable[..., Any]:
    def recording_attention(module, query, key, value, attention_mask, **kwargs):
        stack = _active()
        if stack:
            stack[-1].record(module, query, key, value, attention_mask, kwargs)
        if delegate == "eager":
            fn = _module_eager(module)
        else:
            from transformers import AttentionInterface

            fn = AttentionInterface._global_mapping[delegate]
        return fn(module, query, key, value, attention_mask, **kwargs)

    recording_attention.__name__ = f"{_PREFIX}{delegate}"
    return recording_attention


_REGISTERED: set[str] = set()


def _register(delegate: str) -> str:
    """Register the recording function and its mask function under ``qkviz_<delegate>``."""
    name = f"{_PREFIX}{delegate}"
    if name in _REGISTERED:
        return name
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    masks = AttentionMaskInterface._global_mapping
    if delegate not in masks:
        raise UnsupportedModelError(
            f"attention implementation {delegate!r} has no mask function qkviz can pair with it; "
            "load the model with attn_implementation='sdpa' or 'eager'",
            reason=f"unknown attention implementation {delegate!r}",
        )
    AttentionInterface.register(name, _make_recording(delegate))
    AttentionMaskInterface.register(name, masks[delegate])
    _REGISTERED.add(name)
    return name


def _configs(model: torch.nn.Module) -> list[Any]:
    """Every distinct config of the model and its sub-models (CLIP's vision tower has its own)."""
    from transformers import PreTrainedModel

    seen: dict[int, Any] = {}
    for m in model.modules():
        if isinstance(m, PreTrainedModel):
            seen.setdefault(id(m.config), m.config)
    stack = list(seen.values())
    while stack:
        c = stack.pop()
        for key in getattr(c, "sub_configs", {}) or {}:
            sub = getattr(c, key, None)
            if sub is not None and id(sub) not in seen:
                seen[id(sub)] = sub
                stack.append(sub)
    return list(seen.values())


def choose_delegate(model: torch.nn.Module) -> str:
    """The implementation the recording function delegates to: the model's own, with eager → sdpa.

    sdpa is much faster than eager on CPU and equally exact within fp32 rounding; flash/flex
    implementations chosen by the user on a GPU are kept.
    """
    current = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if current.startswith(_PREFIX):
        current = current[len(_PREFIX) :]
    if current in ("eager", "sdpa", None):
        return "sdpa" if getattr(model, "_supports_sdpa", False) else "eager"
    return current


@contextlib.contextmanager
def recording(model: torch.nn.Module, delegate: str | None = None) -> Iterator[str]:
    """Switch every config of ``model`` to the recording implementation; restore on exit."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a transformers PreTrainedModel; qkviz records attention "
            "through transformers' AttentionInterface",
            reason="not a transformers model",
        )
    if hasattr(model, "_can_set_attn_implementation") and not model._can_set_attn_implementation():
        raise UnsupportedModelError(
            f"{type(model).__name__} does not route its attention through transformers' "
            "AttentionInterface (custom or legacy attention code), so q and k cannot be recorded "
            "where the scores are computed",
            reason="bypasses the attention interface",
            model_type=getattr(model.config, "model_type", None),
        )
    name = _register(delegate or choose_delegate(model))
    with _implementation(model, name):
        yield name


@contextlib.contextmanager
def eager(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily switch every config of ``model`` to transformers' eager attention."""
    with _implementation(model, "eager"):
        yield


@contextlib.contextmanager
def _implementation(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Set every config's attention implementation to ``name``; restore the old ones on exit."""
    configs = _configs(model)
    saved = [(c, c._attn_implementation_internal) for c in configs]
    try:
        for c in configs:
            c._attn_implementation_internal = name
        yield
    finally:
        for c, old in saved:
            c._attn_implementation_internal = old
