// Side-panel requests answered from the data a standalone HTML page embeds (no Python kernel):
// "sequence" (sentence and heatmap views), "aggregate", "image" and "atlas" (patch thumbnails).
// The page runtime (runtime.js) calls staticExtra(data, state) and hands the result to
// staticTransport (transport.js), which answers "points" and "attention" itself. `data` is
// QKViz._static_state() minus the traits, with `meta` (= _meta) and `tokens` (the _tokens columns
// as typed arrays); arrays are wire dicts {view: DataView, dtype, shape}. Replies have the shapes
// qkviz._detail returns (docs/internals.md); where the page holds only the top-k keys of each
// query, the reply carries `note`, which the runtime shows under the panel's title.
import { cellOf } from "../model.js";
import { decode } from "../wire/codec.js";
import { decodeTopk, denseFromTopk, seqRows } from "./transport.js";

const NONE = 0xffffffff;

/**
 * @param {object} data  {topk, aggregate, images, meta, tokens}
 * @param {object} [state]  the traits (patch colour fields come from its `_columns`)
 * @returns {(request: object) => Promise<object>}
 */
export function staticExtra(data, state) {
  const { meta, tokens } = data;
  const cellFor = (layer, head) => {
    const c = cellOf(meta, layer, head);
    if (c < 0) throw new Error(`qkviz: no head (layer ${layer}, head ${head}) in this page`);
    return c;
  };
  const cache = new Map();
  const once = (key, make) => { if (!cache.has(key)) cache.set(key, make()); return cache.get(key); };
  const topk = (cell) => once(`topk/${cell}`, () => {
    const e = data.topk?.[cell];
    return e ? decodeTopk(e, meta.n_tokens) : null;
  });
  const rowsOf = (seq) => once(`rows/${seq}`, () => seqRows(tokens, seq));

  async function sequence({ layer, head, seq }) {
    const cell = cellFor(layer, head);
    const rows = rowsOf(seq);
    const { weights, k } = denseFromTopk(topk(cell), rows, tokens, meta.n_tokens);
    const n = rows.length;
    return {
      layer, head, seq, modality: meta.modality ?? "text", causal: Boolean(meta.causal),
      token: Uint32Array.from(rows), display: Array.from(rows, (t) => tokens.display[t]),
      special: Uint8Array.from(rows, (t) => (tokens.category?.[t] === 2 ? 1 : 0)),
      raw: weights, attention: weights, value_norms: null,
      hidden_keys: new Uint8Array(n), hidden_queries: new Uint8Array(n),
      note: truncationNote(k, n),
    };
  }

  async function aggregate({ layer, head }) {
    const agg = data.aggregate;
    const c = agg?.cells?.[cellFor(layer, head)];
    if (!c) throw new Error("qkviz: the aggregate view was not embedded in this page");
    const offsets = decode(agg.offsets, "int32");
    const longest = (offsets.length + 1) / 2, shown = Math.round(Math.sqrt(decode(agg.count, "int32").length));
    return {
      note: shown < longest ? `Aggregate by position: the first ${shown} of ${longest} positions embedded (by offset: all).` : "",
      layer, head, n_seqs: agg.n_seqs, scores: c.scores,
      by_position: decode(c.by_position, "float32"), count: decode(agg.count, "int32"),
      offsets, by_offset: decode(c.by_offset, "float32"),
      by_offset_mean: decode(c.by_offset_mean, "float32"),
    };
  }

  const atlasOnce = () => once("atlas", () => decodeAtlas(data.images));

  async function atlas() {
    const a = await atlasOnce();
    const colors = {};
    for (const name of ["mean_r", "mean_g", "mean_b", "brightness", "hue", "saturation"]) {
      const col = (state?._columns ?? data.columns)?.[name];
      if (col?.type === "numeric") colors[name] = decode(col.values, "float32");
    }
    return { atlas: a.rgba, atlas_shape: [a.height, a.width, 4], uv: a.uv, colors };
  }

  async function image(request) {
    const { layer, head, seq } = request;
    const cell = cellFor(layer, head);
    const rows = rowsOf(seq);
    const n = rows.length;
    const patch = request.patch ?? tokens.pos[request.token];
    const kind = request.point_kind === "key" ? "key" : "query";
    if (!(patch >= 0 && patch < n)) throw new Error(`qkviz: patch ${patch} is out of range for image ${seq} (${n} tokens)`);
    const row = Int32Array.from(rows, (t) => tokens.row[t]);
    const col = Int32Array.from(rows, (t) => tokens.col[t]);
    let R = 0, C = 0;
    for (let p = 0; p < n; p++) if (row[p] >= 0 && col[p] >= 0) { R = Math.max(R, row[p] + 1); C = Math.max(C, col[p] + 1); }
    const tk = topk(cell);
    const { weights: A, k } = denseFromTopk(tk, rows, tokens, meta.n_tokens);
    const heat = new Float32Array(R * C), clsHeat = new Float32Array(R * C);
    const cls = data.images?.cls?.[cell] ? decode(data.images.cls[cell], "float32") : null;
    const special = [];
    for (let p = 0; p < n; p++) {
      const w = kind === "query" ? A[patch * n + p] : A[p * n + patch];
      if (row[p] < 0 || col[p] < 0) { special.push(w); continue; }
      heat[row[p] * C + col[p]] = w;
      if (cls) clsHeat[row[p] * C + col[p]] = cls[rows[p]];
    }
    // each query's strongest key is the strongest of its embedded top-k: exact
    const argmax = new Int32Array(n), argmaxWeight = new Float32Array(n);
    if (tk) {
      const kk = tk.keys.length / meta.n_tokens;
      rows.forEach((t, p) => {
        argmax[p] = p;
        for (let j = 0; j < kk; j++) {
          const key = tk.keys[t * kk + j], w = tk.weights[t * kk + j];
          if (key !== NONE && w > argmaxWeight[p]) { argmax[p] = key; argmaxWeight[p] = w; }
        }
      });
    }
    let img = null, size = null;
    if (data.images) {
      const a = await atlasOnce();
      ({ pixels: img, size } = cropImage(a, rows));
    }
    return {
      layer, head, seq, patch, kind, grid: [R, C], row, col,
      patch_row: row[patch], patch_col: col[patch], token: Uint32Array.from(rows),
      heat, strength: overlayStrength(heat), to_special: Float32Array.from(special), cls_heat: clsHeat,
      argmax, argmax_weight: argmaxWeight, image: img, image_size: size,
      note: truncationNote(k, n),
    };
  }

  const answer = { sequence, aggregate, image, atlas };
  return async (request) => {
    const fn = answer[request?.kind];
    if (!fn) throw new Error(`qkviz: request kind ${request?.kind} is not available in a static page`);
    return fn(request);
  };
}

