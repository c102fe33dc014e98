// The standalone page's fetchDetail: answers the widget's requests from the data the page embeds
// (QKViz._static_state(), docs/internals.md "Static pages") instead of a Python kernel. It answers
// the point kinds (points.js) and "attention" itself and hands the side panel's kinds to `extra`
// (answer.js).
import { cellOf } from "../model.js";
import { decode } from "../wire/codec.js";
import { POINT_KINDS, staticPoints } from "./points.js";

/**
 * Undo qkviz.export's "key-delta" layout of one head's top-k table (keys sorted by position,
 * [k, token], as gaps; 0 = no key) into [token, k] key positions (0xffffffff = none) and weights.
 * Tables without a layout pass through.
 * @param {{layout?: string, keys: Uint32Array, weights: Float32Array}} entry
 * @param {number} nTokens
 */
export function fromKeyDelta(entry, nTokens) {
  if (entry.layout !== "key-delta") return entry;
  const k = nTokens ? entry.keys.length / nTokens : 0;
  const keys = new Uint32Array(nTokens * k), weights = new Float32Array(nTokens * k);
  for (let t = 0; t < nTokens; t++) {
    let key = 0;
    for (let j = 0; j < k; j++) {
      const gap = entry.keys[j * nTokens + t];
      if (j > 0 && gap === 0) { keys[t * k + j] = 0xffffffff; continue; }
      key = j === 0 ? gap : key + gap;
      keys[t * k + j] = key;
      weights[t * k + j] = entry.weights[j * nTokens + t];
    }
  }
  return { ...entry, layout: undefined, keys, weights };
}

/** One head's embedded top-k table, decoded: keys uint32 [token, k], weights float32 [token, k]. */
export function decodeTopk(entry, nTokens) {
  return fromKeyDelta({ ...entry, keys: decode(entry.keys, "uint32"), weights: decode(entry.weights, "float32") }, nTokens);
}

/** Global token rows of `seq` in position order. */
export function seqRows(tokens, seq) {
  const rows = [];
  for (let t = 0; t < tokens.seq.length; t++) if (tokens.seq[t] === seq) rows.push(t);
  if (!rows.length) throw new Error(`qkviz: sequence ${seq} has no tokens in this page`);
  return rows.sort((a, b) => tokens.pos[a] - tokens.pos[b]);
}

/**
 * Dense [query_pos * key_pos] attention of one sequence holding the embedded top-k weights (0
 * elsewhere), so the lines and the panel work the same with or without a kernel; `k`, the number
 * of keys embedded per query (0 when none were).
 */
export function denseFromTopk(tk, rows, tokens, nTokens) {
  const n = rows.length;
  const weights = new Float32Array(n * n);
  if (!tk) return { weights, k: 0 };
  const k = tk.keys.length / nTokens;
  for (const t of rows) {
    const q = tokens.pos[t];
    for (let j = 0; j < k; j++) {
      const key = tk.keys[t * k + j];
      if (key < n) weights[q * n + key] = tk.weights[t * k + j];
    }
  }
  return { weights, k: Math.min(k, n) };
}

/**
 * Answer requests from embedded data.
 * @param {object} embedded  `{points: [{start, stop, coords, norms}], sample: [{start, stop, coords,
 *   norms}] (cells), topk: null | [{layer, head,
 *   keys [token*k], weights [token*k], layout?}], meta, tokens}` (or `state` holding `_meta`,
 *   `_tokens`), arrays as typed arrays or wire dicts.
 * @param {(request: object) => Promise<object>} [extra]  the other kinds (answer.js staticExtra)
 * @returns {(request: object) => Promise<object>}
 */
export function staticTransport(embedded, extra) {
  const st = embedded.state ?? {};
  const meta = embedded.meta ?? st._meta;
  const tokens = embedded.tokens ?? { seq: decode(st._tokens?.seq, "uint32"), pos: decode(st._tokens?.pos, "uint32") };
  const points = staticPoints({ ...embedded, meta });
  const topk = embedded.topk?.map((e) => decodeTopk(e, meta.n_tokens)) ?? null;
  return async (request) => {
    if (POINT_KINDS.has(request.kind)) return points(request);
    if (request.kind === "attention") {
      const { layer, head, seq } = request;
      if (!topk) throw new Error("qkviz: attention was not embedded in this page");
      const cell = cellOf(meta, layer, head);
      if (cell < 0) throw new Error(`qkviz: no head (layer ${layer}, head ${head}) in this page`);
      return { layer, head, seq, weights: denseFromTopk(topk[cell], seqRows(tokens, seq), tokens, meta.n_tokens).weights };
    }
    if (extra) return extra(request);
    throw new Error(`qkviz: request kind ${request.kind} is not available in a static page`);
  };
}
