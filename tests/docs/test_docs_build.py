"""The documentation site builds in strict mode: a broken link, a missing page or image, or an API
reference entry that no longer resolves fails the build (and this test)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the API reference really rendered the docstrings (not an empty page)
    api = (site / "api" / "capture" / "index.html").read_text()
    assert "max_length" in api and "Capture" in api
    # offline: no page pulls fonts or scripts from elsewhere
    for page in site.rglob("*.html"):
        head = page.read_text().split("</head>")[0]
        assert not re.search(r"""<(script|link)[^>]+(src|href)=["']https?://""", head), page


def test_every_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    listed: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            listed.add(node)

    walk(config["nav"])
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "pages missing from the nav"
    assert listed - pages == set(), "nav entries without a page"


def test_cli_page_names_only_real_options():
    """Every `--option` the command-line page mentions exists in the parser (docs cannot rot)."""
    from qkviz.cli import build_parser

    parser = build_parser()
    known = set(parser._option_string_actions)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            known |= set(sub._option_string_actions)
    text = (ROOT / "docs" / "cli.md").read_text()
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    assert mentioned and mentioned <= known, sorted(mentioned - known)
