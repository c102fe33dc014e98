"""The screenshots of the docs: each one is made by docs/_screenshots.py, used by a page, and small."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).parents[2]
DOCS = ROOT / "docs"
MAX_BYTES = 300_000


def _made_by_script() -> set[str]:
    """Names the script writes: the keys of its SHOTS table and every literal save(..., "name").

    Read from its source, not imported: importing it would start nothing, but it pulls in the
    browser test helpers, which this cheap test does not need.
    """
    tree = ast.parse((DOCS / "_screenshots.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SHOTS" for t in node.targets):
            names |= {k.value for k in node.value.keys}
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("save", "finish"):
            last = node.args[-1] if node.args else None
            if isinstance(last, ast.Constant) and isinstance(last.value, str):
                names.add(last.value)
    return {f"{n}.png" for n in names}


def test_every_screenshot_is_made_by_the_script_and_used_by_a_page():
    pictures = {p.name for p in (DOCS / "img").glob("*.png")}
    text = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    used = set(re.findall(r"\]\((?:\.\./)*img/([\w.-]+\.png)\)", text))
    made = _made_by_script()
    assert "matrix.png" in made and "sentence.png" in made  # the parsing above found the table
    assert pictures == made, "docs/img and docs/_screenshots.py disagree"
    assert used == pictures, f"unused: {sorted(pictures - used)}, missing: {sorted(used - pictures)}"


def test_screenshots_are_small():
    for png in (DOCS / "img").glob("*.png"):
        assert png.stat().st_size <= MAX_BYTES, f"{png.name}: {png.stat().st_size} bytes"


def test_every_image_has_alt_text():
    for page in DOCS.rglob("*.md"):
        for alt in re.findall(r"!\[([^\]]*)\]\([^)]*\.png\)", page.read_text()):
            assert len(alt.split()) >= 5, f"{page.name}: alt text too short: {alt!r}"
