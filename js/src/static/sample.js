// A page over its size budget (qkviz/export/_lod.py) holds only some points of most heads:
// `sample` chunks (the first `_meta.sample_points` points of `_meta.order` of every cell) and
// `points` chunks for the heads it holds whole (docs/internals.md, "Static pages").
//
// INTERIM SHIM, to delete once the front end reads the sample itself (level of detail): it rebuilds
// the dense grid today's widget pulls chunk by chunk, with the points the page does not hold parked
// far outside every cell (drawn nowhere, as for a head missing from the grid).
import { decode } from "../wire/codec.js";

/** Where a point the page does not hold is put: outside every cell of the matrix and the single view. */
export const PARKED = 100;

const wire = (a, dtype, shape) => ({ view: new DataView(a.buffer, a.byteOffset, a.byteLength), dtype, shape });

/**
 * Replace `embedded.points` by dense chunks of `meta.chunk_points` points over the whole grid when
 * the page holds a sample; a page that holds everything is left as it is.
 * @param {object} embedded  the page's embedded data: points, sample, lod
 * @param {object} meta  the `_meta` trait (n_tokens, n_points, chunk_points, dim, order, sample_points)
 * @returns {boolean} whether the grid was rebuilt
 */
export function denseFromSample(embedded, meta) {
  const chunks = embedded?.sample;
  if (!chunks?.length || !embedded.lod) return false;
  const dim = meta.dim === 3 ? 3 : 2, per = 2 * meta.n_tokens, m = meta.sample_points;
  const order = decode(meta.order, "uint32"), full = decode(embedded.lod.full, "uint8");
  const coords = new Float32Array(meta.n_points * dim).fill(PARKED);
  const norms = new Uint8Array(meta.n_points);
  for (const c of embedded.points ?? []) { // the heads held whole
    coords.set(decode(c.coords, "float32"), c.start * dim);
    norms.set(decode(c.norms, "uint8"), c.start);
  }
  for (const ch of chunks) {
    const xy = decode(ch.coords, "float32"), nm = decode(ch.norms, "uint8");
    for (let cell = ch.start; cell < ch.stop; cell++) {
      if (full[cell]) continue;
      const src = (cell - ch.start) * m;
      for (let i = 0; i < m; i++) {
        const p = cell * per + order[i];
        for (let d = 0; d < dim; d++) coords[p * dim + d] = xy[(src + i) * dim + d];
        norms[p] = nm[src + i];
      }
    }
  }
  embedded.points = [];
  for (let start = 0; start < meta.n_points; start += meta.chunk_points) {
    const stop = Math.min(meta.n_points, start + meta.chunk_points);
    embedded.points.push({
      start, stop,
      coords: wire(coords.subarray(start * dim, stop * dim), "float32", [stop - start, dim]),
      norms: wire(norms.subarray(start, stop), "uint8", [stop - start]),
    });
  }
  return true;
}
