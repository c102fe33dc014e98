// @ts-check
// The grid's points as the front end holds them (docs/internals.md, "Level of detail"): never the
// whole grid. The matrix's sample of every head (the first `sample_points` of `_meta.order`, the
// same points in every cell) is loaded once per model; whole heads (the focused head, the cells a
// lasso crosses) are loaded on demand and the last few kept; forced extras (searched or selected
// points outside the sample) are asked for by index. One store per model, shared by its views.
import { getMeta } from "./model.js";
import { decode } from "./wire/codec.js";

/** Whole heads kept per model (the focused one, its neighbours, a lasso's cells). */
export const HEAD_CACHE = 12;
/** Most indices in one request (a JSON list from the browser: stays far under 10 MiB). */
const INDICES_PER_REQUEST = 100_000;

/**
 * @typedef {{coords: Float32Array, norms: Uint8Array, vnorms: Uint8Array | null}} Points
 *   coords [point * dim], norms [point], vnorms [point] (each point's token ‖v‖ per head; null
 *   without value vectors)
 * @typedef {{m: number, offset: number, points: Uint32Array, coords: Float32Array, norms: Uint8Array,
 *   vnorms: Uint8Array | null}} Sample
 *   the same `m` points (`points`, indices within a head) of every cell of the shown attention,
 *   from cell `offset` on: coords [cell * m * dim], norms [cell * m] (NaN coordinates: a point the
 *   page does not embed; parked at 100: a missing head, a point the attention does not have)
 */

/** @type {WeakMap<object, Map<string, ReturnType<typeof createPointStore>>>} */
const STORES = new WeakMap();

/**
 * The point store of a model and its shown attention (made on first use).
 * @param {import("./model.js").QKVizModel} model
 * @param {(request: object) => Promise<any>} fetchDetail
 */
export function getPointStore(model, fetchDetail) {
  const meta = getMeta(model);
  let stores = STORES.get(model);
  if (!stores) STORES.set(model, (stores = new Map()));
  let store = stores.get(meta.attn);
  if (!store) stores.set(meta.attn, (store = createPointStore(meta, fetchDetail)));
  return store;
}

/**
 * @param {import("./model.js").Meta} meta
 * @param {(request: object) => Promise<any>} fetchDetail  answers "sample", "points", "points_at"
 */
