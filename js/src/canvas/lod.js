// @ts-check
// What the canvas draws, as a "drawn set": the global index, layout coordinates and quantised norm
// of every drawn point, in draw order (later points on top). The matrix draws the sample of every
// cell (points.js) plus forced extras (searched and selected points the sample lacks); the single
// view draws a whole head in `_meta.order` (queries and keys interleaved, so neither kind always
// covers the other). Points with a NaN coordinate (a missing head, an absent point) are left out.
// Pure: no DOM, no requests.

/**
 * @typedef {{ids: Uint32Array, coords: Float32Array, norms: Uint8Array, vnorms: Uint8Array | null}} Drawn
 *   ids [k] global point indices (`cell * 2n + point`); coords [k * dim]; norms [k]; vnorms [k]
 *   (each point's token ‖v‖ in its head, 0..255; null without value vectors)
 */

/** The drawn set with nothing in it. @returns {Drawn} */
export const emptyDrawn = () => ({ ids: new Uint32Array(0), coords: new Float32Array(0), norms: new Uint8Array(0), vnorms: null });

/** rank[order[i]] = i: where each point comes in the draw order. @param {Uint32Array} order */
export function rankOf(order) {
  const rank = new Uint32Array(order.length);
  for (let i = 0; i < order.length; i++) rank[order[i]] = i;
  return rank;
}

/**
 * The same points of a range of cells (the matrix sample, or searched points) as a drawn set.
 * @param {{coords: Float32Array, norms: Uint8Array, vnorms?: Uint8Array | null}} block  coords
 *   [cell * k * dim], norms and vnorms [cell * k] for cells start..start + (length / k)
 * @param {Uint32Array} points  the k indices within a head
 * @param {number} start  the first cell of the block
 * @param {number} per  points per head (2n)
 * @param {number} dim
 * @param {Uint8Array | null} [skipCells]  1 = leave that cell out (missing heads)
 * @returns {Drawn}
 */
export function cellsBlock(block, points, start, per, dim, skipCells = null) {
  const k = points.length, cells = k ? block.norms.length / k : 0;
  const ids = new Uint32Array(cells * k), coords = new Float32Array(cells * k * dim), norms = new Uint8Array(cells * k);
  const vn = block.vnorms ?? null, vnorms = vn ? new Uint8Array(cells * k) : null;
  let o = 0;
  for (let c = 0; c < cells; c++) {
    if (skipCells?.[start + c]) continue;
    for (let i = 0; i < k; i++) {
      const src = c * k + i;
      if (!finiteAt(block.coords, src, dim)) continue;
      ids[o] = (start + c) * per + points[i];
      for (let d = 0; d < dim; d++) coords[o * dim + d] = block.coords[src * dim + d];
      if (vnorms) vnorms[o] = vn[src];
      norms[o++] = block.norms[src];
    }
  }
  return { ids: ids.subarray(0, o), coords: coords.subarray(0, o * dim), norms: norms.subarray(0, o), vnorms: vnorms?.subarray(0, o) ?? null };
}

/**
 * Points given by global index with their coordinates (selected extras) as a drawn set.
 * @param {Uint32Array} ids
 * @param {{coords: Float32Array, norms: Uint8Array, vnorms?: Uint8Array | null}} points  coords
 *   [k * dim], norms and vnorms [k]
 * @param {number} dim
 * @returns {Drawn}
 */
export function idsBlock(ids, points, dim) {
  const keep = [];
  for (let i = 0; i < ids.length; i++) if (finiteAt(points.coords, i, dim)) keep.push(i);
  const vn = points.vnorms ?? null;
  const out = { ids: new Uint32Array(keep.length), coords: new Float32Array(keep.length * dim), norms: new Uint8Array(keep.length),
    vnorms: vn ? new Uint8Array(keep.length) : null };
  keep.forEach((i, o) => {
    out.ids[o] = ids[i];
    for (let d = 0; d < dim; d++) out.coords[o * dim + d] = points.coords[i * dim + d];
    out.norms[o] = points.norms[i];
    if (out.vnorms) out.vnorms[o] = vn[i];
  });
  return out;
}

/**
 * One whole head in draw order (the single view).
 * @param {{coords: Float32Array, norms: Uint8Array, vnorms?: Uint8Array | null}} head  coords
 *   [point * dim], norms and vnorms [point]
 * @param {Uint32Array} order  every point of a head in draw order
 * @param {number} cell
 * @param {number} dim
 * @returns {Drawn}
 */
export function headBlock(head, order, cell, dim) {
  const per = order.length;
  const ids = new Uint32Array(per), coords = new Float32Array(per * dim), norms = new Uint8Array(per);
  const vn = head.vnorms ?? null, vnorms = vn ? new Uint8Array(per) : null;
  let o = 0;
  for (let i = 0; i < per; i++) {
    const p = order[i];
    if (!finiteAt(head.coords, p, dim)) continue;
    ids[o] = cell * per + p;
    for (let d = 0; d < dim; d++) coords[o * dim + d] = head.coords[p * dim + d];
    if (vnorms) vnorms[o] = vn[p];
    norms[o++] = head.norms[p];
  }
  return { ids: ids.subarray(0, o), coords: coords.subarray(0, o * dim), norms: norms.subarray(0, o), vnorms: vnorms?.subarray(0, o) ?? null };
}

/**
 * A drawn set without the points of some cells (those drawn whole instead).
 * @param {Drawn} block
 * @param {Uint8Array} skipCells  1 = leave that cell out
 * @param {number} per
 * @param {number} dim
 * @returns {Drawn}
 */
