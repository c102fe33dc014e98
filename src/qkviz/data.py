"""Demo inputs that ship inside installed packages: real sentences and real images, no downloads.

Texts come from the Lee news corpus bundled in gensim's wheel (read by path; gensim itself is never
imported, so its heavy dependencies are not needed). Without gensim, CPython's own
``pydoc_data.topics`` (the Python reference, PSF licence) is used instead. Images come from the
sample data inside the scikit-image, scikit-learn and matplotlib wheels.

Examples
--------
>>> from qkviz.data import demo_sentences
>>> len(demo_sentences(5))
5
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re
from typing import Any

from .errors import InputError, MissingDependencyError

__all__ = ["demo_sentences", "demo_images", "sentences_source", "images_source", "induction_inputs"]

_SPLIT = re.compile(r"(?<=[.!?])\s+")


def _package_dir(name: str) -> pathlib.Path | None:
    """Locate an installed package without importing it (importing gensim would pull scipy)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _lee_files() -> list[pathlib.Path] | None:
    root = _package_dir("gensim")
    if root is None:
        return None
    files = [root / "test" / "test_data" / f for f in ("lee_background.cor", "lee.cor")]
    return files if all(f.is_file() for f in files) else None


_PYDOCS = "CPython documentation topics (pydoc_data.topics), PSF licence"


@functools.lru_cache(maxsize=1)
def _python_docs() -> tuple[tuple[str, ...], str]:
    import pydoc_data.topics as topics  # stdlib: always there

    text = re.sub(r"\s+", " ", "\n".join(topics.topics.values()))
    sents = [s for s in _SPLIT.split(text) if 6 <= len(s.split()) <= 40 and s[:1].isupper()]
    return tuple(sents), _PYDOCS


@functools.lru_cache(maxsize=1)
def _all_sentences() -> tuple[tuple[str, ...], str]:
    files = _lee_files()
    if files is not None:
        docs: list[str] = []
        for f in files:
            # lee.cor holds a latin-1 pound sign; utf-8 would fail on it.
            docs += f.read_text(encoding="latin-1").splitlines()
        sents = [s for d in docs for s in _SPLIT.split(d.strip()) if len(s.split()) >= 4]
        return tuple(sents), (
            "Lee news corpus (Lee, Pincombe & Welsh 2005), bundled in the gensim wheel "
            "(gensim/test/test_data/lee_background.cor + lee.cor); research data distributed with "
            "gensim (LGPL-2.1 package) without a separate licence text"
        )
    return _python_docs()


def sentences_source(corpus: str = "news") -> str:
    """Where :func:`demo_sentences` reads ``corpus`` from, and under what licence."""
    return _corpus(corpus)[1]


def _corpus(corpus: str) -> tuple[tuple[str, ...], str]:
    if corpus == "news":
        return _all_sentences()
    if corpus == "python-docs":
        return _python_docs()
    raise InputError(f"corpus must be 'news' or 'python-docs', got {corpus!r}")


def demo_sentences(n: int | None = None, corpus: str = "news") -> list[str]:
    """Real English sentences for demos, tests and benchmarks.

    Parameters
    ----------
    n : int, optional
        How many (the first ``n``, in corpus order, so results are reproducible). ``None``: all of
        them (2,768 from the Lee corpus; about 2,200 from the Python documentation).
    corpus : {"news", "python-docs"}
        ``"news"``: the Lee news corpus (the Python documentation when gensim is not installed);
        ``"python-docs"``: always the Python reference's own prose (another genre, e.g. to compare
        heads across genres with :func:`qkviz.analysis.compare_heads`).

    Returns
    -------
    list of str
    """
    sents, _ = _corpus(corpus)
    if n is None:
        return list(sents)
    if not isinstance(n, int) or n < 0:
        raise InputError(f"n must be a non-negative int or None, got {n!r}")
    return list(sents[:n])


_SKIMAGE = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
    "immunohistochemistry", "colorwheel", "camera", "coins", "moon", "brick", "grass",
    "gravel", "text", "page", "clock", "cell", "horse", "logo",
]  # fmt: skip


def images_source() -> str:
    """Where :func:`demo_images` reads its images from, and under what licence."""
    return (
        "scikit-image sample data (mostly public domain / CC0, see skimage.data docstrings), "
        "scikit-learn sample images china.jpg and flower.jpg (CC-BY-2.0), "
        "matplotlib's grace_hopper.jpg (public domain)"
    )


