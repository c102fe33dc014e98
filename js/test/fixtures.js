// Small widget state for the JS tests, shaped as Python sends it (wire dicts over DataViews), and
// the one fake model every test runs the front end on: js/src/page/model.js in strict mode, so
// reading or writing any name outside model.js TRAITS throws.
import { TRAITS } from "../src/model.js";
import { createModel } from "../src/page/model.js";

/** A wire dict as ipywidgets hands it to the front end: a DataView with its dtype and shape. */
export function wire(typed, shape = [typed.length]) {
  const dtype = { Float32Array: "float32", Uint32Array: "uint32", Int32Array: "int32", Uint8Array: "uint8" }[typed.constructor.name];
  return { view: new DataView(typed.buffer, typed.byteOffset, typed.byteLength), dtype, shape };
}

/**
 * Two layers (numbered 0 and 2) x two heads, two sequences of 3 and 2 tokens, 2-D layout, points
 * pulled in chunks of 16 (3 requests for 40 points).
 */
export function smallState() {
  const layers = [0, 2], heads = [0, 1], n = 5;
  return {
    layer: null, head: null, attn: "", color: "kind", color_mod: 5, size_by_norm: false, search_query: "",
    search_regex: false, lines_k: 5, lines_threshold: 0, theme: "light", height: 480,
    _meta: {
      layers, heads, n_tokens: n, n_points: layers.length * heads.length * 2 * n, chunk_points: 16, dim: 2,
      n_seqs: 2, has_attention: true, has_faithfulness: true, has_images: false,
      recall: wire(Float32Array.from([0.5, 0.25, -1, 1])), single_scale: 0.9, cell_fill: 0.84,
    },
    _tokens: {
      seq: wire(Uint32Array.from([0, 0, 0, 1, 1])), pos: wire(Uint32Array.from([0, 1, 2, 0, 1])),
      seq_len: wire(Uint32Array.from([3, 3, 3, 2, 2])), category: wire(Uint8Array.from([2, 0, 1, 2, 0])),
      token: ["[CLS]", "cat", ".", "[CLS]", "dog"], display: ["[CLS]", "cat", ".", "[CLS]", "Dog"],
    },
    _columns: { freq: { type: "numeric", values: wire(Float32Array.from([1, 2, 3, 4, 5])) } },
    _selection: wire(new Uint32Array(0)),
  };
}

/** The strict fake model over `state` (smallState() by default). */
export function fakeModel(state = smallState()) {
  return createModel(state, { traits: TRAITS });
}

/** Point chunks as Python's "points" handler returns them (coords = point index, norms = index % 256). */
export function pointChunks(meta) {
  const chunks = [];
  for (let start = 0; start < meta.n_points; start += meta.chunk_points) {
    const stop = Math.min(meta.n_points, start + meta.chunk_points);
    const coords = new Float32Array((stop - start) * meta.dim), norms = new Uint8Array(stop - start);
    for (let p = start; p < stop; p++) {
      for (let d = 0; d < meta.dim; d++) coords[(p - start) * meta.dim + d] = p + d / 10;
      norms[p - start] = p % 256;
    }
    chunks.push({ start, stop, coords: wire(coords, [stop - start, meta.dim]), norms: wire(norms) });
  }
  return chunks;
}
