"""The :class:`Capture` container: per-head queries and keys plus the tables that explain each row.

Made by :func:`qkviz.capture`, by :meth:`Capture.from_arrays` (vectors computed elsewhere) or by
:func:`load` (a store on disk, read lazily one head at a time). Exact attention is recomputed from
the stored vectors by :mod:`qkviz.attention`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._fs import check_target, clean_stale, replace_dir, temp_sibling, writing
from ..attention import ScoreFunction, attention_rows, position_effect, score_terms
from ..errors import InputError, StoreError
from ._dtypes import decode
from ._geometry import HeadGeometry
from ._store import (
    FORMAT,
    OWN,
    VERSION,
    DiskTensors,
    MemoryTensors,
    read_store,
    tensor_kind,
    terms_key,
    write_store,
)

if TYPE_CHECKING:
    from ._store import StoreContents

__all__ = ["Capture", "load", "fingerprint"]


@dataclass(eq=False)
class Capture:
    """Per-head queries and keys of many inputs, with the token table that explains each row.

    Made by :func:`qkviz.capture`, saved by :meth:`save`, read back by :func:`qkviz.load`. The
    attributes follow ``docs/internals.md``.

    Attributes
    ----------
    tokens : pandas.DataFrame
        One row per (real, non-padding) token; the index is the ``token`` axis.
    sequences : pandas.DataFrame
        One row per input: ``seq``, ``text`` (or image name), ``n_tokens``, ``offset``, ``truncated``.
    attns : dict of str to HeadGeometry
        Every attention of the model that was captured, by name: ``{"self": ...}`` for most
        models; ``"encoder"``, ``"decoder"`` and ``"cross"`` for encoder–decoder models. Each holds
        the captured layers and heads, head counts, ``d_head``, and how the model scores (causal
        mask, per-layer scaling, sliding window, soft-cap, score terms). :attr:`geometry` is the
        only one of a single-attention capture, and its fields are also attributes of the capture
        (``cap.layers``, ``cap.scaling``...).
    streams : tuple of str
        Names of the token streams, indexed by ``tokens["stream"]``: ``("tokens",)``, or
        ``("encoder", "decoder")`` for encoder–decoder models (whose ``tokens`` then hold, per
        sequence, the encoder's rows and then the decoder's, and whose ``sequences`` say
        ``n_encoder``).
    model, params : dict
        Model spec and capture parameters.
    images : numpy.ndarray or None
        ``uint8 [seq, h, w, 3]`` thumbnails of the images as the model saw them.
    terms : dict of str to numpy.ndarray
        The extra score terms of the layers that have some, keyed ``"<name>.<layer>"`` (``sink``,
        ``alibi`` ``[head]``; ``offset_bias`` ``[head, 2L − 1]``; ``rel_index`` ``[2L − 1]``;
        ``pos_key``, ``pos_query`` ``[head, R, d_head]``; every query head of the model). Empty for
        plain models. :meth:`score` turns them into one head's :class:`qkviz.attention.ScoreFunction`.

    Examples
    --------
    >>> cap = qkviz.capture("minilm", ["The cat sat on the mat."])    # doctest: +SKIP
    >>> cap.q(0, 0).shape                                               # doctest: +SKIP
    (9, 32)
    """

    tokens: pd.DataFrame
    sequences: pd.DataFrame
    attns: dict[str, HeadGeometry]
    model: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    images: np.ndarray | None = None
    terms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _tensors: MemoryTensors | DiskTensors | None = field(default=None, repr=False)
    streams: tuple[str, ...] = ("tokens",)
    # Not state: a one-head memo of q/k and the sequence bounds (so that attention() over every
    # sequence of a head reads the head once), and a handle on the model that made the capture
    # (ModelHandle, set by qkviz.capture; never saved or pickled).
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _model_handle: Any = field(default=None, init=False, repr=False, compare=False)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        q: Mapping[tuple[int, int], np.ndarray] | Mapping[tuple[str, int, int], np.ndarray],
        k: Mapping[tuple[int, int], np.ndarray] | Mapping[tuple[str, int, int], np.ndarray],
        tokens: pd.DataFrame,
        geometry: HeadGeometry | Mapping[str, HeadGeometry],
        *,
        v: Mapping[tuple[int, int], np.ndarray] | None = None,
        sequences: pd.DataFrame | None = None,
        model: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        images: np.ndarray | None = None,
        terms: Mapping[str, np.ndarray] | None = None,
        streams: tuple[str, ...] | None = None,
    ) -> Capture:
        """Wrap vectors computed elsewhere (another framework, a test) as a capture.

        Parameters
        ----------
        q : dict of (layer, head) to float array [token, d_head]
            Queries of every head in ``geometry``. With several attentions, keyed
            ``(attn, layer, head)`` and holding the rows of the attention's query stream.
        k, v : dict of (layer, kv_head) to float array [token, d_head]
            Keys (and optionally values) of every key/value head the heads use (with several
            attentions: ``(attn, layer, kv_head)``, rows of the key stream).
        tokens : pandas.DataFrame
            One row per token with at least ``seq`` and ``pos``; tokens of one sequence contiguous
            and in position order.
        geometry : HeadGeometry, or dict of str to HeadGeometry
            One attention, or several by name (encoder–decoder: then ``tokens`` needs a
            ``stream`` column and ``sequences`` an ``n_encoder`` column).
        sequences : pandas.DataFrame, optional
            Derived from ``tokens`` when omitted (``text`` empty).
        model, params : dict, optional
            Recorded as given.
        images : uint8 array [seq, h, w, 3], optional
        terms : dict of str to array, optional
            Score terms as in :attr:`terms` (``"<name>.<layer>"``), for the layers whose
            ``geometry.terms`` name them.
        streams : tuple of str, optional
            Names of the token streams (default ``("tokens",)``, or ``("encoder", "decoder")``).

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> g = HeadGeometry(layers=(0,), heads=(0,), n_heads=1, n_kv_heads=1, d_head=4, causal=False,
        ...                  scaling={0: 0.5})
        >>> tokens = pd.DataFrame({"seq": [0, 0, 0], "pos": [0, 1, 2]})
        >>> rng = np.random.default_rng(0)
        >>> cap = Capture.from_arrays({(0, 0): rng.normal(size=(3, 4))}, {(0, 0): rng.normal(size=(3, 4))},
        ...                           tokens, g)
        >>> cap.attention(0, 0, seq=0).shape
        (3, 3)
        """
        if not isinstance(tokens, pd.DataFrame) or not {"seq", "pos"} <= set(tokens.columns):
            raise InputError("tokens must be a pandas DataFrame with 'seq' and 'pos' columns")
        attns = dict(geometry) if isinstance(geometry, Mapping) else {geometry.attn: geometry}
        several = len(attns) > 1
        stream = tokens["stream"].to_numpy() if "stream" in tokens.columns else np.zeros(len(tokens), np.int8)
        index: dict[str, tuple[int, ...]] = {}
        chunks: dict[str, dict[int, list[np.ndarray]]] = {}
        for name, g in attns.items():
            rows = {"q": int((stream == g.query_stream).sum()), "k": int((stream == g.key_stream).sum())}
            rows["v"] = rows["k"]
            for kind, arrays in (("q", q), ("k", k), ("v", v)):
                if arrays is None:
                    continue
                tk = tensor_kind(kind, name)
                index[tk] = g.heads if kind == "q" else g.kv_heads
                chunks[tk] = {}
                for layer in g.layers:
                    per_head = []
                    for h in index[tk]:
                        key = (name, layer, h) if several else (layer, h)
                        if key not in arrays:
                            what = "head" if kind == "q" else "kv head"
                            raise InputError(f"{kind} lacks ({name}, layer {layer}, {what} {h}) of the geometry")
                        arr = np.asarray(arrays[key], np.float32)  # type: ignore[index]
                        if arr.shape != (rows[kind], g.d_head):
                            raise InputError(
                                f"{kind}[{key}] must be [rows={rows[kind]}, d_head={g.d_head}], got {arr.shape}"
                            )
                        per_head.append(arr)
                    chunks[tk][layer] = [np.stack(per_head, axis=1)]  # [row, head, d_head]
        if sequences is None:
            sequences = sequences_from_tokens(tokens)
        return cls(
            tokens=tokens.reset_index(drop=True),
            sequences=sequences,
            attns=attns,
            model=dict(model or {}),
            params=dict(params or {}),
            images=images,
            terms={key: np.asarray(a) for key, a in (terms or {}).items()},
            _tensors=MemoryTensors(chunks, index, [len(tokens)]),
            streams=tuple(streams) if streams is not None else (("encoder", "decoder") if several else ("tokens",)),
        )

    # -- geometry ---------------------------------------------------------------------------------

    @property
    def geometry(self) -> HeadGeometry:
        """The geometry of a single-attention capture (see :attr:`attns` for encoder–decoder models)."""
        if len(self.attns) != 1:
            raise InputError(
                f"this capture holds {', '.join(self.attns)} attention; pass attn= (one of {list(self.attns)}) "
                "or read cap.attns[name]"
            )
        return next(iter(self.attns.values()))

    def _geom(self, attn: str | None) -> HeadGeometry:
        if attn is None:
            return self.geometry
        if attn not in self.attns:
            raise InputError(f"attn={attn!r}: this capture holds {list(self.attns)}")
        return self.attns[attn]

    @property
    def layers(self) -> tuple[int, ...]:
        """Captured layers (model numbering)."""
        return self.geometry.layers

    @property
    def heads(self) -> tuple[int, ...]:
        """Captured query heads (model numbering)."""
        return self.geometry.heads

    @property
    def n_heads(self) -> int:
        return self.geometry.n_heads

    @property
    def n_kv_heads(self) -> int:
        return self.geometry.n_kv_heads

    @property
    def d_head(self) -> int:
        return self.geometry.d_head

    @property
    def causal(self) -> bool:
        return self.geometry.causal

    @property
    def scaling(self) -> dict[int, float]:
        return self.geometry.scaling

    @property
    def sliding_window(self) -> dict[int, int | None]:
        return self.geometry.sliding_window

    @property
    def n_tokens(self) -> int:
        """Number of captured tokens (rows of :attr:`tokens`, every stream)."""
        return len(self.tokens)

    @property
    def kv_heads(self) -> tuple[int, ...]:
        """The key heads stored (those used by :attr:`heads`)."""
        return self.geometry.kv_heads

    @property
    def path(self) -> pathlib.Path | None:
        """The store this capture reads from, or ``None`` for a capture held in memory."""
        return self._tensors.root if isinstance(self._tensors, DiskTensors) else None

    def kv_head(self, head: int, attn: str | None = None) -> int:
        """The key/value head that query head ``head`` attends with (GQA/MQA share one)."""
        self._check_head(head, attn)
        return self._geom(attn).kv_head(head)

    def _check_layer(self, layer: int, attn: str | None = None) -> None:
        g = self._geom(attn)
        if layer not in g.layers:
            raise InputError(f"layer {layer!r} was not captured; captured layers: {list(g.layers)}")

    def _check_head(self, head: int, attn: str | None = None) -> None:
        g = self._geom(attn)
        if head not in g.heads:
            raise InputError(f"head {head!r} was not captured; captured heads: {list(g.heads)}")

    def _stream(self) -> np.ndarray:
        if "stream" in self.tokens.columns:
            return self.tokens["stream"].to_numpy()
        return np.zeros(len(self.tokens), np.int8)

    def query_rows(self, attn: str | None = None) -> np.ndarray:
        """The token rows whose queries :meth:`q` returns, in order (all rows for one stream).

        Returns
        -------
        numpy.ndarray
            int64 ``[query]``: indices into :attr:`tokens`.
        """
        return np.flatnonzero(self._stream() == self._geom(attn).query_stream)

    def key_rows(self, attn: str | None = None) -> np.ndarray:
        """The token rows whose keys :meth:`k` returns, in order.

        Returns
        -------
        numpy.ndarray
            int64 ``[key]``: indices into :attr:`tokens`.
        """
        return np.flatnonzero(self._stream() == self._geom(attn).key_stream)

    # -- vectors ----------------------------------------------------------------------------------

    def q(self, layer: int, head: int, attn: str | None = None) -> np.ndarray:
        """Queries of one head.

        ``attn`` names the attention of an encoder–decoder capture (``"encoder"``, ``"decoder"``,
        ``"cross"``); its rows are then those of :meth:`query_rows`.

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        g = self._geom(attn)
        self._check_layer(layer, attn)
        self._check_head(head, attn)
        return decode(self._source().get(tensor_kind("q", g.attn), layer, head))

    def k(self, layer: int, head: int, attn: str | None = None) -> np.ndarray:
        """Keys seen by query head ``head`` (those of its kv head; rows of :meth:`key_rows`).

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        g = self._geom(attn)
        self._check_layer(layer, attn)
        kv = self.kv_head(head, attn)
        return decode(self._source().get(tensor_kind("k", g.attn), layer, kv))

    def v(self, layer: int, head: int, attn: str | None = None) -> np.ndarray:
        """Values of query head ``head``'s kv head (only when captured with ``values=True``).

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        g = self._geom(attn)
        if not self._source().has(tensor_kind("v", g.attn)):
            raise InputError("value vectors were not captured; pass values=True to qkviz.capture")
        self._check_layer(layer, attn)
        kv = self.kv_head(head, attn)
        return decode(self._source().get(tensor_kind("v", g.attn), layer, kv))

    @property
    def has_values(self) -> bool:
        """Whether :meth:`v` is available."""
        return bool(self._source().has("v"))

    @property
    def storage_dtype(self) -> str:
        """How the vectors are stored: ``"float32"``, ``"float16"`` or ``"bfloat16"``
        (:meth:`q`, :meth:`k`, :meth:`v` always return float32)."""
        return self._source().dtype()

    @property
    def nbytes(self) -> int:
        """Bytes of the stored vectors (q of every captured head, k and v of the kv heads they use,
        every attention of an encoder-decoder capture)."""
        return self._source().nbytes()

    @property
    def bytes_per_token_head(self) -> float:
        """Stored bytes per token and captured head: :attr:`nbytes` / (tokens × layers × heads).

        With grouped-query attention a key head's bytes are shared by the query heads that use it.
        """
        return self.nbytes / max(1, self.n_tokens * len(self.layers) * len(self.heads))

    def _source(self) -> MemoryTensors | DiskTensors:
        if self._tensors is None:
            raise InputError("this Capture holds no vectors; make one with qkviz.capture or Capture.from_arrays")
        return self._tensors

    # -- exact attention --------------------------------------------------------------------------

    def _seq_rows(self, seq: int) -> tuple[int, int]:
        bounds = self._memo.get("bounds")
        if bounds is None:
            bounds = self._memo["bounds"] = (
                self.sequences["offset"].to_numpy(np.int64),
                self.sequences["n_tokens"].to_numpy(np.int64),
            )
        if not 0 <= int(seq) < len(bounds[0]):
            raise InputError(f"seq {seq!r} out of range: the capture holds {len(bounds[0])} sequences")
        return int(bounds[0][int(seq)]), int(bounds[1][int(seq)])

    def _head_qk(self, layer: int, head: int, attn: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """q and k of one head, kept until another head is asked for (read-only arrays)."""
        hit = self._memo.get("qk")
        if hit is None or hit[0] != (attn, layer, head):
            q, k = self.q(layer, head, attn), self.k(layer, head, attn)
            q.setflags(write=False)
            k.setflags(write=False)
            hit = self._memo["qk"] = ((attn, layer, head), q, k)
        return hit[1], hit[2]

    def _stream_slice(self, seq: int, stream: int) -> slice:
        """Rows of ``seq`` in one stream, as a slice of that stream's rows (what q/k return)."""
        off, n = self._seq_rows(seq)
        if len(self.streams) == 1:
            return slice(off, off + n)
        n_enc = int(self.sequences["n_encoder"].iloc[int(seq)])
        first, count = (off, n_enc) if stream == 0 else (off + n_enc, n - n_enc)
        before = int((self._stream()[:first] == stream).sum())
        return slice(before, before + count)

    def score(self, layer: int, head: int, attn: str | None = None) -> ScoreFunction:
        """How ``head`` of ``layer`` scores: its scaling, soft-cap, sink, ALiBi slope or position tables.

        Returns
        -------
        qkviz.attention.ScoreFunction
        """
        g = self._geom(attn)
        self._check_layer(layer, attn)
        self._check_head(head, attn)
        fields: dict[str, Any] = {}
        for name in g.terms.get(layer, ()):
            key = terms_key(name, layer, g.attn)
            if key not in self.terms:
                if name == "alibi":  # no sequence had two tokens yet: any slope gives the same attention
                    continue
                raise StoreError(f"the capture lacks its score term {key!r}; re-run the capture")
            a = self.terms[key]
            fields[name] = a if name == "rel_index" else (float(a[head]) if a.ndim == 1 else a[head])
        return ScoreFunction(scaling=float(g.scaling[layer]), softcap=g.cap(layer), **fields)

    def _seq_vectors(self, layer: int, head: int, seq: int, attn: str | None) -> tuple[np.ndarray, np.ndarray]:
        g = self._geom(attn)
        q, k = self._head_qk(layer, head, attn)
        return q[self._stream_slice(seq, g.query_stream)], k[self._stream_slice(seq, g.key_stream)]

    def attention(self, layer: int, head: int, seq: int, attn: str | None = None) -> np.ndarray:
        """The head's attention probabilities over one sequence, recomputed exactly from q and k.

        With the head's score function (:meth:`score`: ``scaling · q·k`` plus whatever the model
        adds) and the causal and sliding-window masks the model used
        (:func:`qkviz.attention.attention_rows`). For cross-attention, the rows are the sequence's
        decoder tokens and the columns its encoder tokens.

        Returns
        -------
        numpy.ndarray
            float32 ``[query_pos, key_pos]``; rows sum to 1 (to ``1 − sink share`` for a head
            with a sink, as in the model).
        """
        q, k = self._seq_vectors(layer, head, seq, attn)
        g = self._geom(attn)
        return attention_rows(q, k, self.score(layer, head, attn), g.causal, g.window(layer)).astype(np.float32)

    def sink_share(self, layer: int, head: int, seq: int, attn: str | None = None) -> np.ndarray:
        """The share of each query's attention that goes to the head's sink ("attend to nothing").

        Returns
        -------
        numpy.ndarray
            float32 ``[query_pos]``; zeros for heads without a sink.
        """
        q, k = self._seq_vectors(layer, head, seq, attn)
        g = self._geom(attn)
        _, sink = attention_rows(q, k, self.score(layer, head, attn), g.causal, g.window(layer), sink_share=True)
        return sink.astype(np.float32)

    def score_terms(self, layer: int, head: int, seq: int, attn: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The content part ``scaling · q·k`` and the position part of the head's scores over one sequence.

        Before the soft-cap and the mask (see :func:`qkviz.attention.score_terms`).

        Returns
        -------
        content, position : numpy.ndarray
            float32 ``[query_pos, key_pos]`` each; ``position`` is zeros for heads without a
            position term.
        """
        q, k = self._seq_vectors(layer, head, seq, attn)
        content, position = score_terms(q, k, self.score(layer, head, attn))
        return content.astype(np.float32), position.astype(np.float32)

    def position_effect(self, layer: int, head: int, seq: int, attn: str | None = None) -> np.ndarray:
        """How much each query's attention owes to the position term (0..1; see
        :func:`qkviz.attention.position_effect`).

        Returns
        -------
        numpy.ndarray
            float32 ``[query_pos]``.
        """
        q, k = self._seq_vectors(layer, head, seq, attn)
        g = self._geom(attn)
        return position_effect(q, k, self.score(layer, head, attn), g.causal, g.window(layer)).astype(np.float32)

    def layout_vectors(self, layer: int, head: int, attn: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The vectors a layout of this head is made from, and whose dot product it shows.

        The queries and keys, except for ALiBi heads: ``q' = [q, 1/c]`` and ``k' = [k, m·p_j]``, whose
        scaled dot product ``c·q'·k' = c·q·k + m·p_j`` is the head's whole score, so the layout of
        the augmented vectors is exact. (The added axis is the key's position times the slope.)
        Other position terms (relative buckets, DeBERTa) are not in the vectors: the layout shows
        the content part of the scores.

        Returns
        -------
        q, k : numpy.ndarray
            float32 ``[token, d]`` (``d = d_head``, or ``d_head + 1`` for ALiBi heads).
        """
        q, k = self.q(layer, head, attn), self.k(layer, head, attn)
        f = self.score(layer, head, attn)
        if f.alibi is None:
            return q, k
        pos = self.tokens["pos"].to_numpy()[self.key_rows(attn)].astype(np.float32)
        qa = np.concatenate([q, np.full((len(q), 1), 1.0 / f.scaling, np.float32)], axis=1)
        ka = np.concatenate([k, (np.float32(f.alibi) * pos)[:, None]], axis=1)
        return qa, ka

    def head_scores(self, cells: Any = None, *, value_weighted: bool | None = None, seqs: Any = None) -> pd.DataFrame:
        """The head atlas: previous-token, first-token, self, special, entropy, mean-distance and
        induction scores of every head, pooled over every query of the capture.

        See :func:`qkviz.analysis.head_scores` for the parameters and ``docs/concepts/head-scores.md``
        for the definitions.

        Returns
        -------
        pandas.DataFrame
            One row per (layer, head).
        """
        from ..analysis import head_scores

        return head_scores(self, cells, value_weighted=value_weighted, seqs=seqs)

    def attention_blocks(
        self, layer: int, head: int, seqs: Any = None, *, attn: str | None = None, max_values: int = 1 << 22
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The head's exact attention over many sequences, a block of similar lengths at a time.

        The vectors are read once and each block is one vectorised call of
        :func:`qkviz.attention.attention_rows` (the same formula as :meth:`attention`), so the
        attention of a whole corpus costs about one pass over it rather than one call per sequence.
        Heads with a position term, and encoder-decoder captures, go one sequence at a time.

        Parameters
        ----------
        layer, head : int
        seqs : sequence of int, optional
            Which sequences (default: all).
        attn : str, optional
            As in :meth:`attention`.
        max_values : int
            Largest block, in attention weights (``seq × pos × pos``; float64, so 32 MiB by default).

        Yields
        ------
        seqs : int64 [seq]
            The block's sequences (sorted by length, so padding stays small).
        lengths : int64 [seq]
            Query rows of each (its key rows for cross-attention: the blocks are then single sequences).
        attention : float64 [seq, query_pos, key_pos]
            Zero past each sequence's length.
        """
        self._check_layer(layer, attn)
        offsets = self.sequences["offset"].to_numpy(np.int64)
        lengths = self.sequences["n_tokens"].to_numpy(np.int64)
        ids = np.arange(len(offsets)) if seqs is None else np.asarray(seqs, np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(offsets)):
            raise InputError(f"seqs out of range: the capture holds {len(offsets)} sequences")
        f = self.score(layer, head, attn)
        if f.has_position_term or len(self.streams) > 1:  # one sequence at a time, with its positions
            for s in ids.tolist():
                a = self.attention(layer, head, s, attn).astype(np.float64)
                yield np.array([s]), np.array([a.shape[0]]), a[None]
            return
        g = self._geom(attn)
        # read-only, without the copy q() and k() hand out: the blocks only gather from them
        source = self._source()
        q = decode(source.get(tensor_kind("q", g.attn), layer, head, copy=False))
        k = decode(source.get(tensor_kind("k", g.attn), layer, self.kv_head(head, attn), copy=False))
        window = g.window(layer)
        ids = ids[np.argsort(lengths[ids], kind="stable")]
        start = 0
        while start < ids.size:
            shortest = int(lengths[ids[start]])
            stop = start + 1
            # grow the block while the padding stays small (lengths within ~15 %) and it fits
            while (
                stop < ids.size
                and int(lengths[ids[stop]]) <= max(shortest + 4, shortest * 1.15)
                and (stop - start + 1) * int(lengths[ids[stop]]) ** 2 <= max_values
            ):
                stop += 1
            block = ids[start:stop]
            n = lengths[block]
            t = int(n.max())
            pos = np.arange(t)
            rows = offsets[block, None] + np.minimum(pos[None, :], n[:, None] - 1)  # padding repeats a real row
            yield block, n, attention_rows(q[rows], k[rows], f, g.causal, window, lengths=n)
            start = stop

    def verify(self, model: Any, inputs: Any = None, *, seqs: Any = None, batch_size: int = 8) -> pd.DataFrame:
        """Compare :meth:`attention` with the model's own eager attention probabilities.

        Parameters
        ----------
        model : model spec or loaded model
            The model that made the capture (anything :func:`qkviz.load_model` accepts).
        inputs : list, optional
            The original inputs; needed for images (texts are re-read from :attr:`sequences`).
        seqs : sequence of int, optional
            Which sequences to check (default: all).
        batch_size : int
            Sequences per eager forward pass (padded batches, as in the capture).

        Returns
        -------
        pandas.DataFrame
            ``layer``, ``head``, ``max_abs_error`` (over real query/key pairs); ``df.attrs["max"]``.
        """
        from ._checks import verify

        return verify(self, model, inputs, seqs=seqs, batch_size=batch_size)

    # -- persistence ------------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "model": self.model, "params": self.params, **attns_json(self)}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> pathlib.Path:
        """Write the capture to a store directory (bit-exact; see :mod:`qkviz._capture._store`).

        The store is written in full under a hidden temporary name next to ``path`` and only then
        swapped in (see ``docs/data-safety.md``), so an existing capture at ``path`` is replaced
        only by a complete one, and a failed or killed save leaves it as it was.

        Parameters
        ----------
        path : path-like
            The store folder.
        overwrite : bool
            Replace a capture already at ``path``. Whatever ``overwrite`` says, qkviz never replaces
            an embedding, a folder it did not write, or a store holding files it did not write.

        Returns
        -------
        pathlib.Path

        Raises
        ------
        StoreError
            ``path`` holds something else than a capture, or the disk is full or read-only (the old
            capture is then unchanged).
        """
        path = pathlib.Path(path)
        check_target(path, FORMAT, what="capture", overwrite=overwrite, own=OWN)
        clean_stale(path, own=OWN)
        tmp = temp_sibling(path)
        with writing(path, "capture", cleanup=tmp):
            write_store(tmp, self._header(), self._source(), self.tokens, self.sequences, self.images, self.terms)
        replace_dir(tmp, path, kind=FORMAT, what="capture", own=OWN)
        return path

    def __getstate__(self) -> dict[str, Any]:
        # The memo is a cache and the model handle refers to a live model: neither is pickled.
        state = dict(self.__dict__)
        state["_memo"] = {}
        state["_model_handle"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"Capture(model={self.model.get('name')!r}, sequences={len(self.sequences)}, "
            f"tokens={self.n_tokens}, attns={list(self.attns)})"
        )


#: Capture settings that change the vectors (the device and attention backend do not).
_FINGERPRINT_PARAMS = ("dtype", "max_length", "truncation", "layers", "heads")


def fingerprint(cap: Any) -> str | None:
    """A digest of what a capture holds: its inputs, model, geometry and the settings that change
    its vectors; ``None`` for objects that are not a :class:`Capture`.

    An embedding records it, so that it never attaches another capture saved at the same path.
    It reads only the tables (the vectors themselves are covered by the store's checksums), and is
    the same for a capture in memory and for that capture saved and loaded again.
    """
    if not isinstance(cap, Capture):
        return None
    import hashlib
    import json

    h = hashlib.sha256()
    tok = cap.tokens
    for col in ("seq", "pos", "token_id"):
        if col in tok:
            h.update(col.encode() + np.asarray(tok[col], np.int64).tobytes())
    if "token_id" not in tok and "token" in tok:
        h.update("\x00".join(map(str, tok["token"])).encode())
    seqs = cap.sequences
    h.update(np.asarray(seqs["n_tokens"], np.int64).tobytes())
    if "text" in seqs:
        h.update("\x00".join(map(str, seqs["text"])).encode())
    record = {
        "model": [cap.model.get("name"), cap.model.get("class")],
        "geometry": {name: g.to_json() for name, g in sorted(cap.attns.items())},
        "params": {k: cap.params.get(k) for k in _FINGERPRINT_PARAMS},
    }
    h.update(json.dumps(record, sort_keys=True, default=str).encode())
    return h.hexdigest()


def sequences_from_tokens(tokens: pd.DataFrame) -> pd.DataFrame:
    seq = tokens["seq"].to_numpy()
    ids, offsets, counts = np.unique(seq, return_index=True, return_counts=True)
    return pd.DataFrame(
        {
            "seq": ids.astype(np.int32),
            "text": [""] * len(ids),
            "n_tokens": counts.astype(np.int32),
            "offset": offsets.astype(np.int64),
            "truncated": np.zeros(len(ids), bool),
        }
    )


def attns_json(cap: Capture | dict[str, HeadGeometry], streams: tuple[str, ...] = ("tokens",)) -> dict[str, Any]:
    """The geometry part of ``meta.json``: flat fields for one attention (as in version 1), else
    ``attns`` (a list of geometries) and ``streams``."""
    if isinstance(cap, Capture):
        attns, streams = cap.attns, cap.streams
    else:
        attns = cap
    if len(attns) == 1 and "self" in attns:
        return attns["self"].to_json()
    return {"attns": [g.to_json() for g in attns.values()], "streams": list(streams)}


def attns_from_json(meta: dict[str, Any]) -> tuple[dict[str, HeadGeometry], tuple[str, ...]]:
    """Inverse of :func:`attns_json`."""
    if "attns" in meta:
        geoms = [HeadGeometry.from_json(d) for d in meta["attns"]]
        return {g.attn: g for g in geoms}, tuple(meta.get("streams") or ("encoder", "decoder"))
    return {"self": HeadGeometry.from_json(meta)}, ("tokens",)


def _from_contents(c: StoreContents) -> Capture:
    attns, streams = attns_from_json(c.meta)
    return Capture(
        tokens=c.tokens,
        sequences=c.sequences,
        attns=attns,
        streams=streams,
        model=c.meta["model"],
        params=dict(c.meta["params"]),
        images=c.images,
        terms=c.terms,
        _tensors=c.tensors,
    )


def load(path: str | os.PathLike[str]) -> Capture:
    """Open a capture store written by :meth:`Capture.save` or a streaming :func:`qkviz.capture`.

    Tensors stay on disk and load per head on first use. A partial store (an interrupted streaming
    capture) loads with a warning and holds the sequences finished so far.

    Raises
    ------
    StoreError
        Missing, truncated or corrupted files, or an unknown format version.
    """
    return _from_contents(read_store(pathlib.Path(path)))