/** Say plainly when the weights shown are a top-k cut ("" when every key is embedded). */
export function truncationNote(k, n) {
  if (k >= n) return "";
  if (k === 0) return "This page embeds no attention weights (exported with top_k=0): every weight shows as 0.";
  return `Static page: top ${k} of ${n} keys embedded per query; the other weights show as 0 and rows do not sum to 1.`;
}

/** AttentionViz's darkening factor, as qkviz._detail.overlay_strength: sqrt((a - min/4) / max(a - min/4)). */
export function overlayStrength(heat) {
  let lo = Infinity;
  for (const v of heat) lo = Math.min(lo, v);
  const out = new Float32Array(heat.length);
  if (!heat.length) return out;
  let top = -Infinity;
  for (let i = 0; i < heat.length; i++) { out[i] = heat[i] - 0.25 * lo; top = Math.max(top, out[i]); }
  for (let i = 0; i < out.length; i++) out[i] = top > 0 ? Math.sqrt(Math.min(Math.max(out[i] / top, 0), 1)) : 0;
  return out;
}

/** The embedded JPEG atlas as RGBA bytes (browser-native decoding), with its uv table. */
async function decodeAtlas(images) {
  if (!images?.jpeg) throw new Error("qkviz: this page embeds no images");
  const jpeg = images.jpeg;
  const bytes = new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
  const [height, width] = images.atlas_shape;
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.drawImage(bitmap, 0, 0);
  bitmap.close?.();
  const rgba = new Uint8Array(g.getImageData(0, 0, width, height).data.buffer);
  return { rgba, width, height, uv: decode(images.uv, "float32") };
}

/**
 * One image, cut out of the atlas: the atlas tiles whole downscaled images, so the image is the
 * box spanned by its patches' thumbnails. Returns RGB bytes [h * w * 3] and [h, w].
 */
function cropImage(atlas, rows) {
  const { uv, width: W, height: H, rgba } = atlas;
  let u0 = Infinity, v0 = Infinity, u1 = -Infinity, v1 = -Infinity;
  for (const t of rows) {
    if (uv[4 * t] < 0) continue;
    u0 = Math.min(u0, uv[4 * t]); v0 = Math.min(v0, uv[4 * t + 1]);
    u1 = Math.max(u1, uv[4 * t + 2]); v1 = Math.max(v1, uv[4 * t + 3]);
  }
  if (!Number.isFinite(u0)) return { pixels: null, size: null };
  const x0 = Math.round(u0 * W), y0 = Math.round(v0 * H), w = Math.round(u1 * W) - x0, h = Math.round(v1 * H) - y0;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = 4 * ((y0 + y) * W + x0 + x), d = 3 * (y * w + x);
      out[d] = rgba[s]; out[d + 1] = rgba[s + 1]; out[d + 2] = rgba[s + 2];
    }
  }
  return { pixels: out, size: [h, w] };
}