export function withoutCells(block, skipCells, per, dim) {
  const keep = [];
  for (let i = 0; i < block.ids.length; i++) if (!skipCells[Math.floor(block.ids[i] / per)]) keep.push(i);
  if (keep.length === block.ids.length) return block;
  const out = { ids: new Uint32Array(keep.length), coords: new Float32Array(keep.length * dim), norms: new Uint8Array(keep.length),
    vnorms: block.vnorms ? new Uint8Array(keep.length) : null };
  keep.forEach((i, o) => {
    out.ids[o] = block.ids[i];
    out.coords.set(block.coords.subarray(i * dim, (i + 1) * dim), o * dim);
    out.norms[o] = block.norms[i];
    if (out.vnorms) out.vnorms[o] = block.vnorms[i];
  });
  return out;
}

/**
 * A whole head as fetched, with the points it lacks (NaN: a page that embeds only a sample of this
 * head) taken from the matrix's sample of its cell.
 * @param {{coords: Float32Array, norms: Uint8Array}} head  coords [point * dim], norms [point]
 * @param {{points: Uint32Array, coords: Float32Array, norms: Uint8Array, offset?: number}} sample
 *   (points.js; its cells start at `offset`)
 * @param {number} cell
 * @param {number} dim
 * @returns {{coords: Float32Array, norms: Uint8Array, vnorms: Uint8Array | null, finite: number}}
 *   `finite`: points with coordinates
 */
export function fillFromSample(head, sample, cell, dim) {
  const per = head.norms.length, m = sample.points.length;
  let coords = head.coords, norms = head.norms, vnorms = head.vnorms ?? null;
  for (let i = 0; i < m; i++) {
    const p = sample.points[i], src = (cell - (sample.offset ?? 0)) * m + i;
    if (finiteAt(coords, p, dim) || !finiteAt(sample.coords, src, dim)) continue;
    if (coords === head.coords) { coords = coords.slice(); norms = norms.slice(); vnorms = vnorms?.slice() ?? null; }
    for (let d = 0; d < dim; d++) coords[p * dim + d] = sample.coords[src * dim + d];
    norms[p] = sample.norms[src];
    if (vnorms && sample.vnorms) vnorms[p] = sample.vnorms[src];
  }
  let finite = 0;
  for (let p = 0; p < per; p++) if (finiteAt(coords, p, dim)) finite++;
  return { coords, norms, vnorms, finite };
}

/** Drawn sets one after the other (later ones drawn on top). @param {Drawn[]} blocks @param {number} dim */
export function concatDrawn(blocks, dim) {
  if (blocks.length === 1) return blocks[0];
  const k = blocks.reduce((s, b) => s + b.ids.length, 0);
  const withValues = blocks.some((b) => b.vnorms);
  const out = { ids: new Uint32Array(k), coords: new Float32Array(k * dim), norms: new Uint8Array(k),
    vnorms: withValues ? new Uint8Array(k) : null };
  let o = 0;
  for (const b of blocks) {
    out.ids.set(b.ids, o); out.coords.set(b.coords, o * dim); out.norms.set(b.norms, o);
    if (out.vnorms && b.vnorms) out.vnorms.set(b.vnorms, o);
    o += b.ids.length;
  }
  return out;
}

/**
 * The searched points the sample lacks, as indices within a head, in draw order: the query and the
 * key of every matching token, at most `limit` (the first in draw order: a stratified subset).
 * @param {Uint8Array} match  1 for matching tokens
 * @param {Uint8Array} covered  [point] 1 = already drawn in every cell (the sample)
 * @param {Uint32Array} order
 * @param {number} limit
 * @returns {Uint32Array}
 */
export function searchPoints(match, covered, order, limit) {
  const n = match.length, out = [];
  for (let i = 0; i < order.length && out.length < limit; i++) {
    const p = order[i];
    if (!covered[p] && match[p < n ? p : p - n]) out.push(p);
  }
  return Uint32Array.from(out);
}

/**
 * The selected points not drawn yet, at most `limit`, the earliest in draw order first.
 * @param {Uint32Array} selection  global indices
 * @param {Uint8Array} covered  [point] drawn in every cell (sample and searched extras)
 * @param {Uint32Array} rank  rankOf(order)
 * @param {number} per
 * @param {Uint8Array | null} skipCells  1 = a cell with nothing to draw (missing head)
 * @param {number} limit
 * @returns {Uint32Array}
 */
export function selectionExtras(selection, covered, rank, per, skipCells, limit) {
  const out = [];
  for (const g of selection) {
    const p = g % per;
    if (!covered[p] && !skipCells?.[Math.floor(g / per)]) out.push(g);
  }
  if (out.length > limit) out.sort((a, b) => rank[a % per] - rank[b % per]);
  return Uint32Array.from(out.slice(0, limit));
}

/** [point] 1 for `points`. @param {ArrayLike<number>} points @param {number} per */
export function maskOf(points, per, into = new Uint8Array(per)) {
  for (let i = 0; i < points.length; i++) into[points[i]] = 1;
  return into;
}

/**
 * Indices into `drawn` of the global points `wanted` (a selection shown on what is drawn).
 * @param {Uint32Array} ids  the drawn set's ids
 * @param {ArrayLike<number>} wanted
 * @returns {number[]}
 */
export function drawnIndicesOf(ids, wanted) {
  if (!wanted.length) return [];
  const want = new Set(Array.from(wanted));
  const out = [];
  for (let i = 0; i < ids.length; i++) if (want.has(ids[i])) out.push(i);
  return out;
}

/** @param {Float32Array} coords @param {number} i @param {number} dim */
function finiteAt(coords, i, dim) {
  for (let d = 0; d < dim; d++) if (!Number.isFinite(coords[i * dim + d])) return false;
  return true;
}
