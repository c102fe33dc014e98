"""The ``qkviz`` command: the offline demo, and capture/embed/html/info for your own runs.

Every subcommand is a thin shell over the Python API (:func:`qkviz.capture`, :func:`qkviz.embed`,
:func:`qkviz.export.save_html`), so what works here works in a notebook and vice versa.

Exit codes follow shell conventions: 0 success, 1 an error (bad input, unreadable file, model that
cannot be loaded; the message says what to do), 2 a usage error (unknown option, missing argument),
130 interrupted with Ctrl-C. Python tracebacks are shown only with ``--debug``.

Examples
--------
.. code-block:: console

    $ qkviz demo                                # packaged MiniLM on demo sentences -> qkviz-demo.html
    $ qkviz capture minilm texts.txt -o run.qkv
    $ qkviz embed run.qkv --method tsne -o run.tsne.qke
    $ qkviz html run.tsne.qke -o run.html
    $ qkviz info run.qkv
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._fs import PAGE
from ..errors import InputError, QKVizError
from ..project._methods import DEFAULT_METHOD, METHODS

# the kinds of artefact the commands write (the `format` in a store's meta.json; see qkviz._fs)
CAPTURE = "qkviz.capture"
EMBEDDING = "qkviz.embedding"

__all__ = ["main", "build_parser"]

PROG = "qkviz"
# The demo runs qkviz.embed's default projection, on as many sentences as keep it near two minutes
# and its page near a few MB on a laptop (bench/cli_demo.py measures both).
DEMO_SENTENCES = 200
DEMO_METHOD = DEFAULT_METHOD


class _Reporter:
    """Stage names and timings on stderr; the result paths on stdout.

    Keeping chatter on stderr lets ``qkviz html ... | xargs open``-style pipelines see only paths.
    The long stages draw their own progress bars (``progress=`` of capture and embed), also on
    stderr, when it is a terminal (``bars``) and ``--quiet`` is not given.
    """

    def __init__(self, quiet: bool, stream: Any = None) -> None:
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        stream = sys.stderr if stream is None else stream
        # tqdm redraws its line with carriage returns: in a log file or a pipe that is noise
        self.bars = not quiet and bool(getattr(stream, "isatty", lambda: False)())

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        self.say(f"{name}{': ' + detail if detail else ''} ...")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = dt
        self.say(f"  {name} done in {_seconds(dt)}")

    def summary(self) -> None:
        if self.quiet or not self.timings:
            return
        width = max(map(len, self.timings))
        self.say("timings:")
        for name, dt in self.timings.items():
            self.say(f"  {name:<{width}}  {_seconds(dt):>8}")
        self.say(f"  {'total':<{width}}  {_seconds(sum(self.timings.values())):>8}")


def _seconds(dt: float) -> str:
    return f"{dt:.1f} s" if dt < 120 else f"{dt / 60:.1f} min"


def _size(path: pathlib.Path) -> str:
    n = float(path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file()))
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


def _accepted(func: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Keep the keyword arguments ``func`` accepts, dropping ``None`` (= use the library default).

    Options the user did not give stay out of the call, so the library's defaults apply and are
    documented in one place (the function's docstring), not copied into the parser.
    """
    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in kwargs.items() if v is not None}
    return {k: v for k, v in kwargs.items() if v is not None and k in params}


# ---------------------------------------------------------------------------------------------
# subcommands


