// Colour encodings -> (palette, per-point palette index, legend). The scatterplot colours points by
// a categorical index (regl-scatterplot `colorBy: "valueA"`), so every encoding is quantised into one
// palette; the palette is then doubled with faint copies for search/highlight dimming. Pure: no DOM.
import {
  BACKGROUND, CATEGORICAL, KEY_COLOR, KEY_RAMP, KEY_RAMP_DARK, MISSING, QUERY_COLOR, QUERY_RAMP, QUERY_RAMP_DARK,
  hexToRgb, rgbToHex,
} from "../ui/palette.js";

const BINS = 32;
const BASE_OPACITY = 0.9;
export const CATEGORY_NAMES = ["word", "punct", "special"];

function lerpRamp(stops, t) {
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const a = hexToRgb(stops[i]), b = hexToRgb(stops[i + 1]), f = x - i;
  return rgbToHex(a.map((v, j) => v + (b[j] - v) * f));
}
function lighten(hex, f = 0.45) {
  return rgbToHex(hexToRgb(hex).map((v) => v + (255 - v) * f));
}
const ramp = (stops) => Array.from({ length: BINS }, (_, i) => lerpRamp(stops, i / (BINS - 1)));
const bin = (t) => (Number.isFinite(t) ? Math.min(BINS - 1, Math.max(0, Math.floor(t * BINS))) : -1);

/**
 * Per-token encoding for one field (independent of the head, except "norm").
 * @returns {{palette: string[], query: Int32Array, key: Int32Array, byNorm: boolean, legend: object}}
 *   query[t] / key[t]: palette index of token t's query / key point (-1: missing value).
 */
export function encodeField(field, tokens, columns, mod = 5, dark = false) {
  const n = tokens.seq.length;
  const qRamp = dark ? QUERY_RAMP_DARK : QUERY_RAMP, kRamp = dark ? KEY_RAMP_DARK : KEY_RAMP;
  const query = new Int32Array(n), key = new Int32Array(n);
  const twoRamps = (valueOf, lo, hi, title) => {
    for (let t = 0; t < n; t++) {
      const b = bin(valueOf(t));
      query[t] = b; key[t] = b < 0 ? -1 : BINS + b;
    }
    return { palette: [...ramp(qRamp), ...ramp(kRamp)], query, key, byNorm: false,
      legend: { type: "ramp", title, lo, hi, query: qRamp, key: kRamp } };
  };
  const categorical = (codeOf, names, title, extra = {}) => {
    const m = Math.max(1, names.length);
    const base = Array.from({ length: m }, (_, i) => CATEGORICAL[i % CATEGORICAL.length]);
    for (let t = 0; t < n; t++) {
      const c = codeOf(t);
      query[t] = c < 0 ? -1 : c % m; key[t] = c < 0 ? -1 : m + (c % m);
    }
    return { palette: [...base, ...base.map((c) => lighten(c))], query, key, byNorm: false,
      legend: { type: "categories", title, names, colors: base, note: "keys lighter", ...extra } };
  };
  if (field === "kind") {
    query.fill(0); key.fill(1);
    return { palette: [QUERY_COLOR, KEY_COLOR], query, key, byNorm: false,
      legend: { type: "categories", title: "kind", names: ["query", "key"], colors: [QUERY_COLOR, KEY_COLOR] } };
  }
  if (field === "position") {
    return twoRamps((t) => tokens.pos[t] / Math.max(1, tokens.seqLen[t] - 1), "0", "1", "normalised position");
  }
  if (field === "length") {
    let lo = Infinity, hi = -Infinity;
    for (let t = 0; t < n; t++) { lo = Math.min(lo, tokens.seqLen[t]); hi = Math.max(hi, tokens.seqLen[t]); }
    return twoRamps((t) => (hi > lo ? (tokens.seqLen[t] - lo) / (hi - lo) : 0.5), String(lo), String(hi), "sequence length");
  }
  if (field === "norm") {
    const enc = twoRamps(() => 0, "low", "high", "norm (per head)");
    enc.byNorm = true;
    return enc;
  }
  if (field === "value_norm") {
    // each point by its token's value-vector norm in that head (grid.vnorms, 0..255 per head)
    const enc = twoRamps(() => 0, "low", "high", "value norm ‖v‖ (per head)");
    enc.byNorm = true;
    enc.byValue = true;
    return enc;
  }
  if (field === "position_mod") {
    const m = Math.max(1, mod | 0);
    return categorical((t) => tokens.pos[t] % m, Array.from({ length: m }, (_, i) => `pos % ${m} = ${i}`), `position mod ${m}`);
  }
  if (field === "sequence") {
    let m = 0;
    for (let t = 0; t < n; t++) m = Math.max(m, tokens.seq[t] + 1);
    const c = CATEGORICAL.length, names = Array.from({ length: Math.min(m, c) }, (_, i) => `seq ${i}`);
    // one colour per sequence up to c, then they repeat; the legend counts sequences, not colours
    return categorical((t) => tokens.seq[t] % c, names, "sequence",
      m > c ? { total: m, unit: "sequences", note: `keys lighter; colours repeat every ${c} sequences` } : {});
  }
  if (field === "category") return categorical((t) => tokens.category[t], CATEGORY_NAMES, "token category");
  if (field === "patch_color" && columns?.mean_r && columns?.mean_g && columns?.mean_b) {
    return patchColors(tokens, columns, query, key);
  }
  const col = columns?.[field];
  if (col?.type === "numeric") {
    let lo = Infinity, hi = -Infinity;
    for (const v of col.values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return twoRamps((t) => (hi > lo ? (col.values[t] - lo) / (hi - lo) : 0.5), fmt(lo), fmt(hi), field);
  }
  if (col?.type === "categorical") return categorical((t) => col.values[t], col.categories, field);
  // Unknown field: Python rejects these, but a static page could still carry one. Colour by kind.
  return encodeField("kind", tokens, columns, mod, dark);
}

// Image captures: each patch in its own mean colour, quantised to LEVELS per channel (the scatter
// colours by palette index); queries and keys alike (thumbnail borders tell them apart).
const LEVELS = 6;
function patchColors(tokens, columns, query, key) {
  const palette = [];
  for (let r = 0; r < LEVELS; r++) for (let g = 0; g < LEVELS; g++) for (let b = 0; b < LEVELS; b++) {
    palette.push(rgbToHex([r, g, b].map((v) => (v * 255) / (LEVELS - 1))));
  }
  const level = (v) => Math.round(Math.min(1, Math.max(0, v)) * (LEVELS - 1));
  const { mean_r: R, mean_g: G, mean_b: B } = columns;
  for (let t = 0; t < tokens.seq.length; t++) {
    const ok = Number.isFinite(R.values[t]) && Number.isFinite(G.values[t]) && Number.isFinite(B.values[t]);
    query[t] = key[t] = ok ? (level(R.values[t]) * LEVELS + level(G.values[t])) * LEVELS + level(B.values[t]) : -1;
  }
  return { palette, query, key, byNorm: false,
    legend: { type: "categories", title: "patch colour", names: ["[CLS] / no patch"], colors: [MISSING], note: "each patch in its mean colour" } };
}

const fmt = (v) => (Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)) : "–");

