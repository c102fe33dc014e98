"""Ground truth for exactness tests: the model's own eager attention, one unpadded input at a time.

Running each input alone (batch of one, no padding) makes the reference independent of how the
capture handled padding: if padding leaked into a padded capture batch, hidden states drift from
layer 1 on and the comparison fails.
"""

from __future__ import annotations

import numpy as np


def eager_single(model, inputs: dict) -> list[np.ndarray]:
    """Per layer ``float32 [head, query_pos, key_pos]`` for one unpadded input."""
    import torch

    from qkviz._capture._checks import eager_attentions

    with torch.inference_mode():
        att = eager_attentions(model, inputs)
    return [a[0].float().cpu().numpy() for a in att]


def max_error_texts(cap, model, tokenizer, texts) -> float:
    """Largest |captured - eager| over every layer, head, text and real (query, key) pair."""
    import torch

    worst = 0.0
    for s in range(len(texts)):
        ids = torch.from_numpy(cap.tokens["token_id"][cap.tokens["seq"] == s].to_numpy()[None].copy())
        ref = eager_single(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        for layer in cap.layers:
            for h in cap.heads:
                worst = max(worst, float(np.abs(cap.attention(layer, h, s) - ref[layer][h]).max()))
    return worst


def max_error_images(cap, model, processor, images) -> float:
    from qkviz._capture._inputs import to_rgb

    worst = 0.0
    for s, img in enumerate(images):
        px = processor(images=[to_rgb(img, s)], return_tensors="pt")["pixel_values"]
        ref = eager_single(model, {"pixel_values": px})
        for layer in cap.layers:
            for h in cap.heads:
                worst = max(worst, float(np.abs(cap.attention(layer, h, s) - ref[layer][h]).max()))
    return worst


def max_error_seq2seq(cap, model, *, features=None) -> dict[str, float]:
    """Per attention (encoder, decoder, cross): largest |captured - eager| over every layer, head, pair.

    Each pair runs alone, unpadded: its encoder ids (or ``features[s]``, a ``[1, mel, frames]`` tensor
    for speech) and its decoder ids, as the capture's token table holds them.
    """
    import torch

    from qkviz._capture._checks import eager_attention_kinds

    worst = {name: 0.0 for name in cap.attns}
    tokens = cap.tokens
    for s in range(len(cap.sequences)):
        rows = tokens[tokens["seq"] == s]
        dec = torch.from_numpy(rows["token_id"][rows["stream"] == 1].to_numpy()[None].copy())
        inputs = {"decoder_input_ids": dec, "decoder_attention_mask": torch.ones_like(dec)}
        if features is None:
            enc = torch.from_numpy(rows["token_id"][rows["stream"] == 0].to_numpy()[None].copy())
            inputs.update(input_ids=enc, attention_mask=torch.ones_like(enc))
        else:
            inputs["input_features"] = features[s]
        with torch.inference_mode():
            ref = eager_attention_kinds(model, inputs)
        for name, g in cap.attns.items():
            for layer in g.layers:
                r = ref[name][layer][0].float().numpy()
                for h in g.heads:
                    e = float(np.abs(cap.attention(layer, h, s, attn=name) - r[h]).max())
                    worst[name] = max(worst[name], e)
    return worst
