"""``HeadGeometry``: the shape of a captured attention stack and how it scores (frozen, JSON-able).

Learnt from the first forward pass of a capture, written into the store's ``meta.json``, read back
by :func:`qkviz.load`, and needed by everything that recomputes attention from stored vectors.
One class, so a new field (say, a soft-capping constant) is one edit rather than six.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, StoreError

__all__ = ["HeadGeometry"]


@dataclass(frozen=True)
class HeadGeometry:
    """Which heads were captured and how the model scores them.

    Attributes
    ----------
    layers, heads : tuple of int
        Captured layers and query heads, model numbering, sorted.
    n_heads, n_kv_heads, d_head : int
        Model geometry: query head ``h`` uses key/value head ``h // (n_heads // n_kv_heads)``.
    causal : bool
        Query ``i`` sees only the keys ``j <= i`` of its own sequence.
    scaling : dict of int to float
        Per layer, the factor in ``softmax(scaling · q·k + mask)``.
    sliding_window : dict of int to int or None
        Per layer, the window ``w`` such that query ``i`` sees only keys ``j > i - w``.
    softcap : dict of int to float or None
        Per layer, the soft-capping constant ``cap`` of ``cap · tanh(score / cap)`` (Gemma 2).
    terms : dict of int to tuple of str
        Per layer, the extra score terms the capture stores (``"sink"``, ``"alibi"``,
        ``"offset_bias"``, ``"rel_index"``, ``"pos_key"``, ``"pos_query"``; see
        :attr:`qkviz.Capture.terms`). Empty for plain ``scaling · q·k`` layers.
    attn : str
        Which attention of the model this is: ``"self"`` (a model with one kind), or for
        encoder–decoder models ``"encoder"`` (encoder self-attention), ``"decoder"`` (decoder
        self-attention) or ``"cross"`` (decoder queries, encoder keys).
    query_stream, key_stream : int
        The token streams (``tokens["stream"]``) its queries and keys come from: 0 = the encoder's
        (or the only) tokens, 1 = the decoder's.

    Examples
    --------
    >>> g = HeadGeometry(layers=(0, 1), heads=(0, 1, 2, 3), n_heads=4, n_kv_heads=2, d_head=8,
    ...                  causal=True, scaling={0: 0.35, 1: 0.35})
    >>> g.kv_head(3), g.kv_heads
    (1, (0, 1))
    >>> HeadGeometry.from_json(g.to_json()) == g
    True
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    n_heads: int
    n_kv_heads: int
    d_head: int
    causal: bool
    scaling: dict[int, float]
    sliding_window: dict[int, int | None] = field(default_factory=dict)
    softcap: dict[int, float | None] = field(default_factory=dict)
    terms: dict[int, tuple[str, ...]] = field(default_factory=dict)
    attn: str = "self"
    query_stream: int = 0
    key_stream: int = 0

    def __post_init__(self) -> None:
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise InputError(f"{self.n_heads} query heads cannot share {self.n_kv_heads} key heads evenly")
        missing = [la for la in self.layers if la not in self.scaling]
        if missing:
            raise InputError(f"no scaling given for layers {missing}")

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 for plain multi-head attention)."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` attends with (GQA/MQA share one)."""
        return int(head) // self.group

    @property
    def kv_heads(self) -> tuple[int, ...]:
        """The key/value heads used by :attr:`heads` (those a store holds)."""
        return tuple(sorted({self.kv_head(h) for h in self.heads}))

    def window(self, layer: int) -> int | None:
        """The sliding window of ``layer`` (``None``: the whole sequence)."""
        return self.sliding_window.get(int(layer))

    def cap(self, layer: int) -> float | None:
        """The soft-capping constant of ``layer`` (``None``: no cap)."""
        return self.softcap.get(int(layer))

    def family(self, layer: int) -> str:
        """How ``layer`` scores: ``"plain"``, ``"soft-capped"``, ``"sink"``, ``"alibi"``, ``"relative"``
        or ``"disentangled"`` (as :attr:`qkviz.attention.ScoreFunction.family`)."""
        names = set(self.terms.get(int(layer), ()))
        if names & {"pos_key", "pos_query"}:
            return "disentangled"
        if "offset_bias" in names:
            return "relative"
        if "alibi" in names:
            return "alibi"
        if "sink" in names:
            return "sink"
        return "soft-capped" if self.cap(layer) is not None else "plain"

    # -- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (dict keys become strings)."""
        return {
            "layers": list(self.layers),
            "heads": list(self.heads),
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_head": self.d_head,
            "causal": self.causal,
            "scaling": {str(k): float(v) for k, v in self.scaling.items()},
            "sliding_window": {str(k): v for k, v in self.sliding_window.items()},
            "softcap": {str(k): v for k, v in self.softcap.items() if v is not None},
            "terms": {str(k): list(v) for k, v in self.terms.items() if v},
            "attn": self.attn,
            "query_stream": self.query_stream,
            "key_stream": self.key_stream,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HeadGeometry:
        """Inverse of :meth:`to_json`; a damaged header raises :class:`qkviz.StoreError`."""
        try:
            return cls(
                layers=tuple(int(x) for x in d["layers"]),
                heads=tuple(int(x) for x in d["heads"]),
                n_heads=int(d["n_heads"]),
                n_kv_heads=int(d["n_kv_heads"]),
                d_head=int(d["d_head"]),
                causal=bool(d["causal"]),
                scaling={int(k): float(v) for k, v in d["scaling"].items()},
                sliding_window={
                    int(k): (None if v is None else int(v)) for k, v in (d.get("sliding_window") or {}).items()
                },
                softcap={int(k): float(v) for k, v in (d.get("softcap") or {}).items()},
                terms={int(k): tuple(str(x) for x in v) for k, v in (d.get("terms") or {}).items()},
                attn=str(d.get("attn", "self")),
                query_stream=int(d.get("query_stream", 0)),
                key_stream=int(d.get("key_stream", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError, InputError) as e:
            raise StoreError(f"the capture's geometry in meta.json is damaged or incomplete ({e!r})") from e