def _cmd_demo(args: argparse.Namespace, rep: _Reporter) -> int:
    import qkviz
    from qkviz.data import demo_sentences, sentences_source

    _check_output(args.output, kind=PAGE, force=args.force)
    if args.save_capture:
        _check_output(args.save_capture, kind=CAPTURE, force=args.force)
    texts = demo_sentences(args.sentences)
    source = sentences_source().split(" (")[0].split(",")[0]  # "Lee news corpus", without the licence note
    rep.say(f"{len(texts)} demo sentences from the {source}")
    model = _load_model(qkviz, args, rep)
    cap = _capture(qkviz, model, texts, args, rep)
    if args.save_capture:
        with rep.stage("save capture", str(args.save_capture)):
            cap.save(args.save_capture, overwrite=args.force)
    emb = _embed(qkviz, cap, args, rep)
    out = _export(emb, args, rep)
    rep.summary()
    print(out.resolve())
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def _cmd_capture(args: argparse.Namespace, rep: _Reporter) -> int:
    import qkviz

    from ._inputs import read_inputs

    if args.force and args.resume:
        raise InputError("pass --force (replace OUTPUT) or --resume (continue it), not both")
    out = _check_output(
        args.output, kind=CAPTURE, force=args.force or args.resume, own=not args.resume,
        hint="pass --force to replace it, or --resume to continue it",
    )  # fmt: skip
    inputs = read_inputs(args.inputs, field=args.field, limit=args.limit)
    kind = "image" if isinstance(inputs, dict) else "sequence"
    rep.say(f"{len(inputs)} {kind}{'s' if len(inputs) != 1 else ''} from {args.inputs}")
    model = _load_model(qkviz, args, rep)
    # streamed to disk batch by batch (memory stays bounded by one batch); with --force into a
    # temporary folder that replaces OUTPUT only once complete
    _capture(qkviz, model, inputs, args, rep, out=out)
    rep.say(f"  wrote {out} ({_size(out)})")
    rep.summary()
    print(pathlib.Path(args.output).resolve())
    return 0


def _cmd_embed(args: argparse.Namespace, rep: _Reporter) -> int:
    import qkviz

    out = args.output or _default_embedding_path(args.run, args.method or DEFAULT_METHOD)
    _require(args.run)
    out = _check_output(out, kind=EMBEDDING, force=args.force)
    with rep.stage("load", str(args.run)):
        cap = qkviz.load(args.run)
    emb = _embed(qkviz, cap, args, rep)
    with rep.stage("save", str(out)):
        emb.save(out, overwrite=args.force)
    rep.summary()
    print(out.resolve())
    return 0


def _cmd_html(args: argparse.Namespace, rep: _Reporter) -> int:
    import qkviz

    _require(args.run)
    _check_output(args.output, kind=PAGE, force=args.force)
    with rep.stage("load", str(args.run)):
        obj = _load_any(args.run)
    if not _is_embedding(obj):
        emb = _embed(qkviz, obj, args, rep)
    else:
        if args.method is not None and args.method != obj.method:
            raise InputError(
                f"{args.run} is an embedding made with {obj.method!r}; --method {args.method} applies "
                "only to captures. Drop --method, or pass the capture file instead"
            )
        emb = obj
    out = _export(emb, args, rep)
    rep.summary()
    print(out.resolve())
    return 0


def _cmd_info(args: argparse.Namespace, rep: _Reporter) -> int:
    obj = _load_any(args.run)
    lines = _describe(obj, pathlib.Path(args.run))
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------
# shared stages


def _load_model(qkviz: Any, args: argparse.Namespace, rep: _Reporter) -> Any:
    # transformers' own "Loading weights" bar would interleave with our stage lines
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with rep.stage("load model", args.model):
        return qkviz.load_model(args.model, **_accepted(qkviz.load_model, device=getattr(args, "device", None)))


def _capture(qkviz: Any, model: Any, inputs: Any, args: argparse.Namespace, rep: _Reporter, out: Any = None) -> Any:
    n = len(inputs)
    with rep.stage("capture", f"{n} inputs"):
        kwargs = _accepted(
            qkviz.capture,
            max_length=getattr(args, "max_length", None),
            batch_size=getattr(args, "batch_size", None),
            layers=getattr(args, "layers", None),
            heads=getattr(args, "heads", None),
            dtype=getattr(args, "dtype", None),
            values=getattr(args, "values", None),
            sample=getattr(args, "sample", None),
            random_state=getattr(args, "seed", None) if getattr(args, "sample", None) is not None else None,
            max_tokens=getattr(args, "max_tokens", None),
            shard=getattr(args, "shard", None),
            progress=rep.bars,
            out=out,
            resume=getattr(args, "resume", None) or None,
            overwrite=getattr(args, "force", None) or None,
        )
        cap = qkviz.capture(model, inputs, **kwargs)
    rep.say(
        f"  {len(cap.tokens)} tokens in {len(cap.sequences)} sequences, "
        f"{len(cap.layers)} layers x {len(cap.heads)} heads"
    )
    return cap


