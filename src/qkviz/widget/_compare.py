"""``qkviz.compare``: two embeddings of the same texts side by side, linked, with a difference atlas.

Two :class:`~qkviz.QKViz` widgets in one row. The second embedding's heads are rotated onto the
first's (:func:`qkviz.project.align_to`), so the same head looks the same way up in both. The
widgets are linked in the browser (``ipywidgets.jslink``, no kernel round trip): focused head,
colour, search and line settings always; the selection and the hovered point when both hold the
same token table (the same texts, tokenised alike), so a point in one is the same token in the
other. Each widget's atlas gains ``js``, the head's mean Jensen–Shannon divergence between the two
captures' attention rows (:func:`qkviz.analysis.compare_heads`), so the cells can be tinted and
ranked by how much each head changed.

Notebook only: the standalone page of each widget works (``save_html``), without the link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import WidgetDataError

if TYPE_CHECKING:
    from ..project import Embedding
    from . import QKViz

__all__ = ["compare", "Compare"]

#: Traits linked between the two widgets whatever their tokens.
_ALWAYS = ("layer", "head", "color", "color_mod", "size_by_norm", "search_query", "search_regex", "lines_k",
           "lines_threshold", "theme")  # fmt: skip
#: Traits linked only when both widgets hold the same points (same tokens, same grid).
_SAME_POINTS = ("_selection", "_hover")


def _same_points(a: Embedding, b: Embedding) -> bool:
    if a.cells != b.cells or a.n_tokens != b.n_tokens:
        return False
    col = "token_id" if "token_id" in a.tokens and "token_id" in b.tokens else "token"
    return bool(
        np.array_equal(a.tokens["seq"].to_numpy(), b.tokens["seq"].to_numpy())
        and np.array_equal(a.tokens[col].to_numpy(), b.tokens[col].to_numpy())
    )


def _with(scores: pd.DataFrame | None, diff: pd.DataFrame | None) -> pd.DataFrame | None:
    if diff is None:
        return scores
    extra = diff[["layer", "head", "js"]]
    if scores is None:
        return extra
    return scores.merge(extra, on=["layer", "head"], how="left")


class Compare:
    """Two linked widgets (see :func:`compare`).

    Attributes
    ----------
    left, right : QKViz
        The two widgets (``right`` shows the aligned second embedding).
    scores : pandas.DataFrame or None
        Per head: ``js`` and the change ``delta_<score>`` of every head score (second minus first);
        None without captures.
    linked_points : bool
        Whether selection and hover are linked (both hold the same tokens).
    links : list of ipywidgets.Link
        The browser-side links between the two widgets' traits.
    """

    def __init__(self, left: QKViz, right: QKViz, scores: pd.DataFrame | None, linked_points: bool, box: Any):
        self.left, self.right, self.scores, self.linked_points = left, right, scores, linked_points
        self.links: list[Any] = []
        self._box = box

    @property
    def widget(self) -> Any:
        """The ipywidgets box holding both views (what a notebook displays)."""
        return self._box

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self._box._repr_mimebundle_(**kwargs)

    def focus(self, layer: int, head: int) -> None:
        """Show one head in both widgets."""
        self.left.focus(layer, head)
        self.right.focus(layer, head)

    def __repr__(self) -> str:
        return f"Compare({self.left.embedding!r}, {self.right.embedding!r}, linked_points={self.linked_points})"


def compare(
    a: Embedding,
    b: Embedding,
    *,
    align: bool = True,
    labels: tuple[str, str] = ("A", "B"),
    height: int = 480,
    **widget_params: Any,
) -> Compare:
    """Two embeddings of the same texts side by side: aligned frames, linked views, a difference atlas.

    Parameters
    ----------
    a, b : Embedding
        E.g. one model's checkpoints, or base and fine-tuned, embedded over the same texts. Two
        corpora work too (then nothing but the focused head and settings is linked, and ``js`` is
        missing: see :func:`qkviz.analysis.compare_heads`).
    align : bool
        Rotate ``b``'s heads onto ``a``'s over the shared tokens (:func:`qkviz.project.align_to`).
    labels : (str, str)
        Titles above the two views.
    height : int
        Of each view.
    **widget_params
        To both :class:`~qkviz.QKViz` widgets (``color``, ``faithfulness`` ...).

    Returns
    -------
    Compare
        Displays as the two views; ``.scores`` holds the per-head differences.

    Examples
    --------
    >>> cmp = qkviz.compare(emb_base, emb_tuned)                  # doctest: +SKIP
    >>> cmp.scores.sort_values("js", ascending=False).head()    # doctest: +SKIP
    """
    import ipywidgets

    from ..analysis import compare_heads, match_sequences
    from ..project import Embedding, align_to
    from . import QKViz

    for name, e in (("a", a), ("b", b)):
        if not isinstance(e, Embedding):
            raise WidgetDataError(f"compare needs two qkviz Embeddings; {name} is a {type(e).__name__}")
    if align and match_sequences(a, b):  # two corpora share no token: nothing to align on
        b = align_to(b, a)
    diff = compare_heads(a.capture, b.capture) if a.capture is not None and b.capture is not None else None
    scores_kw = widget_params.pop("scores", None)
    both: list[bool | pd.DataFrame | None] = []
    for e in (a, b):
        if scores_kw is False:
            both.append(False)
        elif e.capture is not None:
            both.append(_with(e.head_scores(), diff))
        else:
            both.append(_with(None, diff) if diff is not None else False)
    left = QKViz(a, height=height, scores=both[0], **widget_params)
    right = QKViz(b, height=height, scores=both[1], **widget_params)
    linked = _same_points(a, b)
    for v in (left, right):
        v._meta = {**v._meta, "link_hover": linked}
    links = [ipywidgets.jslink((left, name), (right, name)) for name in _ALWAYS + (_SAME_POINTS if linked else ())]
    cols = [ipywidgets.VBox([ipywidgets.HTML(f"<b>{label}</b>"), v]) for label, v in zip(labels, (left, right))]
    box = ipywidgets.HBox(cols, layout=ipywidgets.Layout(width="100%"))
    out = Compare(left, right, diff, linked, box)
    out.links = links
    return out
