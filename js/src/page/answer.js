// The standalone page's answers to the widget's requests, from what the page embeds (no Python
// kernel): "points" (the grid), "attention" (the embedded top-k keys of every query as a dense
// matrix; with `detail`, what the side panel derives its views from: the patch grid, the exact CLS
// row and the image's pixels cut from the atlas, and a `note` saying what the page leaves out),
// "aggregate" (embedded verbatim from Python) and "atlas" (the JPEG, decoded by the browser).
// The side panel computes its sentence, heatmap and image views from "attention" (panel/detail.js)
// exactly as in a notebook.
import { cellOf, seqRows } from "../model.js";
import { decode } from "../wire/codec.js";
import { decodeTopk, denseFromTopk, truncationNote } from "./topk.js";

const PATCH_COLOURS = ["mean_r", "mean_g", "mean_b", "brightness", "hue", "saturation"];

/**
 * @param {object} data  `{points: [{start, stop, coords, norms}], topk: null | [{layer, head, keys,
 *   weights, layout?}], aggregate, images, meta, tokens}`: the page's embedded data with `meta`
 *   (= `_meta`) and `tokens` (the `_tokens` columns as typed arrays); arrays as typed arrays or
 *   wire dicts.
 * @param {object} [state]  the traits (patch colour fields come from its `_columns`)
 * @returns {(request: object) => Promise<object>}
 */
export function staticAnswers(data, state) {
  const { meta, tokens } = data;
  // an encoder-decoder page: the request names its attention, whose cells start at its offset
  const attnOf = (attn) => (attn ? (meta.attns ?? []).find((a) => a.name === attn) : null);
  const cellFor = (layer, head, attn) => {
    const a = attnOf(attn);
    const c = cellOf(a ? { layers: a.layers, heads: a.heads, cell_offset: a.cell_offset } : meta, layer, head);
    if (c < 0) throw new Error(`qkviz: no head (layer ${layer}, head ${head}) in this page`);
    return c;
  };
  const cache = new Map();
  const once = (key, make) => { if (!cache.has(key)) cache.set(key, make()); return cache.get(key); };
  const points = (data.points ?? []).map((c) => ({ ...c, coords: decode(c.coords, "float32"), norms: decode(c.norms, "uint8") }));
  const topk = (cell) => once(`topk/${cell}`, () => {
    const e = data.topk?.[cell];
    return e ? decodeTopk(e, meta.n_tokens) : null;
  });
  const rowsOf = (seq, stream = -1) => once(`rows/${seq}/${stream}`, () => seqRows(tokens, seq, stream));
  const atlasOnce = () => once("atlas", () => decodeAtlas(data.images));

  async function attention({ layer, head, seq, detail, attn }) {
    const cell = cellFor(layer, head, attn);
    if (!data.topk) throw new Error("qkviz: attention was not embedded in this page");
    const a = attnOf(attn);
    const rows = rowsOf(seq, a ? a.query_stream : -1);
    const keyRows = a ? rowsOf(seq, a.key_stream) : rows;
    const { weights, k } = denseFromTopk(topk(cell), rows, tokens, meta.n_tokens, keyRows.length);
    const reply = { layer, head, seq, weights };
    if (!detail) return reply;
    reply.note = truncationNote(k, keyRows.length);
    reply.value_norms = null; // a page embeds no value vectors
    Object.assign(reply, familyOf(data.families?.[cell], rows, keyRows));
    if (tokens.row && tokens.col) {
      reply.row = Int32Array.from(rows, (t) => tokens.row[t]);
      reply.col = Int32Array.from(rows, (t) => tokens.col[t]);
      // the CLS query's row is embedded whole (the image view's CLS map): exact, not top-k
      const cls = data.images?.cls?.[cell] ? decode(data.images.cls[cell], "float32") : null;
      if (cls) reply.cls = Float32Array.from(rows, (t) => cls[t]);
      if (data.images?.jpeg) ({ pixels: reply.image, size: reply.image_size } = cropImage(await atlasOnce(), rows));
    }
    return reply;
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

  async function atlas() {
    const a = await atlasOnce();
    const colors = {};
    for (const name of PATCH_COLOURS) {
      const col = (state?._columns ?? data.columns)?.[name];
      if (col?.type === "numeric") colors[name] = decode(col.values, "float32");
    }
    return { atlas: a.rgba, atlas_shape: [a.height, a.width, 4], uv: a.uv, colors };
  }

  async function pointsChunk({ start }) {
    const chunk = points.find((c) => c.start === start);
    if (!chunk) throw new Error(`qkviz: no embedded points from ${start}`);
    return chunk;
  }

  const answer = { points: pointsChunk, attention, aggregate, atlas };
  return async (request) => {
    const fn = answer[request?.kind];
    if (!fn) throw new Error(`qkviz: request kind ${request?.kind} is not available in a static page`);
    return fn(request);
  };
}

/**
 * What a head's score function adds, from the page's `families` entry (qkviz.export): the sink
 * share and the position effect of each query (embedded per token), and the position term where it
 * needs no q or k (ALiBi: + m·p_j; relative buckets: + B[p_j − p_i]), exact. DeBERTa's terms and
 * the content scores need the vectors: the page leaves them out.
 */
export function familyOf(entry, rows, keyRows) {
  if (!entry) return { family: "plain", sink: null, position: null, content: null, position_effect: null, alibi: null, softcap: null };
  const perQuery = (v) => (v ? Float32Array.from(rows, (t) => decode(v, "float32")[t]) : null);
  const qp = rows.map((_, i) => i), kp = keyRows.map((_, j) => j); // rows are in position order
  let position = null;
  if (entry.alibi != null) {
    position = new Float32Array(rows.length * keyRows.length);
    for (const i of qp) for (const j of kp) position[i * keyRows.length + j] = entry.alibi * j;
  } else if (entry.offset_bias) {
    const table = decode(entry.offset_bias, "float32"), length = (table.length + 1) / 2;
    position = new Float32Array(rows.length * keyRows.length);
    for (const i of qp) for (const j of kp) position[i * keyRows.length + j] = table[j - i + length - 1];
  }
  return {
    family: entry.family, alibi: entry.alibi ?? null, softcap: entry.softcap ?? null,
    sink: perQuery(entry.sink), position_effect: perQuery(entry.position_effect), position, content: null,
  };
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