def _embed(qkviz: Any, cap: Any, args: argparse.Namespace, rep: _Reporter) -> Any:
    method = getattr(args, "method", None)
    shown = method or inspect.signature(qkviz.embed).parameters["method"].default
    heads = len(cap.layers) * len(cap.heads)
    with rep.stage("embed", f"{shown}, {heads} heads"):
        kwargs = _accepted(
            qkviz.embed,
            method=method,
            dim=getattr(args, "dim", None),
            random_state=getattr(args, "seed", None),
            progress=rep.bars,
        )
        emb = qkviz.embed(cap, **kwargs)
    if not emb.complete:
        # Ctrl-C during the heads: embed kept (and cached) the finished ones and said so; the
        # command writes nothing half-done and exits 130, and the same command resumes from the cache
        raise KeyboardInterrupt
    return emb


def _export(emb: Any, args: argparse.Namespace, rep: _Reporter) -> pathlib.Path:
    from qkviz.export import save_html

    out = pathlib.Path(args.output)
    max_mb = getattr(args, "max_mb", None)
    kwargs: dict[str, Any] = {} if max_mb is None else {"max_bytes": None if max_mb == 0 else int(max_mb * 1e6)}
    with rep.stage("export html", str(out)):
        page = save_html(
            emb, out, top_k=args.top_k, compact=not args.exact, full=getattr(args, "full", None),
            overwrite=args.force, progress=rep.bars, **kwargs,
        )  # fmt: skip
    rep.say(f"  wrote {out} ({_size(out)})")
    if page.sampled:
        rep.say(f"  {page.note}")
    return out


