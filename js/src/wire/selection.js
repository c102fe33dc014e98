// @ts-check
// The `_selection` trait on the wire, the JS half of src/qkviz/wire/_selection.py. A selection is a
// sorted set of global point indices; it travels as whichever is smaller:
//
//   indices  {view, dtype: "uint32", shape: [k]}                        4 bytes a point
//   bitmask  {view, dtype: "uint8", shape: [b], encoding: "bitmask",    1 bit a point of [start,
//             start, count}                                              start + 8b); LSB first
//
// A lasso over a large matrix can still exceed what one page -> kernel message may carry (about
// 1 MB in Colab, docs/environments.md): then the bytes go first, in parts, through the request
// channel ({kind: "selection_part", id, part, parts} with one buffer each), and the trait gets
//
//   parts    {encoding: "parts", id, count, parts, inner: {dtype, shape, encoding?, start?}}
//
// which Python assembles. Only this page can read a parts wire back (it keeps what it sent).

/**
 * @typedef {{view: DataView, dtype: "uint32", shape: number[]}} IndexWire
 * @typedef {{view: DataView, dtype: "uint8", shape: number[], encoding: "bitmask", start: number,
 *   count: number}} BitmaskWire
 * @typedef {{encoding: "parts", id: string, count: number, parts: number,
 *   inner: {dtype: string, shape: number[], encoding?: string, start?: number, count?: number}}} PartsWire
 * @typedef {IndexWire | BitmaskWire | PartsWire | {view: any, dtype?: string, shape?: number[]}} SelectionWire
 */

import { decode } from "./codec.js";

/** @type {Map<string, Uint32Array>} uploads of this page, by id: what a parts wire stands for */
const SENT = new Map();
const KEEP_SENT = 8;

/** A DataView over exactly these bytes (ipywidgets sends a view's whole ArrayBuffer). @param {Uint8Array | Uint32Array} a */
function ownView(a) {
  const own = a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : a.slice();
  return new DataView(own.buffer, 0, own.byteLength);
}

/**
 * The smaller wire of a selection.
 * @param {ArrayLike<number>} indices  global point indices, sorted ascending, no repeats
 * @returns {IndexWire | BitmaskWire}
 */
export function packSelection(indices) {
  const k = indices.length;
  if (k === 0) return { view: new DataView(new ArrayBuffer(0)), dtype: "uint32", shape: [0] };
  const start = indices[0], span = indices[k - 1] - start + 1;
  const nbytes = Math.ceil(span / 8);
  if (nbytes >= 4 * k) return { view: ownView(Uint32Array.from(indices)), dtype: "uint32", shape: [k] };
  const bits = new Uint8Array(nbytes);
  for (let i = 0; i < k; i++) {
    const d = indices[i] - start;
    bits[d >> 3] |= 1 << (d & 7);
  }
  return { view: ownView(bits), dtype: "uint8", shape: [nbytes], encoding: "bitmask", start, count: k };
}

/**
 * Global point indices (sorted) of a selection wire; an unknown wire (another page's parts
 * upload) reads as empty.
 * @param {SelectionWire | null | undefined} wire
 * @returns {Uint32Array}
 */
export function unpackSelection(wire) {
  if (!wire) return new Uint32Array(0);
  const w = /** @type {any} */ (wire);
  if (w.encoding === "parts") return SENT.get(w.id) ?? new Uint32Array(0);
  if (w.encoding === "bitmask") {
    const bits = /** @type {Uint8Array} */ (decode({ view: w.view, dtype: "uint8" }));
    const out = new Uint32Array(w.count ?? 0);
    let j = 0;
    for (let b = 0; b < bits.length && j < out.length; b++) {
      let v = bits[b];
      while (v) {
        const low = v & -v;
        out[j++] = w.start + b * 8 + (31 - Math.clz32(low));
        v ^= low;
      }
    }
    return j === out.length ? out : out.slice(0, j);
  }
  return /** @type {Uint32Array} */ (decode(w, "uint32"));
}

/** Bytes the wire's buffer holds. @param {SelectionWire} wire */
export function wireBytes(wire) {
  const v = /** @type {any} */ (wire).view;
  return v ? v.byteLength : 0;
}

/**
 * Send the selection's bytes ahead in parts of at most `budget` bytes; resolves to the parts wire
 * to set on the trait once every part was acknowledged.
 * @param {Uint32Array} indices  what the wire stands for (kept, so this page can read it back)
 * @param {IndexWire | BitmaskWire} packed  from packSelection
 * @param {number} budget  bytes per part
 * @param {(request: object, options?: {buffers?: any[]}) => Promise<any>} fetchDetail
 * @returns {Promise<PartsWire>}
 */
export async function uploadSelection(indices, packed, budget, fetchDetail) {
  const id = `sel-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const bytes = new Uint8Array(packed.view.buffer, packed.view.byteOffset, packed.view.byteLength);
  const size = Math.max(1024, Math.floor(budget) - 1024); // room for the message's own JSON
  const parts = Math.max(1, Math.ceil(bytes.length / size));
  for (let p = 0; p < parts; p++) {
    const part = bytes.slice(p * size, (p + 1) * size); // its own buffer: sent whole
    await fetchDetail({ kind: "selection_part", id, part: p, parts }, { buffers: [new DataView(part.buffer)] });
  }
  SENT.set(id, indices);
  while (SENT.size > KEEP_SENT) SENT.delete(/** @type {string} */ (SENT.keys().next().value));
  const inner = { dtype: packed.dtype, shape: packed.shape };
  if ("encoding" in packed) Object.assign(inner, { encoding: packed.encoding, start: packed.start, count: packed.count });
  return { encoding: "parts", id, count: indices.length, parts, inner };
}
