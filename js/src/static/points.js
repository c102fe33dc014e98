// The standalone page's answers to the point requests ("points", "sample", "points_at"), from the
// point chunks and the matrix sample the page embeds (qkviz.export's snapshot: `points`, `sample`).
// A point the page does not embed comes back with NaN coordinates (the canvas leaves it out).
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
  const chunks = (data.points ?? [])
    .map((c) => ({ start: c.start, stop: c.stop, coords: decode(c.coords, "float32"), norms: decode(c.norms, "uint8") }))
    .sort((a, b) => a.start - b.start);
  const samples = (data.sample ?? []).map((c) => ({ ...c, coords: decode(c.coords, "float32"), norms: decode(c.norms, "uint8") }));
  // the default sample of a cell: its attention's draw order and sample size (a page written
  // before level of detail: every point, in index order, as model.js getMeta)
  const identity = Uint32Array.from({ length: per }, (_, i) => i);
  function sampleOf(cell) {
    const a = (meta.attns ?? []).find((x) => cell >= x.cell_offset && cell < x.cell_offset + x.layers.length * x.heads.length);
    const order = decode(a?.order ?? meta.order, "uint32");
    const m = Math.min(per, a?.sample_points ?? meta.sample_points ?? per);
    return (order.length === per ? order : identity).subarray(0, m);
  }

  /** The chunk holding global point g (binary search over the sorted chunks), or null. */
  function chunkOf(g) {
    let lo = 0, hi = chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, c = chunks[mid];
      if (g < c.start) hi = mid - 1; else if (g >= c.stop) lo = mid + 1; else return c;
    }
    return null;
  }

  /** Coordinates and norms of global points `at(i)` for i < count (NaN where not embedded). */
  function gather(count, at) {
    const coords = new Float32Array(count * dim).fill(NaN), norms = new Uint8Array(count);
    let c = null;
    for (let i = 0; i < count; i++) {
      const g = at(i);
      if (!c || g < c.start || g >= c.stop) c = chunkOf(g);
      if (!c) continue;
      const j = g - c.start;
      for (let d = 0; d < dim; d++) coords[i * dim + d] = c.coords[j * dim + d];
      norms[i] = c.norms[j];
    }
    return { coords, norms };
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
      const pts = request.points ? Uint32Array.from(request.points) : sampleOf(start);
      const k = pts.length;
      return { start, stop, ...gather((stop - start) * k, (i) => (start + Math.floor(i / k)) * per + pts[i % k]) };
    }
    const ids = Uint32Array.from(request.points ?? []);
    return gather(ids.length, (i) => ids[i]);
  };
}
