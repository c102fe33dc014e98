"""Package-level promises: light imports, a complete public namespace, a shipped bundle."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import pytest

import qkviz


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_qkviz_is_light():
    # Showing a saved embedding must not pay for the model stack (style guide rule 1).
    loaded = _modules_after("import qkviz")
    assert not {"torch", "transformers", "openTSNE", "umap"} & loaded


def test_widget_and_export_do_not_import_the_model_stack():
    loaded = _modules_after("import qkviz.widget, qkviz.export")
    assert not {"torch", "transformers", "openTSNE", "umap"} & loaded


@pytest.mark.parametrize("name", qkviz.__all__)
def test_every_public_name_resolves(name):
    assert getattr(qkviz, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        qkviz.nope  # noqa: B018


@pytest.mark.parametrize("name", ["widget.js", "page.js"])
def test_bundle_ships_with_the_package_and_fetches_nothing(name):
    bundle = importlib.resources.files("qkviz") / "_bundle" / name
    assert bundle.is_file(), "run `pip install -e .` or `cd js && npm run build` to build the bundle"
    text = bundle.read_text(encoding="utf-8")
    assert len(text) > 1000
    for needle in ('from"http', "from 'http", 'from "http', 'import("http', "import('http"):
        assert needle not in text, f"the bundle imports from the network: {needle!r}"