def _check_output(
    path: str | os.PathLike[str], *, kind: str, force: bool, own: bool = True, hint: str = "pass --force to replace it"
) -> pathlib.Path:
    """Fail before the slow stages when ``path`` cannot be written: a typo must not cost a capture.

    ``kind`` is what the command writes (a capture, an embedding, a page). An existing output is
    replaced only with ``--force`` and only when it is of the same kind (``qkviz._fs.check_target``);
    ``own``: also refuse a store folder holding files qkviz did not write.
    """
    from .._capture._store import OWN as CAPTURE_OWN
    from .._fs import check_target
    from ..project._embedding import OWN as EMBEDDING_OWN

    out = pathlib.Path(path)
    parent = out.parent
    if not parent.exists():
        raise InputError(f"cannot write {out}: the folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise InputError(f"cannot write {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {out}: no permission to write in {parent}")
    if kind == PAGE and out.is_dir():
        raise InputError(f"cannot write {out}: it is a folder; name the file to write, e.g. {out / 'qkviz.html'}")
    what = {CAPTURE: "capture", EMBEDDING: "embedding", PAGE: "page"}[kind]
    patterns = {CAPTURE: CAPTURE_OWN, EMBEDDING: EMBEDDING_OWN}
    check_target(out, kind, what=what, overwrite=force, own=patterns.get(kind) if own else None, hint=hint)
    return out


def _require(path: str | os.PathLike[str]) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder (make one with `qkviz capture` or `qkviz embed`)")
    return p


def _default_embedding_path(run: str | os.PathLike[str], method: str) -> pathlib.Path:
    p = pathlib.Path(run)
    return p.with_name(f"{p.stem}.{method}.qke")


def _is_embedding(obj: Any) -> bool:
    from ..project import Embedding

    return isinstance(obj, Embedding)


def _load_any(path: str | os.PathLike[str]) -> Any:
    """Open a saved capture or a saved embedding, whichever ``path`` holds."""
    from .._load import load

    return load(_require(path))


def _describe(obj: Any, path: pathlib.Path) -> list[str]:
    emb = obj if _is_embedding(obj) else None
    cap = obj if emb is None else getattr(obj, "capture", None)
    tokens, seqs = obj.tokens, obj.sequences
    rows = [("file", f"{path} ({_size(path)})"), ("kind", "embedding" if emb is not None else "capture")]
    if cap is not None:
        spec = dict(cap.model)
        rows.append(("model", f"{spec.get('name', '?')} ({spec.get('model_type', '?')}, {spec.get('modality', '?')})"))
        for name, g in cap.attns.items():
            label = "" if name == "self" else f" {name}"
            families = sorted({g.family(la) for la in g.layers})
            rows += [
                (f"heads{label}", f"{len(g.layers)} layers x {len(g.heads)} heads "
                                  f"({g.n_heads} query heads, {g.n_kv_heads} kv heads, d_head {g.d_head})"),
                (f"attention{label}", ("causal" if g.causal else "bidirectional") + f", {', '.join(families)}"),
            ]  # fmt: skip
    n_trunc = int(seqs["truncated"].sum()) if "truncated" in seqs else 0
    rows += [
        ("sequences", f"{len(seqs)}" + (f" ({n_trunc} truncated)" if n_trunc else "")),
        ("tokens", f"{len(tokens)} (mean {len(tokens) / max(len(seqs), 1):.1f} per sequence)"),
    ]
    if cap is not None and cap.params:
        rows.append(("capture", ", ".join(f"{k}={v}" for k, v in sorted(cap.params.items()))))
    if cap is not None:
        rows.append(
            ("storage", f"{cap.storage_dtype}, {cap.bytes_per_token_head:.0f} bytes per token and head "
                        f"({'q, k, v' if cap.has_values else 'q, k'}; {cap.nbytes / 1e6:,.1f} MB of vectors)")
        )  # fmt: skip
    if emb is not None:
        # "method_params" is bookkeeping (which of the parameters the method took), not a parameter
        params = ", ".join(f"{k}={v}" for k, v in sorted(emb.params.items()) if k != "method_params")
        rows += [
            ("layout", f"{emb.method}, {emb.dim}-D, {len(emb.layers)} layers x {len(emb.heads)} heads"),
            ("parameters", params or "-"),
        ]
        seconds = {k: v for k, v in emb.timings.items() if not k.startswith("heads_") and "per_head" not in k}
        if seconds:
            rows.append(("timings", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


# ---------------------------------------------------------------------------------------------
# parser


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number ``>= minimum`` (bad values are usage errors, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number of at least {minimum}, got {value}")
        return value

    return parse


_positive_int, _count = _at_least(1), _at_least(0)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _heads(text: str) -> list[tuple[int, int]]:
    """``--full 3:5,10:2``: (layer, head) pairs."""
    try:
        return [(int(a), int(b)) for a, b in (item.split(":") for item in text.split(",") if item.strip())]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer:head pairs, e.g. 3:5,10:2, got {text!r}") from None


def _sample(text: str) -> int | float:
    """``--sample``: a count (``500``) or a share of the inputs (``0.1``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (500) or a share (0.1), got {text!r}") from None


def _shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: shard I of N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (shard I of N, e.g. 0/4), got {text!r}") from None
    return i, n


def _cmd_merge(args: argparse.Namespace, rep: _Reporter) -> int:
    import qkviz

    out = _check_output(args.output, kind=CAPTURE, force=args.force)
    for p in args.shards:
        _require(p)
    with rep.stage("merge", f"{len(args.shards)} shards"):
        cap = qkviz.merge(args.shards, out, overwrite=args.force)
    rep.say(f"  {len(cap.tokens)} tokens in {len(cap.sequences)} sequences; wrote {out} ({_size(out)})")
    rep.summary()
    print(out.resolve())
    return 0


def _add_embed_options(p: argparse.ArgumentParser, when: str = "") -> None:
    """``--method``, ``--dim``, ``--seed``: the projection of ``qkviz embed`` and ``qkviz html``.

    Left unset they stay out of the :func:`qkviz.embed` call, so its defaults apply.
    """
    when = f", {when}" if when else ""
    p.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=None,
        help=f"projection{when} (default: {DEFAULT_METHOD}, qkviz.embed's default)",
    )
    p.add_argument("--dim", type=int, choices=(2, 3), help=f"2 or 3 dimensions{when} (default: 2)")
    p.add_argument("--seed", type=int, help=f"random state of t-SNE/UMAP{when} (default: 0)")


def _add_html_options(p: argparse.ArgumentParser) -> None:
    from ..export import DEFAULT_TOP_K

    p.add_argument(
        "--top-k",
        type=_count,
        default=DEFAULT_TOP_K,
        metavar="K",
        help="strongest keys per query embedded for lines and views; 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="embed layouts and weights as exact float32 (larger file; default: 11-bit layouts, 8-bit weights)",
    )
    p.add_argument(
        "--max-mb",
        type=float,
        metavar="MB",
        help="size budget of the file: larger grids keep a sample of whole sequences in most heads; "
        "0: every point, whatever the size (default: 20)",
    )
    p.add_argument(
        "--full",
        type=_heads,
        metavar="L:H,...",
        help="heads kept at full resolution within the budget, e.g. 3:5,10:2",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``qkviz`` command (exposed for the docs and the tests)."""
    from .._version import __version__

    # SUPPRESS: a flag given before the subcommand is not reset by the subparser's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full Python traceback on errors")  # fmt: skip
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only the result path (no timings or progress bars)")  # fmt: skip

    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="Joint query-key embeddings of every attention head of a transformer.",
        epilog="Run `qkviz COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=description)

    demo = add(
        "demo",
        "capture, embed and export the offline demo (MiniLM on demo sentences) as one HTML file",
        "Run the whole pipeline on the packaged all-MiniLM-L6-v2 and a few hundred real news "
        "sentences, with no network access, and write one self-contained interactive HTML file.",
    )
    demo.add_argument("-o", "--output", default="qkviz-demo.html", help="HTML file to write (default: %(default)s)")
    demo.add_argument("-n", "--sentences", type=_positive_int, default=DEMO_SENTENCES,
                      help="number of demo sentences (default: %(default)s)")  # fmt: skip
    demo.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=DEMO_METHOD,
        help="projection (default: %(default)s, seconds for all heads; tsne, the library's "
        "default, takes minutes at 300 sentences on a laptop: try it with -n 100)",
    )
    demo.add_argument("--model", default="minilm", help="offline model name or model path (default: %(default)s)")
    demo.add_argument("--save-capture", metavar="PATH", help="also save the capture (for `qkviz embed`/`info`)")
    demo.add_argument("--device", help="torch device (default: CUDA when present)")
    _add_html_options(demo)
    demo.add_argument("--open", action="store_true", help="open the result in the default web browser")
    demo.add_argument("-f", "--force", action="store_true",
                      help="replace OUTPUT (and --save-capture) if they are qkviz files of the same kind")  # fmt: skip
    demo.set_defaults(func=_cmd_demo)

    cap = add(
        "capture",
        "record q and k of every head of MODEL over INPUTS",
        "Run MODEL over INPUTS and save every head's query and key vectors (post-RoPE, GQA-aware) "
        "with the token table. MODEL: an offline name (minilm, smollm2, dinov2-s14, vit-s14), a local "
        "model folder, or a Hugging Face hub name (needs network access).",
    )
    cap.add_argument("model", metavar="MODEL", help="offline name, model folder, or hub name")
    cap.add_argument("inputs", metavar="INPUTS",
                     help="text file (one sequence per line), .jsonl file (see --field), or folder of images")  # fmt: skip
    cap.add_argument("-o", "--output", required=True, help="where to save the capture, e.g. run.qkv")
    cap.add_argument("--field", default="text", help="text field of each JSONL record (default: %(default)s)")
    cap.add_argument("--limit", type=_positive_int, help="use only the first N inputs")
    cap.add_argument("--max-length", type=_positive_int, help="truncate sequences to N tokens")
    cap.add_argument("--batch-size", type=_positive_int, help="inputs per forward pass")
    cap.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: CUDA when present)")
    cap.add_argument("--layers", type=_int_list, help="comma-separated layers to keep, e.g. 0,1,-1 (default: all)")
    cap.add_argument("--heads", type=_int_list, help="comma-separated query heads to keep (default: all)")
    cap.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="storage precision (float16 and bfloat16 halve disk)",
    )
    cap.add_argument("--sample", type=_sample, help="capture a random sample of the inputs: a count or a share")
    cap.add_argument("--seed", type=int, help="random seed of --sample (default: 0)")
    cap.add_argument("--max-tokens", type=_positive_int, help="stop after N tokens (whole sequences)")
    cap.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="capture only shard I of N (batch b goes to shard b %% N); join with `qkviz merge`",
    )
    cap.add_argument("--values", action="store_true", default=None, help="also record value vectors")
    cap.add_argument("-f", "--force", action="store_true",
                     help="replace OUTPUT if it is a capture, once the new one is complete")  # fmt: skip
    cap.add_argument("--resume", action="store_true", help="continue an interrupted capture into OUTPUT")
    cap.set_defaults(func=_cmd_capture)

    emb = add(
        "embed",
        "project every head of a capture into a joint 2-D/3-D layout",
        "Compute the joint query-key embedding of every captured head and save it.",
    )
    emb.add_argument("run", metavar="RUN", help="a capture saved by `qkviz capture`")
    _add_embed_options(emb)
    emb.add_argument("-o", "--output", help="where to save it (default: RUN's name + .METHOD.qke)")
    emb.add_argument("-f", "--force", action="store_true", help="replace OUTPUT if it is an embedding")
    emb.set_defaults(func=_cmd_embed)

    html = add(
        "html",
        "write a capture or an embedding as one self-contained interactive HTML file",
        "Write one HTML file that holds the widget, the layouts and the attention detail: it opens in "
        "any modern browser with no kernel, no server and no network. A capture is embedded first.",
    )
    html.add_argument("run", metavar="RUN", help="a capture (`qkviz capture`) or embedding (`qkviz embed`)")
    html.add_argument("-o", "--output", required=True, help="HTML file to write")
    _add_embed_options(html, when="when RUN is a capture")
    _add_html_options(html)
    html.add_argument("-f", "--force", action="store_true", help="replace OUTPUT if it is a page qkviz wrote")
    html.set_defaults(func=_cmd_html)

    merge = add(
        "merge",
        "join the shard stores of `qkviz capture --shard I/N` into one capture",
        "Join shard stores into one capture store, identical to capturing every input on one machine. "
        "The shards are kept.",
    )
    merge.add_argument("shards", metavar="SHARD", nargs="+", help="the N shard stores, in any order")
    merge.add_argument("-o", "--output", required=True, help="where to save the merged capture")
    merge.add_argument("-f", "--force", action="store_true", help="replace OUTPUT if it is an existing capture")
    merge.set_defaults(func=_cmd_merge)

    info = add("info", "describe a saved capture or embedding", "Print what a saved capture or embedding holds.")
    info.add_argument("run", metavar="RUN", help="a capture or an embedding")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 and a usage message on bad arguments
    debug = getattr(args, "debug", False)
    rep = _Reporter(quiet=getattr(args, "quiet", False))
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
            return int(args.func(args, rep))
    except BrokenPipeError:
        # `qkviz info run.qkv | head`: the reader left; say nothing more (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (QKVizError, OSError) as e:
        if debug:
            raise
        print(f"{PROG} {args.command}: error: {_message(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug:
            raise
        print(
            f"{PROG} {args.command}: unexpected error: {type(e).__name__}: {_message(e)}\n"
            f"  (this is a bug in qkviz; rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings as one shell-style line (``qkviz: warning: ...``), without the source line."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _message(e: BaseException) -> str:
    """The error as one line: messages quoting other libraries' errors may hold line breaks."""
    if isinstance(e, OSError) and not isinstance(e, QKVizError) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
