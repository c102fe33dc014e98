"""Models people already hold inside an interpretability library: TransformerLens and nnsight.

* **nnsight** ``LanguageModel`` (and any nnsight ``NNsight`` model) wraps a transformers model
  and its tokenizer: qkviz unwraps them and captures the transformers model itself, so the
  capture is the one of that model, bit for bit.
* **TransformerLens** models compute attention in TransformerLens' own code (``HookedTransformer``
  in TransformerLens 2.x/3.x; ``TransformerBridge`` in 4.x, which replaces the attention modules of
  the transformers model it wraps with its own), so there is no transformers attention call to
  record. :class:`LensModel` presents such a model to the capture stage as a model: it takes
  ``input_ids`` / ``attention_mask`` like a transformers model, and with ``output_attentions=True``
  returns the model's own attention patterns (``hook_pattern``), the reference of every exactness
  check. The capture stage's TransformerLens backend (``qkviz._capture._lens``) reads q and k at
  the model's hook points.

Nothing here imports TransformerLens or nnsight: a model is recognised by the package its class
comes from, so both stay optional.
"""

from __future__ import annotations

import types
from typing import Any

from ..errors import ModelLoadError, UnsupportedModelError

__all__ = ["lens_wrapper", "is_lens", "is_lens_model", "is_nnsight", "unwrap_nnsight", "lens_model"]

# The TransformerLens classes whose blocks run one causal or bidirectional self-attention per
# layer with the hook points qkviz reads (``blocks.{layer}.attn.hook_q`` ...).
LENS_CLASSES = ("HookedTransformer", "TransformerBridge")