export function createPointStore(meta, fetchDetail) {
  const dim = meta.dim, per = 2 * meta.n_tokens, nCells = meta.layers.length * meta.heads.length;
  const first = meta.cell_offset ?? 0; // the shown attention's cells: [first, first + nCells)
  /** @type {Promise<Sample> | null} */
  let sample = null;
  /** @type {Map<number, Promise<Points>>} cell -> whole head, least recently used first */
  const heads = new Map();
  /** @type {Map<number, Points>} the heads of `heads` that arrived */
  const ready = new Map();

  /** Cells per message when asking for `k` points of every cell (messages stay under the budget). */
  const cellsPerMessage = (/** @type {number} */ k) => Math.max(1, Math.floor(meta.chunk_points / Math.max(1, k)));

  /**
   * Points `points` (indices within a head) of every cell in [start, stop) (global cell indices;
   * default the shown attention's cells), in messages of several cells; default the sample.
   * @param {Uint32Array | null} points
   */
  async function local(points, start = first, stop = first + nCells) {
    const k = points ? points.length : meta.sample_points;
    const coords = new Float32Array((stop - start) * k * dim), norms = new Uint8Array((stop - start) * k);
    const vnorms = meta.has_values ? new Uint8Array((stop - start) * k) : null;
    if (!k) return { coords, norms, vnorms };
    const step = cellsPerMessage(k), list = points ? Array.from(points) : undefined;
    for (let a = start; a < stop; a += step) {
      const b = Math.min(stop, a + step);
      const r = await fetchDetail({ kind: "sample", start: a, stop: b, ...(list ? { points: list } : {}) });
      coords.set(decode(r.coords, "float32"), (a - start) * k * dim);
      norms.set(decode(r.norms, "uint8"), (a - start) * k);
      if (vnorms && r.vnorms) vnorms.set(decode(r.vnorms, "uint8"), (a - start) * k);
    }
    return { coords, norms, vnorms };
  }

  /** The matrix's sample of every head, once. @returns {Promise<Sample>} */
  function loadSample() {
    if (!sample) {
      const m = meta.sample_points;
      const p = local(null).then(({ coords, norms, vnorms }) => ({ m, offset: first, points: meta.order.subarray(0, m), coords, norms, vnorms }));
      p.catch(() => { if (sample === p) sample = null; }); // let the next view retry
      sample = p;
    }
    return sample;
  }

  /** One head whole (chunked "points" requests), kept among the last HEAD_CACHE asked for. */
  function head(/** @type {number} */ cell) {
    let p = heads.get(cell);
    if (p) {
      heads.delete(cell); // most recently used last
      heads.set(cell, p);
      return p;
    }
    p = (async () => {
      const coords = new Float32Array(per * dim), norms = new Uint8Array(per);
      const vnorms = meta.has_values ? new Uint8Array(per) : null;
      for (let a = 0; a < per; a += meta.chunk_points) {
        const b = Math.min(per, a + meta.chunk_points);
        const r = await fetchDetail({ kind: "points", start: cell * per + a, stop: cell * per + b });
        coords.set(decode(r.coords, "float32"), a * dim);
        norms.set(decode(r.norms, "uint8"), a);
        if (vnorms && r.vnorms) vnorms.set(decode(r.vnorms, "uint8"), a);
      }
      const h = { coords, norms, vnorms };
      if (heads.get(cell) === p) ready.set(cell, h);
      return h;
    })();
    const mine = p;
    p.catch(() => { if (heads.get(cell) === mine) heads.delete(cell); });
    heads.set(cell, p);
    while (heads.size > HEAD_CACHE) {
      const oldest = /** @type {number} */ (heads.keys().next().value);
      heads.delete(oldest);
      ready.delete(oldest);
    }
    return p;
  }

  /**
   * Points at global indices (any cells): from whole heads already here, else asked for.
   * @param {Uint32Array} ids
   * @returns {Promise<Points>}
   */
  async function at(ids) {
    const coords = new Float32Array(ids.length * dim), norms = new Uint8Array(ids.length);
    const vnorms = meta.has_values ? new Uint8Array(ids.length) : null;
    /** @type {number[]} */
    const missing = [];
    for (let i = 0; i < ids.length; i++) {
      const h = ready.get(Math.floor(ids[i] / per));
      if (!h) { missing.push(i); continue; }
      const p = ids[i] % per;
      for (let d = 0; d < dim; d++) coords[i * dim + d] = h.coords[p * dim + d];
      norms[i] = h.norms[p];
      if (vnorms && h.vnorms) vnorms[i] = h.vnorms[p];
    }
    for (let a = 0; a < missing.length; a += INDICES_PER_REQUEST) {
      const part = missing.slice(a, a + INDICES_PER_REQUEST);
      const r = await fetchDetail({ kind: "points_at", points: part.map((i) => ids[i]) });
      const c = decode(r.coords, "float32"), nm = decode(r.norms, "uint8"), vn = r.vnorms ? decode(r.vnorms, "uint8") : null;
      part.forEach((i, j) => {
        for (let d = 0; d < dim; d++) coords[i * dim + d] = c[j * dim + d];
        norms[i] = nm[j];
        if (vnorms && vn) vnorms[i] = vn[j];
      });
    }
    return { coords, norms, vnorms };
  }

  return {
    loadSample, head, at, local,
    /** The whole head of `cell` if it is here (no request), else null. */
    headIfReady: (/** @type {number} */ cell) => ready.get(cell) ?? null,
  };
}
