// The one palette of the front end: every query/key colour, ramp and accent that the canvas, the
// side panel, the 3-D view and the thumbnails draw comes from here (AttentionViz: greens for
// queries, pinks for keys).

/** Query and key colours: dots, tooltip, panel text and bars, thumbnail borders, 3-D points. */
export const QUERY_COLOR = "#2a9d5c";
export const KEY_COLOR = "#d6457a";
export const QUERY_RGB = hexToRgb(QUERY_COLOR);
export const KEY_RGB = hexToRgb(KEY_COLOR);

/** Ramps of continuous fields (queries green, keys pink). On a dark background the ramps' darkest
 * ends vanish: there they stop at a mid-dark tone. */
export const QUERY_RAMP = ["#c7e9c0", "#74c476", "#31a354", "#006d2c", "#00441b"];
export const KEY_RAMP = ["#fcc5c0", "#f768a1", "#dd3497", "#ae017e", "#49006a"];
export const QUERY_RAMP_DARK = ["#e5f5e0", "#a1d99b", "#5bb56a", "#2f9e4f", "#1f7a3c"];
export const KEY_RAMP_DARK = ["#fde0dd", "#fa9fb5", "#f768a1", "#dd3497", "#b0187f"];
/** Categorical fields (position mod n, sequence, token category, user categories). */
export const CATEGORICAL = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
/** A point whose field has no value (e.g. the CLS token's patch colour). */
export const MISSING = "#9a9a9a";

/** Attention lines (2-D and 3-D), 0..1 RGB: an orange that reads on the light and the dark
 * background and stays apart from the query greens and key pinks. */
export const LINE_RGB = [0.91, 0.35, 0.05];
/** Lasso stroke (the 2-D scatter's `lassoColor` and the 3-D view's lasso), 0..255 RGB. */
export const LASSO_RGB = [38, 99, 235];
/** Marks of the side panel (hovered/pinned tokens, outlined patches, arrows). */
export const HIGHLIGHT = "#ffc300";
/** Canvas backgrounds of the two themes, 0..1 RGBA (the style sheet's --qk-bg). */
export const BACKGROUND = { light: [1, 1, 1, 1], dark: [0.082, 0.094, 0.114, 1] };

export function hexToRgb(hex) {
  const v = Number.parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
export function rgbToHex([r, g, b]) {
  return `#${((1 << 24) | (Math.round(r) << 16) | (Math.round(g) << 8) | Math.round(b)).toString(16).slice(1)}`;
}
/** CSS colour of 0..255 RGB with alpha. */
export const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;
/** CSS colour of 0..1 RGB (LINE_RGB). */
export const rgbUnit = (c) => `rgb(${c.map((v) => Math.round(v * 255)).join(",")})`;

// A compact perceptual ramp (viridis, 9 stops) for heatmaps: t in [0, 1] -> [r, g, b].
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
export function viridis(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}
