// The page's top-k tables: each head's strongest keys of every query, as qkviz.export embeds them
// (docs/internals.md, "Static pages"), decoded and laid out as one sequence's dense attention.
import { decode } from "../wire/codec.js";

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

/**
 * Dense [query_pos * key_pos] attention of one sequence holding the embedded top-k weights (0
 * elsewhere), so the lines and the panel work the same with or without a kernel; `k`, the number
 * of keys embedded per query (0 when none were).
 * @param {{keys: Uint32Array, weights: Float32Array} | null} tk
 * @param {number[]} rows  the sequence's global token rows in position order (its queries')
 * @param {number} [nKeys]  keys per query row (default: as many as the queries)
 */
export function denseFromTopk(tk, rows, tokens, nTokens, nKeys = rows.length) {
  const n = rows.length, nk = nKeys; // queries x keys (cross-attention: decoder x encoder tokens)
  const weights = new Float32Array(n * nk);
  if (!tk) return { weights, k: 0 };
  const k = tk.keys.length / nTokens;
  for (const t of rows) {
    const q = tokens.pos[t];
    for (let j = 0; j < k; j++) {
      const key = tk.keys[t * k + j];
      if (key < nk) weights[q * nk + key] = tk.weights[t * k + j];
    }
  }
  return { weights, k: Math.min(k, nk) };
}

/** Say plainly when the weights shown are a top-k cut ("" when every key is embedded). */
export function truncationNote(k, n) {
  if (k >= n) return "";
  if (k === 0) return "This page embeds no attention weights (exported with top_k=0): every weight shows as 0.";
  return `Static page: top ${k} of ${n} keys embedded per query; the other weights show as 0 and rows do not sum to 1.`;
}

