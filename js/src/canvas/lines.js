// Attention lines: from a clicked query to its top-k keys (same seq), or from a clicked key to
// the k queries that attend to it most; only weights >= threshold.
import { seqRows } from "../model.js";
import { LINE_RGB } from "../ui/palette.js";

/**
 * @param {Float32Array} weights  [query_pos * key_pos] of the point's seq (row-major, n x n)
 * @param {"query" | "key"} kind  kind of the clicked point
 * @param {number} pos            its position in the seq
 * @param {number} [nKeys]         keys per row when they are other tokens than the queries
 *   (cross-attention); default: square
 * @returns {{pos: number, weight: number}[]}  partner positions (keys for a query, queries for a
 *   key), strongest first; ties keep the lower position first (like a stable argsort).
 */
export function topPartners(weights, kind, pos, k, threshold, nKeys = 0) {
  // square (self-attention) unless told the number of keys (cross-attention: decoder x encoder)
  const nk = nKeys || Math.round(Math.sqrt(weights.length));
  const nq = nk ? weights.length / nk : 0;
  const mine = kind === "query" ? nq : nk, other = kind === "query" ? nk : nq;
  if (!nk || pos < 0 || pos >= mine) return [];
  const items = [];
  for (let j = 0; j < other; j++) {
    const w = kind === "query" ? weights[pos * nk + j] : weights[j * nk + pos];
    if (w > 0 && w >= threshold) items.push({ pos: j, weight: w });
  }
  items.sort((a, b) => b.weight - a.weight || a.pos - b.pos);
  return items.slice(0, Math.max(0, k));
}

/** Annotation objects for regl-scatterplot (a 2-vertex polygon is a segment). */
export function lineAnnotations(segments, rgb) {
  const wmax = Math.max(1e-9, ...segments.map((s) => s.weight));
  return segments.map((s) => {
    const f = s.weight / wmax;
    return {
      vertices: [[s.x0, s.y0], [s.x1, s.y1]],
      lineColor: [...rgb, 0.25 + 0.75 * f],
      lineWidth: 1 + 3 * f,
    };
  });
}

/**
 * The attention lines of a view: the clicked point's attention (fetched once per head and seq, or
 * replaced by the panel's renormalised weights, "lines:weights"), drawn on the 2-D scatter as
 * annotations, in the 3-D view as its lines, and over image thumbnails; `data-qk-lines` on the root
 * says which (global indices).
 */
export function createLines(ctx) {
  const { model, meta, n, per, dom } = ctx;
  const attention = new Map(); // "layer/head/seq" -> Promise<Float32Array [query_pos * key_pos]>
  let current = null; // {local, info, weights} of the clicked point
  let segments = null; // [{a, b, weight}] over image thumbnails (weight relative to the strongest)

  function attentionFor(layer, head, seq) {
    const key = `${layer}/${head}/${seq}`;
    if (!attention.has(key)) {
      const req = { kind: "attention", layer, head, seq, ...(meta.attn ? { attn: meta.attn } : {}) };
      attention.set(key, ctx.fetchDetail(req).then((r) => r.weights));
    }
    return attention.get(key);
  }

  /** Lines from the point `local` of the focused head (a click). */
  async function show(local) {
    if (ctx.state.mode !== "single" || !meta.has_attention) return;
    const info = ctx.pointInfo(local);
    const { layer, head } = info;
    const weights = await attentionFor(layer, head, info.seq);
    if (ctx.state.mode !== "single" || model.get("layer") !== layer || model.get("head") !== head) return;
    if (!alone(ctx.selection.local(), local)) return; // a lasso replaced the click meanwhile
    current = { local, info, weights };
    draw();
  }

  function clear() {
    current = null;
    draw();
  }

  const alone = (points, local) => points.length === 1 && points[0] === local;

  /** The selection changed (drawn-point indices): the lines belong to the clicked point while it
   * alone is selected, so a lasso, a clear or a selection from Python that replaces it ends them. */
  function follow(points) {
    if (current && !alone(points, current.local)) clear();
  }

  function draw() {
    const { scatter, state } = ctx;
    if (!current || state.mode !== "single") {
      scatter.annotate("lines", null);
      ctx.single3d.setLines(null);
      dom.root.dataset.qkLines = "";
      if (segments) { segments = null; ctx.thumbs.publish(); }
      return;
    }
    const { local, info, weights } = current;
    // The partners' first row: tokens of one seq (and stream) are consecutive rows of the table.
    // Cross-attention: a query's partners are the encoder's tokens, a key's the decoder's.
    const partnerStream = info.kind === "query" ? meta.key_stream : meta.query_stream;
    const first = meta.attn ? seqRows(ctx.tokens, info.seq, partnerStream)[0] : info.token - info.pos;
    const nKeys = meta.attn && meta.query_stream !== meta.key_stream ? seqRows(ctx.tokens, info.seq, meta.key_stream).length : 0;
    const partners = topPartners(weights, info.kind, info.pos, model.get("lines_k"), model.get("lines_threshold"), nKeys);
    const from = ctx.xyOf(local);
    const segs = partners.map(({ pos, weight }) => {
      const other = info.kind === "query" ? n + first + pos : first + pos;
      const to = ctx.xyOf(other);
      return from && to ? { other, weight, x0: from[0], y0: from[1], x1: to[0], y1: to[1] } : null;
    }).filter(Boolean);
    if (state.is3d) ctx.single3d.setLines(segs.map((sg) => ({ a: local, b: sg.other, weight: sg.weight })));
    else scatter.annotate("lines", lineAnnotations(segs, LINE_RGB));
    if (meta.has_images) {
      const wmax = Math.max(1e-9, ...segs.map((sg) => sg.weight));
      segments = segs.map((sg) => ({ a: local, b: sg.other, weight: sg.weight / wmax }));
      ctx.thumbs.publish();
    }
    const off = state.cell * per;
    dom.root.dataset.qkLines = JSON.stringify({ from: local + off, kind: info.kind,
      to: segs.map((s) => s.other + off), weights: segs.map((s) => s.weight) });
  }

  // The panel's renormalised attention of a seq (hidden tokens, value weighting) replaces the
  // fetched one for the lines of that seq.
  ctx.bus.subscribe("lines:weights", (payload) => {
    if (!payload || !ctx.focused()) return;
    attention.set(`${model.get("layer")}/${model.get("head")}/${payload.seq}`, Promise.resolve(payload.weights));
    if (current?.info.seq === payload.seq) { current.weights = payload.weights; draw(); }
  });

  return { show, clear, follow, draw, segments: () => segments, forget: () => { current = null; } };
}
