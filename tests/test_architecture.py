"""The package's layout keeps its promise: pipeline stages on floors, imports flowing one way, no cycle.

Every ``import`` in ``src/qkviz`` is read from the source (lazy imports inside functions included;
``if TYPE_CHECKING:`` blocks excluded, since they never run). A module may import only modules on its
own floor or below (``FLOORS``, bottom first, as ``docs/architecture.md`` draws them), and the
module graph has no cycle. The lazy face ``qkviz/__init__.py`` sits above everything and is never
imported by a stage (the version lives in ``qkviz/_version.py`` for that reason); only the command
line, the top floor, calls the public face.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "qkviz"

#: Bottom first. Numerical libraries that know arrays, not models, sit low (attention, joint,
#: metrics, analysis), so both the capture stage and the widget can call them.
FLOORS: list[tuple[str, ...]] = [
    ("_version", "errors"),
    ("_fs", "data"),
    ("attention",),
    ("joint", "metrics", "analysis"),
    ("models",),
    ("_capture",),
    ("project",),
    ("_load",),
    ("wire",),
    ("export",),
    ("widget",),
    ("cli",),
]
FACE = "qkviz"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the qkviz modules ``path`` imports at run time."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == FACE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == FACE:
                # `from pkg import sub` may import a submodule: count it when it is one
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    out.add(sub if _exists(sub) else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out.discard(name)
    return out


def _exists(module: str) -> bool:
    rel = pathlib.Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the face
    for i, names in enumerate(FLOORS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to docs/architecture.md)")


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def test_every_module_is_on_a_floor():
    for module in _graph():
        _floor(module)


def test_imports_never_run_against_the_stage_order():
    bad = []
    for module, targets in _graph().items():
        here = _floor(module)
        for target in targets:
            there = _floor(target)
            if here is None:
                continue  # the face may import anything (lazily)
            if there is None:
                if module.split(".")[1] != "cli":
                    bad.append(f"{module} imports the face {target!r} (only the command line may)")
            elif there > here:
                bad.append(f"{module} (floor {here}: {FLOORS[here]}) imports {target} (floor {there}: {FLOORS[there]})")
    assert not bad, "imports against the stage order:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components over the module graph (lazy imports included)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index and v != FACE:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    "code, ok",
    [
        ("from .. import _fs\n", True),  # a lower floor
        ("from ..widget import QKViz\n", False),  # a higher floor
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..widget import QKViz\n", True),
        ("def f():\n    from ..cli import main\n", False),  # lazy imports count
    ],
)
def test_the_checker_sees_what_it_must(tmp_path, monkeypatch, code, ok):
    """The checks above would pass vacuously if the parser missed imports: pin what it reads."""
    fake = SRC / "project" / "_recipe.py"
    monkeypatch.setattr(
        pathlib.Path,
        "read_text",
        lambda self, encoding=None: code if self == fake else pathlib.Path.read_bytes(self).decode(),
    )
    targets = _imports(fake)
    worst = max((_floor(t) or 0) for t in targets) if targets else 0
    assert (worst <= _floor("qkviz.project._recipe")) == ok