/** How much of its colour a dimmed point keeps (the rest is the background), and its alpha. */
const DIM_KEEP = 0.25, DIM_ALPHA = 0.45;

/** Final palette: [...palette, missing, ...dimmed copies]; index i dims to i + half.
 * `opacity[i]` is the alpha of index i (the scatterplot's opacity encoding, see scatter.js).
 *
 * A dimmed copy is the colour already blended into the background (`DIM_KEEP` of it), drawn with
 * alpha `DIM_ALPHA`: however many dimmed points stack on one spot, they blend towards that pale
 * colour and never get darker than it, so a stack of faded points cannot outshine a match (dimming
 * by alpha alone accumulates: 27 points at 12 % cover 97 %). `DIM_ALPHA` stays below 0.5, which the
 * 3-D view reads as "dimmed" (drawn underneath). */
export function withDimmed(palette, dark) {
  const full = [...palette, MISSING];
  const bg = (dark ? BACKGROUND.dark : BACKGROUND.light).slice(0, 3);
  const dim = full.map((hex) => [...hexToRgb(hex).map((v, j) => (v / 255) * DIM_KEEP + bg[j] * (1 - DIM_KEEP)), DIM_ALPHA]);
  const colors = [...full.map((hex) => [...hexToRgb(hex).map((v) => v / 255), 1]), ...dim];
  return { colors, opacity: colors.map((c) => (c[3] < 1 ? c[3] : BASE_OPACITY)), half: full.length, missing: palette.length };
}

/** Draw order that puts dimmed points (index >= half) first, so that none is drawn over a bright
 * one; `null` when nothing is dimmed (the scatter's own order). */
export function brightOnTop(z, half) {
  let dimmed = 0;
  for (let i = 0; i < z.length; i++) if (z[i] >= half) dimmed++;
  if (!dimmed || dimmed === z.length) return null;
  const order = new Array(z.length);
  let d = 0, b = dimmed;
  for (let i = 0; i < z.length; i++) order[z[i] >= half ? d++ : b++] = i;
  return order;
}

/**
 * Fill z (palette index per drawn point).
 * @param {Float32Array} z  [k] out
 * @param {object} enc  encodeField's result
 * @param {Uint32Array} ids  [k] global indices of the drawn points (`cell * 2n + point`)
 * @param {number} n  tokens
 * @param {Uint8Array} norms  [k] the drawn points' quantised norms (colour by norm)
 * @param {number} half  index offset of the dimmed copies
 * @param {number} missing  palette index of a missing value
 * @param {Uint8Array | null} highlight  [token] 1 = bright; the others dimmed (null: none)
 */
export function fillColorIndex(z, enc, ids, n, norms, half, missing, highlight) {
  const per = 2 * n;
  for (let i = 0; i < ids.length; i++) {
    const p = ids[i] % per;
    const t = p < n ? p : p - n;
    let idx;
    if (enc.byNorm) {
      const b = Math.min(BINS - 1, (norms[i] * BINS) >> 8);
      idx = p < n ? b : BINS + b;
    } else {
      idx = p < n ? enc.query[t] : enc.key[t];
    }
    if (idx < 0) idx = missing;
    if (highlight && !highlight[t]) idx += half;
    z[i] = idx;
  }
  return z;
}
