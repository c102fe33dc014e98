"""Regenerate, or check, the console outputs that the documentation shows.

A ```` ```console ```` block placed right after the line ``<!-- docs-output -->`` (an HTML comment,
so readers never see it) shows real runs: each ``$ qkviz ...`` line in it is followed by what that
command prints (stderr, then stdout). The marked blocks of one page run in order, in one temporary
folder that holds :data:`INPUTS` (so ``qkviz capture minilm texts.txt`` finds its file and a later
``qkviz embed run.qkv`` the capture an earlier block wrote).

``tests/docs/test_docs_outputs.py`` compares every marked block with a fresh run, after
:func:`normalise`: timings masked, runs of spaces folded, absolute paths reduced to their file name,
and sizes (``(6.1 MB)``) compared within :data:`SIZE_TOLERANCE`; everything else (counts of
sentences, tokens, heads, the method, messages) must match exactly. To update the pages after a
change, run from the repository root (offline; the demo takes a few minutes on 2 cores, then its
layouts come from the layout cache)::

    .venv/bin/python docs/_outputs.py              # rewrite every marked block from fresh runs
    .venv/bin/python docs/_outputs.py --check      # only compare, as the test does
    .venv/bin/python docs/_outputs.py --skip-demo  # every block but the demo's (seconds)

mkdocs skips this file (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARK = "<!-- docs-output -->"
BLOCK = re.compile(re.escape(MARK) + r"\n```console\n(.*?)\n```", re.DOTALL)
#: The files the commands of a page find in their folder.
INPUTS = {
    "texts.txt": "The cat sat on the mat.\nA dog barked at the postman.\nParis is the capital of France.\n",
}
#: Sizes printed by the commands may differ this much (relative) between runs and versions.
SIZE_TOLERANCE = 0.15
#: Where the regenerated blocks say the commands ran (instead of a temporary folder).
SHOWN_HOME = "/home/you"

_TIME = re.compile(r"\b\d+(?:\.\d+)? (?:s|min)\b")  # the CLI prints "2.6 s", or "6.5 min" from 2 minutes on
_SIZE = re.compile(r"\((\d+(?:\.\d+)?) (B|KB|MB|GB)\)")
_ABS_PATH = re.compile(r"(?<![\w.~])/(?:[\w.+-]+/)+([\w.+-]+)")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def pages() -> list[pathlib.Path]:
    """The documentation pages that hold marked blocks."""
    return sorted(p for p in DOCS.rglob("*.md") if MARK in p.read_text())


def blocks(text: str) -> list[re.Match[str]]:
    """The marked blocks of a page (group 1: the block's text)."""
    return list(BLOCK.finditer(text))


def commands(block: str) -> list[str]:
    """The ``$ `` lines of a block, without the ``$ ``."""
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def run(command: str, cwd: pathlib.Path) -> str:
    """Run one shown command (``qkviz ...``) in ``cwd``; what it printed, stderr then stdout."""
    argv = shlex.split(command, comments=True)
    if argv[0] != "qkviz":
        raise ValueError(f"a docs-output block runs only qkviz commands, not {command!r}")
    code = "import sys; from qkviz.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv[1:]], cwd=cwd, capture_output=True, text=True, env=env, timeout=3600
    )
    out = (proc.stderr + proc.stdout).rstrip("\n")
    return out.replace(str(cwd.resolve()), SHOWN_HOME).replace(str(cwd), SHOWN_HOME)


@functools.cache
def _demo(command: str) -> str:
    """The demo's output is the same on every page: run it once per process."""
    with tempfile.TemporaryDirectory() as d:
        return run(command, pathlib.Path(d))


def fresh(block: str, cwd: pathlib.Path) -> str:
    """The block as a fresh run prints it: each command, then its output."""
    out = []
    for cmd in commands(block):
        out.append(f"$ {cmd}")
        printed = _demo(cmd) if cmd.split()[:2] == ["qkviz", "demo"] else run(cmd, cwd)
        if printed:
            out.append(printed)
    return "\n".join(out)


def normalise(text: str) -> tuple[str, list[float]]:
    """``(text with timings, sizes and paths masked, the sizes in bytes)``."""
    sizes = [float(v) * _UNITS[u] for v, u in _SIZE.findall(text)]
    text = _SIZE.sub("(<size>)", text)
    text = _TIME.sub("<t>", text)
    text = _ABS_PATH.sub(r"…/\1", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line), sizes


def differences(shown: str, new: str) -> list[str]:
    """What differs between a shown block and a fresh run, beyond timings, paths and small size changes."""
    a, sa = normalise(shown)
    b, sb = normalise(new)
    out = []
    if a != b:
        import difflib

        out.append("\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "shown", "fresh run", lineterm="")))
    if len(sa) == len(sb):
        for x, y in zip(sa, sb):
            if abs(x - y) > SIZE_TOLERANCE * max(x, y):
                out.append(f"size {x:.0f} B shown, {y:.0f} B now (more than {SIZE_TOLERANCE:.0%} apart)")
    return out


def page_folder(where: pathlib.Path) -> pathlib.Path:
    """A folder holding :data:`INPUTS`, for one page's commands."""
    where.mkdir(parents=True, exist_ok=True)
    for name, content in INPUTS.items():
        (where / name).write_text(content)
    return where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a block differs")
    ap.add_argument("--skip-demo", action="store_true", help="leave the blocks that run `qkviz demo` as they are")
    ap.add_argument("pages", nargs="*", help="pages to do (default: every page with marked blocks)")
    args = ap.parse_args(argv)
    todo = [pathlib.Path(p).resolve() for p in args.pages] or pages()
    if not args.check:
        # the shown timings are a first run's: no converted model, no cached layout from earlier runs
        cache = tempfile.TemporaryDirectory(prefix="qkviz-docs-cache-")
        os.environ["QKVIZ_CACHE_DIR"] = cache.name
    failed = False
    for page in todo:
        text = page.read_text()
        with tempfile.TemporaryDirectory() as d:
            cwd = page_folder(pathlib.Path(d))
            new_text, pos = [], 0
            for m in blocks(text):
                block = m.group(1)
                if args.skip_demo and any(c.split()[:2] == ["qkviz", "demo"] for c in commands(block)):
                    continue  # kept as shown (new_text takes it with the text up to the next block)
                new = fresh(block, cwd)
                diff = differences(block, new)
                print(f"{page.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {'differs' if diff else 'ok'}")
                for d_ in diff:
                    print(d_)
                failed |= bool(diff)
                new_text += [text[pos : m.start(1)], new]
                pos = m.end(1)
            new_text.append(text[pos:])
        if not args.check:
            page.write_text("".join(new_text))
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