def demo_images(n: int | None = None) -> dict[str, object]:
    """Real photographs and scientific images bundled in installed wheels, as RGB PIL images.

    Greyscale, binary and RGBA images are converted to RGB here (the same coercion
    :func:`qkviz.capture` applies to user images).

    Parameters
    ----------
    n : int, optional
        How many (the first ``n`` in a fixed order: colour photographs first). ``None``: all 25.

    Returns
    -------
    dict of str to PIL.Image.Image
        Name -> image, in a stable order.
    """
    if n is not None and (not isinstance(n, int) or n < 0):
        raise InputError(f"n must be a non-negative int or None, got {n!r}")
    try:
        import numpy as np
        from PIL import Image
        from skimage import data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "demo images need scikit-image (and pillow): pip install scikit-image",
            package="scikit-image",
            install="pip install scikit-image",
        ) from e
    out: dict[str, object] = {}

    def full() -> bool:
        return n is not None and len(out) >= n

    for name in _SKIMAGE:
        if full():
            return out
        a = getattr(data, name)()
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        out[name] = Image.fromarray(a).convert("RGB")
    if not full():
        left, right, _ = data.stereo_motorcycle()
        out["motorcycle_left"] = Image.fromarray(left).convert("RGB")
        out["motorcycle_right"] = Image.fromarray(right).convert("RGB")
    try:
        if not full():
            from sklearn.datasets import load_sample_images

            for f, a in zip(["china", "flower"], load_sample_images().images):
                out[f] = Image.fromarray(a).convert("RGB")
        if not full():
            import matplotlib.cbook as cbook

            with cbook.get_sample_data("grace_hopper.jpg", asfileobj=True) as fh:  # type: ignore[union-attr]
                out["grace_hopper"] = Image.open(fh).convert("RGB")
    except ImportError:  # scikit-learn / matplotlib are optional extras on top of scikit-image
        pass
    return dict(list(out.items())[:n]) if n is not None else out


def _word_pool(tokenizer: Any, size: int, rng: Any) -> list[tuple[str, int]]:
    """Up to ``size`` distinct words that each tokenise, after a space, to exactly one token."""
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    n_vocab = len(tokenizer)
    pool: dict[int, str] = {}
    for i in rng.permutation(n_vocab):
        if len(pool) >= size:
            break
        if int(i) in specials:
            continue
        w = tokenizer.decode([int(i)]).strip()
        # whole alphabetic words of 3+ letters: no fragments, digits or punctuation that merge
        if len(w) < 3 or not (w.isascii() and w.isalpha()):
            continue
        ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in pool and ids[0] not in specials:
            pool[ids[0]] = w
    return [(w, i) for i, w in pool.items()]


def induction_inputs(tokenizer: Any, n: int = 20, length: int = 25, seed: int = 0) -> list[str]:
    """The standard induction probe: texts that are a random token span repeated once.

    Each text tokenises to the model's special tokens (if it adds any) around ``r + r``, where
    ``r`` is ``length`` distinct tokens drawn at random from the tokenizer's vocabulary (Olsson et
    al. 2022, "In-context learning and induction heads"). In the repeat, token ``i`` has exactly
    one earlier copy at ``j = i - length``, and an induction head attends from ``i`` to ``j + 1``:
    the ``induction`` score of :func:`qkviz.analysis.head_scores` on a capture of these texts.

    The tokens are whole alphabetic words of three or more letters that tokenise, after a space,
    to exactly one token (so that the texts round-trip through the tokenizer, which is checked);
    random sub-word pieces would merge with their neighbours when the text is tokenised again.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        The model's own (``qkviz.load_model(name).tokenizer``).
    n : int
        Number of texts.
    length : int
        Tokens in the random span (each text holds ``2 * length`` plus the special tokens).
    seed : int
        Same seed, same texts.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        Bad ``n`` / ``length``, or a tokenizer with too few single-token words, or texts that do not
        tokenise back to the repeated span.

    Examples
    --------
    >>> lm = qkviz.load_model("minilm")                                  # doctest: +SKIP
    >>> texts = induction_inputs(lm.tokenizer, n=2, length=5, seed=0)   # doctest: +SKIP
    >>> cap = qkviz.capture(lm, texts)                                  # doctest: +SKIP
    >>> cap.head_scores()["induction"].max()                            # doctest: +SKIP
    """
    import numpy as np

    for name, v, lo in (("n", n, 1), ("length", length, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"{name} must be an int >= {lo}, got {v!r}")
    if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
        raise InputError(
            f"induction_inputs needs the model's tokenizer (qkviz.load_model(name).tokenizer), got {type(tokenizer).__name__}"
        )
    rng = np.random.default_rng(seed)
    pool = _word_pool(tokenizer, max(4 * length, 1000), rng)
    if len(pool) < length:
        raise InputError(f"the tokenizer has only {len(pool)} single-token words; ask for length <= {len(pool)} tokens")
    texts = []
    for _ in range(n):
        span = [pool[i] for i in rng.choice(len(pool), size=length, replace=False)]
        ids = [i for _, i in span] * 2
        words = " ".join(w for w, _ in span)
        for text in (" " + words + " " + words, words + " " + words):
            if tokenizer(text, add_special_tokens=False)["input_ids"] == ids:
                texts.append(text)
                break
        else:
            raise InputError(
                "the repeated span does not tokenise back to itself with this tokenizer; "
                "induction_inputs supports WordPiece, byte-level BPE and SentencePiece tokenizers"
            )
    return texts
