// @ts-check
// The side panel's per-sequence views, computed here from one sequence's attention (the "attention"
// reply with `detail`), in a notebook and in a standalone page alike: the sentence and heatmap
// views' rows, and the image view's heat map of one patch. JS twins of qkviz.analysis
// sequence_detail / image_detail and of qkviz.attention.overlay_strength, held to Python's numbers
// by js/test/detail.test.js and the browser tests.
import { seqRows } from "../model.js";
import { decode, decodeOptional } from "../wire/codec.js";

/**
 * @typedef {object} SequenceDetail
 * @property {number} layer
 * @property {number} head
 * @property {number} seq
 * @property {"text" | "image"} modality
 * @property {Uint32Array} token  global token rows [pos]
 * @property {string[]} display  [pos]
 * @property {Uint8Array} special  1 = special token (category 2) [pos]
 * @property {Float32Array} raw  attention [query_pos * key_pos] as the reply gave it
 * @property {Float32Array | null} value_norms  ‖v_j‖ [key_pos], or null without values
 * @property {Int32Array | null} row  patch row [pos] (-1: CLS), images only
 * @property {Int32Array | null} col
 * @property {Float32Array | null} cls  the CLS query's exact row [key_pos] when `raw` is a top-k cut
 * @property {Uint8Array | null} image  pixels [h * w * 3]
 * @property {number[] | null} image_size  [h, w]
 * @property {string} note  what the page leaves out ("" when whole)
 * @property {string[] | null} keyDisplay  the keys' tokens [key_pos] when they are other tokens
 *   than the queries (cross-attention: the encoder's), else null
 * @property {Uint32Array | null} keyToken  their global rows
 * @property {Uint8Array | null} keySpecial
 * @property {number} nq  queries (rows of `raw`)
 * @property {number} nk  keys (columns)
 * @property {string} family  the head's score function: plain, soft-capped, sink, alibi, relative,
 *   disentangled ("" when the reply does not say)
 * @property {Float32Array | null} sink  each query's share given to the sink [query_pos]
 * @property {Float32Array | null} position  the position term of the scores [query_pos * key_pos]
 * @property {Float32Array | null} content  the content term c·q·k [query_pos * key_pos]
 * @property {Float32Array | null} position_effect  how much each query's attention owes to the
 *   position term, 0..1 [query_pos]
 * @property {number | null} alibi  the ALiBi slope
 * @property {number | null} softcap
 */

/**
 * One sequence's rows for the sentence and heatmap views.
 * @param {any} reply  the "attention" reply with `detail`: {layer, head, seq, weights, value_norms?,
 *   row?, col?, cls?, image?, image_size?, note?}
 * @param {{seq: ArrayLike<number>, pos: ArrayLike<number>, category: ArrayLike<number>, display: string[]}} tokens
 *   the widget's token table (model.js getTokens)
 * @param {"text" | "image"} modality
 * @param {{query: number, key: number} | null} [streams]  an encoder-decoder's attention: the token
 *   streams of its queries and keys (0 encoder, 1 decoder); null: every token of the sequence
 * @returns {SequenceDetail}
 */
export function sequenceDetail(reply, tokens, modality, streams = null) {
  const rows = seqRows(tokens, reply.seq, streams ? streams.query : -1);
  const cross = streams != null && streams.key !== streams.query;
  const keyRows = cross ? seqRows(tokens, reply.seq, streams.key) : rows;
  const raw = /** @type {Float32Array} */ (decode(reply.weights, "float32"));
  if (raw.length !== rows.length * keyRows.length) {
    throw new Error(`qkviz: sequence ${reply.seq} has ${rows.length} x ${keyRows.length} tokens but its attention holds ${raw.length} weights`);
  }
  const f32 = (v) => /** @type {Float32Array | null} */ (decodeOptional(v, "float32"));
  return {
    nq: rows.length, nk: keyRows.length,
    keyDisplay: cross ? keyRows.map((t) => tokens.display[t] ?? "") : null,
    keyToken: cross ? Uint32Array.from(keyRows) : null,
    keySpecial: cross ? Uint8Array.from(keyRows, (t) => (tokens.category[t] === 2 ? 1 : 0)) : null,
    family: reply.family ?? "",
    sink: f32(reply.sink), position: f32(reply.position), content: f32(reply.content),
    position_effect: f32(reply.position_effect),
    alibi: reply.alibi ?? null, softcap: reply.softcap ?? null,
    layer: reply.layer, head: reply.head, seq: reply.seq, modality,
    token: Uint32Array.from(rows),
    display: rows.map((t) => tokens.display[t] ?? ""),
    special: Uint8Array.from(rows, (t) => (tokens.category[t] === 2 ? 1 : 0)),
    raw,
    value_norms: /** @type {Float32Array | null} */ (decodeOptional(reply.value_norms, "float32")),
    row: /** @type {Int32Array | null} */ (decodeOptional(reply.row, "int32")),
    col: /** @type {Int32Array | null} */ (decodeOptional(reply.col, "int32")),
    cls: /** @type {Float32Array | null} */ (decodeOptional(reply.cls, "float32")),
    image: /** @type {Uint8Array | null} */ (decodeOptional(reply.image, "uint8")),
    image_size: reply.image_size ?? null,
    note: reply.note ?? "",
  };
}

