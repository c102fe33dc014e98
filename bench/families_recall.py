"""Relative-position heads: does adding position features to the layout vectors show attention better?

For every head whose scores add a relative-position term (MPNet and T5 buckets, DeBERTa's c2p/p2c),
three layouts are scored by recall@k against the head's *true* attention (position term included):

* ``content``: the captured q and k (what ``qkviz.embed`` lays out for these heads);
* ``augmented (rank r)``: q and k with rank-r position features appended so that
  ``c·q'·k' = c·q·k + P_r[i, j]``, ``P_r`` the best rank-r approximation of the position term
  (after removing each row's mean, which softmax ignores). Offset-bias heads (MPNet, T5) use one
  SVD of the ``L × L`` matrix ``B[j − i]``, so a position has the same features in every sequence;
  DeBERTa's term depends on the vectors too, so each sequence gets its own SVD;
* ``attention``: ``method="attention"``, built from the true attention itself.

It also reports the mean position effect (:func:`qkviz.attention.position_effect`): how far, in
total-variation distance, each query's attention moves when the position term is dropped.

Each layout is the same pipeline as ``qkviz.embed``: joint normalisation, then PCA of the dot-lifted
cloud (``--method pca``, the default) or t-SNE (``--method tsne``). Prints one JSON object.

Weights: a real MPNet (sentence-transformers/all-mpnet-base-v2) when ``--mpnet PATH`` names its
folder; otherwise the test suite's tiny random configs, whose position terms are random — then the
numbers only show that the measurement runs, not what real models do.

    python bench/families_recall.py [--mpnet PATH] [--texts 40] [--method pca] [--ranks 2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _models(args):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "capture"))
    out = []
    if args.mpnet:
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(args.mpnet, attn_implementation="eager").eval()
        out.append(("all-mpnet-base-v2 (real weights)", model, AutoTokenizer.from_pretrained(args.mpnet), None))
    else:
        import _zoo

        for name in ("mpnet_big", "deberta_v2"):
            model, tok = _zoo.build(name)
            out.append((f"tiny random {name}", model, tok, None))
        model, tok = _zoo.build("t5")
        out.append(("tiny random t5 (encoder)", model, tok, "encoder"))
    return out


def _layout(qv, kv, method, seed=0):
    from qkviz.joint import dot_lift, normalize
    from qkviz.project import PCA, TSNE

    qn, kn, _ = normalize(qv, kv)
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(dot_lift(qn, kn))
    return TSNE(2, random_state=seed, n_iter=300).fit_transform(np.concatenate([qn, kn]))


def _recall(cap, coords, layer, head, attn, k):
    from qkviz.metrics import head_faithfulness

    g = cap.attns[attn or "self"] if attn else cap.geometry
    seq = cap.tokens["seq"].to_numpy()[cap.query_rows(attn)]
    f = head_faithfulness(
        coords,
        cap.q(layer, head, attn),
        cap.k(layer, head, attn),
        seq,
        cap.score(layer, head, attn),
        causal=g.causal,
        window=g.window(layer),
        k=k,
    )
    return f.recall, f.chance_recall


def _augmented(cap, layer, head, attn, rank):
    """q, k with rank-r position features: c·q'·k' ≈ c·q·k + position term."""
    f = cap.score(layer, head, attn)
    q, k = cap.q(layer, head, attn), cap.k(layer, head, attn)
    qf = np.zeros((len(q), rank))
    kf = np.zeros((len(k), rank))
    seqs = cap.sequences
    if f.offset_bias is not None:  # one SVD for every sequence: B[j - i] over the longest one
        n = int(seqs["n_tokens"].max()) if attn is None else len(q)
        length = (len(f.offset_bias) + 1) // 2
        pos = np.arange(min(n, length))
        m = f.offset_bias[pos[None, :] - pos[:, None] + length - 1].astype(np.float64)
        m -= m.mean(axis=1, keepdims=True)
        u, s, vt = np.linalg.svd(m)
        phi, psi = u[:, :rank] * np.sqrt(s[:rank]), vt[:rank].T * np.sqrt(s[:rank])
        p = cap.tokens["pos"].to_numpy()[cap.query_rows(attn)]
        qf[:, : phi.shape[1]], kf[:, : psi.shape[1]] = phi[p], psi[p]
    else:  # DeBERTa: the term depends on the vectors, so each sequence gets its own SVD
        for s_ in range(len(seqs)):
            sl = cap._stream_slice(s_, 0)
            _, pterm = cap.score_terms(layer, head, s_, attn)
            m = pterm.astype(np.float64) - pterm.mean(axis=1, keepdims=True)
            u, sv, vt = np.linalg.svd(m)
            r = min(rank, len(sv))
            qf[sl, :r], kf[sl, :r] = u[:, :r] * np.sqrt(sv[:r]), vt[:r].T * np.sqrt(sv[:r])
    c = f.scaling
    return np.concatenate([q, qf / c], 1).astype(np.float32), np.concatenate([k, kf], 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpnet", help="folder of sentence-transformers/all-mpnet-base-v2 (real weights)")
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--method", choices=["pca", "tsne"], default="pca")
    ap.add_argument("--ranks", default="2,4,8")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--heads", type=int, default=0, help="score only this many heads per model (0: all)")
    args = ap.parse_args()

    import qkviz
    from qkviz.data import demo_sentences

    ranks = [int(r) for r in args.ranks.split(",")]
    texts = demo_sentences(args.texts)
    out = {"load_before": _load(), "method": args.method, "k": args.k, "texts": len(texts), "models": {}}
    for label, model, tok, attn in _models(args):
        t0 = time.perf_counter()
        if attn is None:
            cap = qkviz.capture((model, tok), texts, batch_size=16, progress=False)
        else:
            cap = qkviz.capture((model, tok), texts, targets=texts, batch_size=16, progress=False)
        g = cap.attns[attn] if attn else cap.geometry
        heads = [(la, h) for la in g.layers for h in g.heads if g.family(la) in ("relative", "disentangled")]
        if args.heads:
            rng = np.random.default_rng(0)
            heads = [heads[i] for i in sorted(rng.choice(len(heads), args.heads, replace=False))]
        rows = {"content": [], "attention": [], "chance": [], **{f"augmented_r{r}": [] for r in ranks}}
        effect = []
        for la, h in heads:
            effect.append(
                float(np.mean(np.concatenate([cap.position_effect(la, h, s, attn) for s in range(len(cap.sequences))])))
            )
            y = _layout(cap.q(la, h, attn), cap.k(la, h, attn), args.method)
            rec, chance = _recall(cap, y, la, h, attn, args.k)
            rows["content"].append(rec)
            rows["chance"].append(chance)
            for r in ranks:
                qa, ka = _augmented(cap, la, h, attn, r)
                rows[f"augmented_r{r}"].append(_recall(cap, _layout(qa, ka, args.method), la, h, attn, args.k)[0])
            emb = qkviz.embed(
                cap, method="attention", layers=[la], heads=[h], attn=attn, executor="serial", cache=False,
                progress=False,
            )  # fmt: skip
            rows["attention"].append(float(emb.faithfulness(k=args.k)["recall"].iloc[0]))
        out["models"][label] = {
            "heads": len(heads),
            "tokens": int(cap.n_tokens),
            "mean_recall": {name: round(float(np.mean(v)), 4) for name, v in rows.items()},
            # total-variation distance between each query's attention with and without the position term
            "mean_position_effect": round(float(np.mean(effect)), 4),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    out["load_after"] = _load()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