def _package(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def is_lens(obj: Any) -> bool:
    """A TransformerLens model (any class of the ``transformer_lens`` package with hook points)."""
    return _package(obj) == "transformer_lens" and hasattr(obj, "hook_dict") and hasattr(obj, "cfg")


def is_nnsight(obj: Any) -> bool:
    """An nnsight model (``LanguageModel``, ``NNsight``...): an envoy around a torch module."""
    return _package(obj) == "nnsight" and "_module" in getattr(obj, "__dict__", {})


def unwrap_nnsight(obj: Any, tokenizer: Any = None, processor: Any = None) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, processor)`` of the transformers model an nnsight model wraps.

    nnsight keeps the module it wraps as ``_module`` (nnsight 0.4–0.8) and, for a
    ``LanguageModel``, its tokenizer as ``tokenizer``. A model created with ``dispatch=False`` (the
    default for a hub name) holds no weights until its first trace: it is refused, since running it
    would capture a model on the ``meta`` device.
    """
    module = obj.__dict__["_module"]
    if not getattr(obj, "dispatched", True) or any(p.is_meta for p in module.parameters()):
        raise ModelLoadError(
            f"this nnsight {type(obj).__name__} has not loaded its weights yet (nnsight loads them on the "
            "first trace); create it with dispatch=True, or call .dispatch() first",
            spec=obj,
        )
    tokenizer = tokenizer if tokenizer is not None else getattr(obj, "tokenizer", None)
    if processor is None:
        processor = getattr(obj, "processor", None) or getattr(obj, "image_processor", None)
    return module, tokenizer, processor


class _Patterns:
    """What :meth:`LensModel.forward` returns: ``attentions`` like a transformers model output."""

    def __init__(self, attentions: tuple[Any, ...] | None):
        self.attentions = attentions


def _lens_module_class() -> type:
    import torch

    class LensModel(torch.nn.Module):
        """A TransformerLens model seen as a transformers-like model by the capture stage.

        ``config`` holds what the capture stage reads from a transformers config (layers, heads,
        longest sequence); ``forward(input_ids, attention_mask, output_attentions=False)`` runs
        the TransformerLens model and, when asked, returns its ``hook_pattern`` of every layer as
        ``attentions`` (``[batch, head, query_pos, key_pos]``, call order = layer).
        """

        main_input_name = "input_ids"

        def __init__(self, lens: Any):
            super().__init__()
            self.lens = lens
            cfg = lens.cfg
            hf = _bridged_hf(lens)
            self.config = types.SimpleNamespace(
                model_type=getattr(getattr(hf, "config", None), "model_type", None) or "transformer_lens",
                num_hidden_layers=int(cfg.n_layers),
                num_attention_heads=int(cfg.n_heads),
                max_position_embeddings=int(cfg.n_ctx) if getattr(cfg, "n_ctx", None) else None,
                is_encoder_decoder=False,
            )

        def _ignores_padding(self) -> bool:
            """HookedTransformer applies ``attention_mask`` in its causal mask only."""
            blocks = getattr(self.lens, "blocks", [])
            attn = blocks[0].attn if len(blocks) else None
            return (
                attn is not None
                and getattr(attn, "original_component", None) is None
                and getattr(self.lens.cfg, "attention_dir", "causal") != "causal"
            )

        def _run(self, input_ids: Any, attention_mask: Any) -> None:
            kw: dict[str, Any] = {"attention_mask": attention_mask, "return_type": None}
            if type(self.lens).__name__ == "HookedTransformer":
                # every block runs; the final norm and the unembedding (a large matmul) are skipped
                kw["stop_at_layer"] = self.config.num_hidden_layers
            self.lens(input_ids, **kw)

        def pattern_hooks(self) -> list[Any]:
            """The ``hook_pattern`` hook point of every layer, in layer order."""
            return [self.lens.hook_dict[f"blocks.{i}.attn.hook_pattern"] for i in range(self.config.num_hidden_layers)]

        def forward(
            self, input_ids: Any, attention_mask: Any = None, output_attentions: bool = False, **_: Any
        ) -> _Patterns:
            if attention_mask is not None and bool((attention_mask == 0).any()) and self._ignores_padding():
                raise UnsupportedModelError(
                    "this HookedTransformer's bidirectional attention ignores attention_mask, so in a padded "
                    "batch real tokens would attend to padding; capture it with batch_size=1 (or texts of "
                    "one token length)",
                    reason="HookedTransformer bidirectional attention ignores padding",
                )
            if not output_attentions:
                self._run(input_ids, attention_mask)
                return _Patterns(None)
            got: list[Any] = []
            handles = [
                h.register_forward_hook(lambda m, a, out: got.append(out.detach())) for h in self.pattern_hooks()
            ]
            try:
                self._run(input_ids, attention_mask)
            finally:
                for hd in handles:
                    hd.remove()
            return _Patterns(tuple(got))

    return LensModel


_CLASS: list[type] = []


def lens_wrapper(lens: Any) -> Any:
    """The :class:`LensModel` of a TransformerLens model (built on first use, one per model; the
    class is made on first use so that importing qkviz does not import torch)."""
    if not _CLASS:
        _CLASS.append(_lens_module_class())
    wrapper = lens.__dict__.get("_qkviz_lens_model")
    if wrapper is None:
        wrapper = _CLASS[0](lens)
        # the wrapper lives as long as the model (a capture keeps only a weak reference to it)
        lens.__dict__["_qkviz_lens_model"] = wrapper
    return wrapper


def is_lens_model(obj: Any) -> bool:
    """A :class:`LensModel` wrapper."""
    return bool(_CLASS) and isinstance(obj, _CLASS[0])


def _bridged_hf(lens: Any) -> Any:
    """The transformers model a ``TransformerBridge`` wraps, or ``None``."""
    if type(lens).__name__ != "TransformerBridge":
        return None
    try:
        return lens.original_model
    except AttributeError:
        return None


def lens_model(lens: Any, tokenizer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(wrapper, tokenizer, spec)`` for a TransformerLens model, or raise why it cannot be captured."""
    name = type(lens).__name__
    cfg = lens.cfg
    if name not in LENS_CLASSES:
        raise UnsupportedModelError(
            f"TransformerLens {name} is not supported: qkviz reads HookedTransformer (TransformerLens 2-3) "
            "and TransformerBridge (TransformerLens 4) models",
            reason=f"TransformerLens {name}",
        )
    hf = _bridged_hf(lens)
    if name == "TransformerBridge" and getattr(getattr(hf, "config", None), "is_encoder_decoder", False):
        raise UnsupportedModelError(
            "TransformerBridge over an encoder-decoder model is not supported; capture the transformers model "
            "itself with targets= (qkviz.capture(hf_model, sources, targets=...))",
            reason="TransformerLens encoder-decoder bridge",
        )
    if getattr(cfg, "is_multimodal", False) or getattr(cfg, "is_audio_model", False):
        raise UnsupportedModelError(
            "qkviz reads TransformerLens models of text only; capture the transformers model itself",
            reason="TransformerLens multimodal model",
        )
    tokenizer = tokenizer if tokenizer is not None else getattr(lens, "tokenizer", None)
    if tokenizer is None:
        raise ModelLoadError(
            f"this TransformerLens {name} has no tokenizer; pass capture(model, texts, tokenizer=...)", spec=lens
        )
    spec = {
        "name": str(getattr(cfg, "model_name", None) or name),
        "model_type": getattr(getattr(hf, "config", None), "model_type", None)
        or getattr(cfg, "original_architecture", None),
        "class": name,
        "modality": "text",
        "encoder_decoder": False,
        "source": "transformer_lens",
    }
    if hf is not None:
        spec["processed_weights"] = bool(getattr(lens, "_weights_processed", False))
    return lens_wrapper(lens), tokenizer, spec