/**
 * AttentionViz's darkening factor per patch, as qkviz.attention.overlay_strength:
 * sqrt((a − min/4) / max(a − min/4)), clipped to [0, 1]; all 0 when nothing is attended.
 * @param {ArrayLike<number>} heat
 * @returns {Float32Array}
 */
export function overlayStrength(heat) {
  const out = new Float32Array(heat.length);
  if (!heat.length) return out;
  let lo = Infinity, top = -Infinity;
  for (let i = 0; i < heat.length; i++) lo = Math.min(lo, heat[i]);
  const shifted = Float64Array.from(heat, (v) => v - 0.25 * lo);
  for (const v of shifted) top = Math.max(top, v);
  for (let i = 0; i < out.length; i++) out[i] = top > 0 ? Math.sqrt(Math.min(Math.max(shifted[i] / top, 0), 1)) : 0;
  return out;
}

/**
 * The image view of one patch, as qkviz.analysis.image_detail: where the patch looks ("query":
 * its row) or who looks at it ("key": its column), on the image's patch grid.
 * @param {SequenceDetail} d  an image sequence (row, col set)
 * @param {number} patch  position of the clicked token in its image (CLS is allowed)
 * @param {"query" | "key"} kind
 */
export function imageDetail(d, patch, kind) {
  const { row, col, raw: A } = d;
  if (!row || !col) throw new Error("qkviz: this sequence has no patch grid (not an image capture)");
  const n = row.length;
  if (!(patch >= 0 && patch < n)) throw new Error(`qkviz: patch ${patch} is out of range for image ${d.seq} (${n} tokens)`);
  let R = 0, C = 0;
  for (let p = 0; p < n; p++) if (row[p] >= 0 && col[p] >= 0) { R = Math.max(R, row[p] + 1); C = Math.max(C, col[p] + 1); }
  const heat = new Float32Array(R * C), clsHeat = new Float32Array(R * C), special = [];
  let clsPos = -1;
  for (let p = 0; p < n; p++) {
    const w = kind === "query" ? A[patch * n + p] : A[p * n + patch];
    if (row[p] < 0 || col[p] < 0) { special.push(w); if (clsPos < 0) clsPos = p; continue; }
    heat[row[p] * C + col[p]] = w;
  }
  // the CLS query's row: exact from the reply when the page embeds it whole, else from `raw`
  const clsRow = d.cls ?? (clsPos >= 0 ? A.subarray(clsPos * n, (clsPos + 1) * n) : null);
  if (clsRow) for (let p = 0; p < n; p++) if (row[p] >= 0 && col[p] >= 0) clsHeat[row[p] * C + col[p]] = clsRow[p];
  // each query's most attended position (the first of equals, as numpy's argmax)
  const argmax = new Int32Array(n), argmaxWeight = new Float32Array(n);
  for (let q = 0; q < n; q++) {
    let best = 0, w = -Infinity;
    for (let k = 0; k < n; k++) if (A[q * n + k] > w) { w = A[q * n + k]; best = k; }
    argmax[q] = best; argmaxWeight[q] = w;
  }
  return {
    layer: d.layer, head: d.head, seq: d.seq, patch, kind, grid: [R, C], row, col,
    patch_row: row[patch], patch_col: col[patch], token: d.token,
    heat, strength: overlayStrength(heat), to_special: Float32Array.from(special), cls_heat: clsHeat,
    argmax, argmax_weight: argmaxWeight, image: d.image, image_size: d.image_size,
  };
}
