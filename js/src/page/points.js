// The standalone page's answers to the point requests ("points", "sample", "points_at"), from the
// point chunks and the matrix sample the page embeds (qkviz.export's snapshot: `points`, `sample`).
// A page over its size budget (qkviz/export/_lod.py) embeds `points` only for the heads it holds
// whole and, for every head, the `sample` chunks: the first `sample_points` points of the page's
// `order` (the widget's draw order, the held points first). Any request is answered from both; a
// point the page does not embed comes back with NaN coordinates (the canvas leaves it out).
import { decode } from "../wire/codec.js";

export const POINT_KINDS = new Set(["points", "sample", "points_at"]);

/**
 * @param {{points?: object[], sample?: object[], meta: object}} data  embedded chunks (wire dicts
 *   or typed arrays) and `_meta` (n_tokens, dim, order, sample_points; per attention in `attns`)
 * @returns {(request: object) => object}  the reply to one point request
 */
export function staticPoints(data) {
  const meta = data.meta ?? {};
  const dim = meta.dim === 3 ? 3 : 2, per = 2 * (meta.n_tokens ?? 0);
  const withValues = (c) => (c.vnorms ? { vnorms: decode(c.vnorms, "uint8") } : {});
  const chunks = (data.points ?? [])
    .map((c) => ({ start: c.start, stop: c.stop, coords: decode(c.coords, "float32"), norms: decode(c.norms, "uint8"), ...withValues(c) }))
    .sort((a, b) => a.start - b.start);
  const samples = (data.sample ?? [])
    .map((c) => ({ ...c, coords: decode(c.coords, "float32"), norms: decode(c.norms, "uint8"), ...withValues(c) }))
    .sort((a, b) => a.start - b.start);
  const values = chunks.some((c) => c.vnorms) || samples.some((c) => c.vnorms);
  // the default sample of a cell: its attention's draw order and sample size (a page written
  // before level of detail: every point, in index order, as model.js getMeta)
  const identity = Uint32Array.from({ length: per }, (_, i) => i);
  const attns = (meta.attns ?? []).map((a) => {
    const o = a.order ?? meta.order, order = o ? decode(o, "uint32") : identity;
    return { lo: a.cell_offset, hi: a.cell_offset + a.layers.length * a.heads.length, order, m: a.sample_points ?? meta.sample_points };
  });
  const top = { order: meta.order ? decode(meta.order, "uint32") : identity, m: meta.sample_points };
  /** The draw order and sample size of a cell's attention, with rank[p]: p's place in the order. */
  const ranks = new Map();
  function sampleInfo(cell) {
    const a = attns.find((x) => cell >= x.lo && cell < x.hi) ?? top;
    const order = a.order.length === per ? a.order : identity;
    const m = Math.min(per, a.m ?? per);
    let rank = ranks.get(order);
    if (!rank) {
      rank = new Uint32Array(per);
      for (let i = 0; i < per; i++) rank[order[i]] = i;
      ranks.set(order, rank);
    }
    return { points: order.subarray(0, m), m, rank };
  }

  /** The chunk of a sorted list holding index g (binary search), or null. */
  function find(list, g) {
    let lo = 0, hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, c = list[mid];
      if (g < c.start) hi = mid - 1; else if (g >= c.stop) lo = mid + 1; else return c;
    }
    return null;
  }

  /**
   * Coordinates and norms of global points `at(i)` for i < count: from the point chunks, else from
   * the sample chunk of the point's cell when the point is in the sample, else NaN.
   */
  function gather(count, at) {
    const coords = new Float32Array(count * dim).fill(NaN), norms = new Uint8Array(count);
    const vnorms = values ? new Uint8Array(count) : null;
    let c = null;
    for (let i = 0; i < count; i++) {
      const g = at(i);
      if (!c || g < c.start || g >= c.stop) c = find(chunks, g);
      let src = c, j = c ? g - c.start : -1;
      if (!c && samples.length) {
        const cell = Math.floor(g / per), s = find(samples, cell);
        if (s) {
          const { m, rank } = sampleInfo(cell), r = rank[g % per];
          if (r < m) { src = s; j = (cell - s.start) * m + r; }
        }
      }
      if (!src) continue;
      for (let d = 0; d < dim; d++) coords[i * dim + d] = src.coords[j * dim + d];
      norms[i] = src.norms[j];
      if (vnorms && src.vnorms) vnorms[i] = src.vnorms[j];
    }
    return { coords, norms, ...(vnorms ? { vnorms } : {}) };
  }

  return (request) => {
    if (request.kind === "points") {
      const { start, stop } = request;
      const exact = chunks.find((c) => c.start === start && c.stop === stop);
      return exact ?? { start, stop, ...gather(stop - start, (i) => start + i) };
    }
    if (request.kind === "sample") {
      const { start, stop } = request;
      if (!request.points) {
        const exact = samples.find((c) => c.start === start && c.stop === stop);
        if (exact) return exact;
      }
      const pts = request.points ? Uint32Array.from(request.points) : sampleInfo(start).points;
      const k = pts.length;
      return { start, stop, ...gather((stop - start) * k, (i) => (start + Math.floor(i / k)) * per + pts[i % k]) };
    }
    const ids = Uint32Array.from(request.points ?? []);
    return gather(ids.length, (i) => ids[i]);
  };
}
