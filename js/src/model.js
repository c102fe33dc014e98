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
 * @property {string} attn  which attention an encoder-decoder embedding shows ("encoder", "decoder",
 *   "cross"; "" for an embedding of one attention)
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
 * @property {SelectionWire | null} _selection  the selected global point indices (wire/selection.js:
 *   uint32 indices, a bitmask or a parts upload), written by the front end and by Python
 * @property {Wire | null} _picture  PNG (uint8) of the layout at the last display, shown while no
 *   kernel answers (saved widget state, a busy kernel)
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
 *   causal?: boolean, attns?: AttnWire[], streams?: string[], upload_bytes?: number,
 *   has_values?: boolean, value_range?: Wire, can_probe?: boolean,
 *   link_hover?: boolean, scores?: {names: string[], values: Wire} | null,
 *   similar?: {xy: Wire, nearest: Wire, nearest_js: Wire} | null}} MetaWire
 * @typedef {{name: string, layers: number[], heads: number[], cell_offset: number,
 *   query_stream: number, key_stream: number, causal?: boolean}} AttnWire
 * @typedef {{n_tokens?: number, display?: string[], seq?: Wire, pos?: Wire, texts?: string[],
 *   coords?: Wire, attention?: Wire, offsets?: Wire}} ProbeWire
 * @typedef {{seq?: Wire, pos?: Wire, seq_len?: Wire, category?: Wire, token?: string[],
 *   display?: string[], row?: Wire, col?: Wire, stream?: Wire}} TokensWire
 * @typedef {{type: "numeric" | "categorical", values: Wire, categories?: string[]}} ColumnWire
 * @typedef {import("./wire/selection.js").SelectionWire} SelectionWire
 */

/** The trait names of QKVizTraits, in its order (a JS test checks that the two agree). */
export const TRAITS = Object.freeze([
  "layer", "head", "attn", "color", "color_mod", "size_by_norm", "search_query", "search_regex",
  "lines_k", "lines_threshold", "theme", "height", "_meta", "_tokens", "_columns", "_selection",
  "_picture", "_probe", "_hover",
]);

/**
 * @typedef {{layers: number[], heads: number[], n_tokens: number, n_points: number,
 *   chunk_points: number, has_attention: boolean, has_faithfulness: boolean, has_images: boolean,
 *   recall: Float32Array, dim: 2 | 3, single_scale: number, cell_fill: number, attn: string,
 *   attns: AttnWire[], cell_offset: number, query_stream: number, key_stream: number,
 *   upload_bytes: number, has_values: boolean, can_probe: boolean, link_hover: boolean,
 *   scores: {names: string[], values: Float32Array} | null,
 *   similar: {xy: Float32Array, nearest: Int32Array, nearestJs: Float32Array} | null}} Meta
 */

/**
 * The attention a model shows: its `attn` trait, else cross-attention when there is one, else the
 * first (null for an embedding of one attention).
 * @param {QKVizModel} model
 * @returns {AttnWire | null}
 */
export function shownAttn(model) {
  const attns = model.get("_meta")?.attns ?? [];
  if (attns.length < 2 && !(attns.length === 1 && attns[0].name !== "self")) return null;
  const want = model.get("attn") || (attns.some((a) => a.name === "cross") ? "cross" : attns[0].name);
  return attns.find((a) => a.name === want) ?? attns[0];
}

/** @param {QKVizModel} model @returns {Meta} */
export function getMeta(model) {
  const m = model.get("_meta") ?? {};
  // An embedding of several attentions (encoder-decoder) shows one at a time: its grid is that
  // attention's layers x heads, its cells start at `cell_offset` among every cell of the grid.
  const a = shownAttn(model);
  const recall = /** @type {Float32Array} */ (decode(m.recall, "float32"));
  const nCells = a ? a.layers.length * a.heads.length : recall.length;
  return {
    layers: a ? a.layers : m.layers ?? [],
    heads: a ? a.heads : m.heads ?? [],
    attn: a ? a.name : "",
    attns: m.attns ?? [],
    cell_offset: a ? a.cell_offset : 0,
    query_stream: a ? a.query_stream : 0,
    key_stream: a ? a.key_stream : 0,
    n_tokens: m.n_tokens ?? 0,
    n_points: m.n_points ?? 0,
    chunk_points: m.chunk_points ?? 1 << 20,
    has_attention: Boolean(m.has_attention),
    has_faithfulness: Boolean(m.has_faithfulness),
    has_images: Boolean(m.has_images),
    recall: a ? recall.subarray(a.cell_offset, a.cell_offset + nCells) : recall,
    dim: m.dim === 3 ? 3 : 2,
    single_scale: m.single_scale ?? 0.9,
    cell_fill: m.cell_fill ?? 0.84,
    // page -> kernel bytes per message (qkviz.widget._hosts.UPLOAD_BUDGET); larger go in parts
    upload_bytes: m.upload_bytes ?? 512 * 1024,
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
 * @param {{layers: number[], heads: number[], cell_offset?: number}} meta
 * @param {number | null | undefined} layer
 * @param {number | null | undefined} head
 * @returns {number}
 */
export function cellOf(meta, layer, head) {
  const li = meta.layers.indexOf(/** @type {number} */ (layer)), hi = meta.heads.indexOf(/** @type {number} */ (head));
  return li < 0 || hi < 0 ? -1 : (meta.cell_offset ?? 0) + li * meta.heads.length + hi;
}

/**
 * @typedef {{seq: Uint32Array, pos: Uint32Array, seqLen: Uint32Array, category: Uint8Array,
 *   token: string[], display: string[], n: number, stream: Uint8Array}} Tokens
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
      // 0 = the encoder's (or the only) tokens, 1 = the decoder's
      stream: t.stream ? /** @type {Uint8Array} */ (decode(t.stream, "uint8")) : new Uint8Array(seq.length),
    };
    TOKENS.set(model, tokens);
  }
  return tokens;
}

/**
 * Global token rows of sequence `seq` in position order (tokens of one seq are not assumed
 * consecutive); throws when the seq has none (in the stream asked for).
 * @param {{seq: ArrayLike<number>, pos: ArrayLike<number>, stream?: ArrayLike<number>}} tokens
 * @param {number} seq
 * @param {number} [stream]  only the rows of this token stream (encoder 0, decoder 1); -1 = all
 * @returns {number[]}
 */
export function seqRows(tokens, seq, stream = -1) {
  const rows = [];
  const st = /** @type {any} */ (tokens).stream;
  for (let t = 0; t < tokens.seq.length; t++) if (tokens.seq[t] === seq && (stream < 0 || !st || st[t] === stream)) rows.push(t);
  if (!rows.length) throw new Error(`qkviz: sequence ${seq} has no tokens here`);
  return rows.sort((a, b) => tokens.pos[a] - tokens.pos[b]);
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
