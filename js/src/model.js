// @ts-check
// The model interface: every synced trait of qkviz.widget.QKViz that the front end reads or writes,
// declared once (anywidget's typed model, as a JSDoc typedef), and the decoding of the wire traits,
// once per model (shared by every view of it).
//
// Two checks keep this honest: tests/widget/test_widget.py compares the keys of `QKVizTraits` with
// QKViz().trait_names(sync=True), and the JS tests (js/test/) run the front end on a fake model
// that refuses any trait name not in TRAITS.
import { decode } from "./wire/codec.js";

/**
 * @typedef {import("./wire/codec.js").Wire} Wire
 *
 * @typedef {object} QKVizTraits
 * @property {number | null} layer  focused layer (model numbering); null (with `head`) = the matrix
 * @property {number | null} head  focused query head
 * @property {string} color  colour field: kind, position, position_mod, norm, sequence, category,
 *   length, patch_color or a user column
 * @property {number} color_mod  the n of position_mod
 * @property {boolean} size_by_norm  dot size by vector norm
 * @property {string} search_query  case-insensitive substring (or regex) over the display text
 * @property {boolean} search_regex
 * @property {number} lines_k  attention lines: top-k per clicked point
 * @property {number} lines_threshold  attention lines: minimum weight
 * @property {"auto" | "light" | "dark"} theme
 * @property {number} height  CSS px of the canvas (the single view is square)
 * @property {MetaWire} _meta  grid description (docs/internals.md, "Traits of QKViz")
 * @property {TokensWire} _tokens  per-token columns and strings
 * @property {Record<string, ColumnWire>} _columns  user columns (and patch colours of images)
 * @property {Wire | null} _selection  uint32 global point indices, written by the front end
 * @property {ProbeWire} _probe  the probed text's points in every head (QKViz.probe); {} = none
 * @property {number} _hover  global point index under the pointer (-1: none); written by the front
 *   end only when `_meta.link_hover` (qkviz.compare links two widgets' hover through it)
 */

/**
 * The anywidget model, typed by its traits (anywidget's AnyModel<QKVizTraits>).
 * @typedef {object} QKVizModel
 * @property {<K extends keyof QKVizTraits>(name: K) => QKVizTraits[K]} get
 * @property {<K extends keyof QKVizTraits>(name: K, value: QKVizTraits[K]) => void} set
 * @property {() => void} save_changes
 * @property {(event: string, handler: (...args: any[]) => void) => void} on
 * @property {(event: string, handler: (...args: any[]) => void) => void} off
 * @property {(msg: any, callbacks?: any, buffers?: any[]) => void} send
 * @property {(request: object) => Promise<any>} [fetchDetail]  a page's or harness's own channel
 */

/**
 * @typedef {{layers?: number[], heads?: number[], n_tokens?: number, n_points?: number,
 *   chunk_points?: number, dim?: number, n_seqs?: number, has_attention?: boolean,
 *   has_faithfulness?: boolean, has_images?: boolean, recall?: Wire, norm_range?: Wire,
 *   missing?: Wire, single_scale?: number, cell_fill?: number, modality?: string,
 *   causal?: boolean, has_values?: boolean, value_range?: Wire, can_probe?: boolean,
 *   link_hover?: boolean, scores?: {names: string[], values: Wire} | null,
 *   similar?: {xy: Wire, nearest: Wire, nearest_js: Wire} | null}} MetaWire
 * @typedef {{n_tokens?: number, display?: string[], seq?: Wire, pos?: Wire, texts?: string[],
 *   coords?: Wire, attention?: Wire, offsets?: Wire}} ProbeWire
 * @typedef {{seq?: Wire, pos?: Wire, seq_len?: Wire, category?: Wire, token?: string[],
 *   display?: string[], row?: Wire, col?: Wire}} TokensWire
 * @typedef {{type: "numeric" | "categorical", values: Wire, categories?: string[]}} ColumnWire
 */

/** The trait names of QKVizTraits, in its order (a JS test checks that the two agree). */
export const TRAITS = Object.freeze([
  "layer", "head", "color", "color_mod", "size_by_norm", "search_query", "search_regex",
  "lines_k", "lines_threshold", "theme", "height", "_meta", "_tokens", "_columns", "_selection",
  "_probe", "_hover",
]);

/**
 * @typedef {{layers: number[], heads: number[], n_tokens: number, n_points: number,
 *   chunk_points: number, has_attention: boolean, has_faithfulness: boolean, has_images: boolean,
 *   recall: Float32Array, dim: 2 | 3, single_scale: number, cell_fill: number,
 *   has_values: boolean, can_probe: boolean, link_hover: boolean,
 *   scores: {names: string[], values: Float32Array} | null,
 *   similar: {xy: Float32Array, nearest: Int32Array, nearestJs: Float32Array} | null}} Meta
 */

/** @param {QKVizModel} model @returns {Meta} */
export function getMeta(model) {
  const m = model.get("_meta") ?? {};
  return {
    layers: m.layers ?? [],
    heads: m.heads ?? [],
    n_tokens: m.n_tokens ?? 0,
    n_points: m.n_points ?? 0,
    chunk_points: m.chunk_points ?? 1 << 20,
    has_attention: Boolean(m.has_attention),
    has_faithfulness: Boolean(m.has_faithfulness),
    has_images: Boolean(m.has_images),
    recall: /** @type {Float32Array} */ (decode(m.recall, "float32")),
    dim: m.dim === 3 ? 3 : 2,
    single_scale: m.single_scale ?? 0.9,
    cell_fill: m.cell_fill ?? 0.84,
    has_values: Boolean(m.has_values),
    can_probe: Boolean(m.can_probe),
    link_hover: Boolean(m.link_hover),
    scores: m.scores ? { names: m.scores.names ?? [], values: /** @type {Float32Array} */ (decode(m.scores.values, "float32")) } : null,
    similar: m.similar ? {
      xy: /** @type {Float32Array} */ (decode(m.similar.xy, "float32")),
      nearest: /** @type {Int32Array} */ (decode(m.similar.nearest, "int32")),
      nearestJs: /** @type {Float32Array} */ (decode(m.similar.nearest_js, "float32")),
    } : null,
  };
}

/**
 * The cell (layer-major index over `meta.layers` x `meta.heads`) of a head, as Python's
 * `layer_index * len(heads) + head_index`; -1 when the layer or the head is not in the grid.
 * @param {{layers: number[], heads: number[]}} meta
 * @param {number | null | undefined} layer
 * @param {number | null | undefined} head
 * @returns {number}
 */
export function cellOf(meta, layer, head) {
  const li = meta.layers.indexOf(/** @type {number} */ (layer)), hi = meta.heads.indexOf(/** @type {number} */ (head));
  return li < 0 || hi < 0 ? -1 : li * meta.heads.length + hi;
}

/**
 * @typedef {{seq: Uint32Array, pos: Uint32Array, seqLen: Uint32Array, category: Uint8Array,
 *   token: string[], display: string[], n: number}} Tokens
 */

/** @type {WeakMap<object, Tokens>} */
const TOKENS = new WeakMap();
/** @type {WeakMap<object, Promise<{coords: Float32Array, norms: Uint8Array, vnorms: Uint8Array | null}>>} */
const GRID = new WeakMap();

/** The token table, decoded once per model. @param {QKVizModel} model @returns {Tokens} */
export function getTokens(model) {
  let tokens = TOKENS.get(model);
  if (!tokens) {
    const t = model.get("_tokens") ?? {};
    const seq = /** @type {Uint32Array} */ (decode(t.seq, "uint32"));
    tokens = {
      seq,
      pos: /** @type {Uint32Array} */ (decode(t.pos, "uint32")),
      seqLen: /** @type {Uint32Array} */ (decode(t.seq_len, "uint32")),
      category: /** @type {Uint8Array} */ (decode(t.category, "uint8")),
      token: t.token ?? [],
      display: t.display ?? t.token ?? [],
      n: seq.length,
    };
    TOKENS.set(model, tokens);
  }
  return tokens;
}

/**
 * User columns with decoded values.
 * @param {QKVizModel} model
 * @returns {Record<string, {type: string, categories: string[], values: Float32Array | Uint32Array}>}
 */
export function getColumns(model) {
  /** @type {Record<string, any>} */
  const out = {};
  for (const [name, c] of Object.entries(model.get("_columns") ?? {})) {
    out[name] = { type: c.type, categories: c.categories ?? [], values: decode(c.values) };
  }
  return out;
}

/**
 * The whole grid, pulled once per model in chunks of `chunk_points` (each message stays under the
 * size budget, and sequential requests keep the kernel responsive).
 * @param {QKVizModel} model
 * @param {(request: object) => Promise<any>} fetchDetail
 * @returns {Promise<{coords: Float32Array, norms: Uint8Array, vnorms: Uint8Array | null}>} coords
 *   [point*dim], norms [point], vnorms [point] (each point's token ‖v‖ per head; null without values)
 */
export function loadGrid(model, fetchDetail) {
  let grid = GRID.get(model);
  if (!grid) {
    const meta = getMeta(model);
    grid = (async () => {
      const coords = new Float32Array(meta.n_points * meta.dim);
      const norms = new Uint8Array(meta.n_points);
      const vnorms = meta.has_values ? new Uint8Array(meta.n_points) : null;
      for (let start = 0; start < meta.n_points; start += meta.chunk_points) {
        const stop = Math.min(meta.n_points, start + meta.chunk_points);
        const r = await fetchDetail({ kind: "points", start, stop });
        coords.set(decode(r.coords, "float32"), start * meta.dim);
        norms.set(decode(r.norms, "uint8"), start);
        if (vnorms && r.vnorms) vnorms.set(decode(r.vnorms, "uint8"), start);
      }
      return { coords, norms, vnorms };
    })();
    grid.catch(() => GRID.delete(model)); // allow a retry from the next view
    GRID.set(model, grid);
  }
  return grid;
}
