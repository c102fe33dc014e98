// One rendered view of a QKViz model: toolbar, the canvas (matrix of all heads or one head),
// grid labels, tooltip, legend and the side panel. All state that Python can see lives in traits;
// everything here is derived from them (so a static page with a fake model behaves the same).
//
// This module wires the parts, one job each (toolbar, scatter, matrix, lines, tooltip, selection,
// orbit, single3d, thumbnails), and owns the view's lifetime: `signal` (every listener, observer
// and part registers on it) and the bus to the side panel (bus.js). The parts share one context,
// `ctx`: what the model says (meta, tokens, columns), the DOM, `ctx.state` (what is drawn: mode,
// cell, the drawn set and its positions) and each other (ctx.scatter, ctx.lines, ...), looked up
// when called.
//
// Level of detail (docs/internals.md): the matrix draws the sample of every head plus the searched
// and selected points the sample lacks; the single view draws its head whole, fetched when it is
// opened. Both in `_meta.order`, so queries and keys interleave. A lasso on the matrix selects from
// every point of the cells it crosses (their heads are fetched whole), never only from the sample.
import { createBus } from "../bus.js";
import { cellOf, getColumns, getMeta, getTokens } from "../model.js";
import { mountPanel } from "../panel/index.js";
import { getPointStore } from "../points.js";
import { h } from "../ui/dom.js";
import { BACKGROUND } from "../ui/palette.js";
import { AXIS_PX } from "../ui/style.js";
import { createAtlas } from "./atlas.js";
import { createLines } from "./lines.js";
import {
  cellsBlock, concatDrawn, emptyDrawn, fillFromSample, headBlock, idsBlock, maskOf, rankOf, searchPoints,
  selectionExtras, withoutCells,
} from "./lod.js";
import { cellsInRect, chooseTranspose, createMatrix, fitCanvas, gridGeometry, singlePositions } from "./matrix.js";
import { createOrbit } from "./orbit.js";
import { createProbe } from "./probe.js";
import { mark, createScatter } from "./scatter.js";
import { pointsInPolygon, project3D } from "./scene3d.js";
import { matchTokens } from "./search.js";
import { createSelection } from "./selection.js";
import { createSingle3D } from "./single3d.js";
import { createThumbnailFeed, mountThumbnails } from "./thumbnails.js";
import { createToolbar } from "./toolbar.js";
import { createTooltip } from "./tooltip.js";

/** How the status line and the toolbar name the attentions of an encoder-decoder model. */
export const ATTN_LABELS = { encoder: "encoder self-attention", decoder: "decoder self-attention", cross: "cross-attention (decoder → encoder)" };

const PANEL_PX = 240; // room the single view leaves beside itself for the side panel
const WIDE_PANEL_PX = 360; // the same for the matrix (the side panel keeps its 340 px)
const MIN_PX = 220;
const CLICK_PX = 4; // a press that moves more is a pan, not a click on a cell
const OPEN_SHARE = 0.9; // a wheel-up over a cell this big (share of the canvas) opens its head
// Zoomed in (at least WHOLE_ZOOM times) on the 2-D matrix, the cells in view are drawn whole once
// the camera has rested SETTLE_MS, when their points together are no more than the matrix's sample
// or WHOLE_POINTS, whichever is more (the canvas never draws much more than twice the sample).
const WHOLE_ZOOM = 1.5;
const WHOLE_POINTS = 200_000;
const SETTLE_MS = 250;

function notebookTheme() {
  const b = document.body;
  if (b?.dataset?.jpThemeLight === "false" || b?.classList?.contains("vscode-dark")) return "dark";
  if (b?.dataset?.jpThemeLight === "true" || b?.classList?.contains("vscode-light")) return "light";
  return globalThis.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/**
 * @param {{model: import("../model.js").QKVizModel, el: HTMLElement,
 *   fetchDetail: (request: object, options?: {buffers?: any[]}) => Promise<any>, signal: AbortSignal,
 *   onReady?: () => void, onFail?: (err: any) => void}} props
 *   onReady: the grid is drawn; onFail: the view could not start (lifecycle.js reports both)
 */
export function renderView({ model, el, fetchDetail, signal, onReady = () => {}, onFail = () => {} }) {
  const on = (target, ev, fn, opts) => target.addEventListener(ev, fn, { signal, ...opts });
  const listen = (name, fn) => {
    model.on(name, fn);
    signal.addEventListener("abort", () => model.off(name, fn));
  };
  const meta = getMeta(model);
  const n = meta.n_tokens;
  const bus = createBus();
  signal.addEventListener("abort", () => bus.clear());

  const root = h("div", { class: "qk-root", tabindex: "0" });
  el.replaceChildren(root);
  signal.addEventListener("abort", () => root.remove());
  const canvas = h("canvas", { class: "qk-canvas" });
  const grid = h("div", { class: "qk-grid" });
  // For the panel's drawings over the scatter (e.g. image-patch thumbnails); never takes the mouse.
  const overlay = h("div", { class: "qk-overlay" });
  const axes = { rows: h("div", { class: "qk-axis qk-axis-rows" }), cols: h("div", { class: "qk-axis qk-axis-cols" }) };
  const stage = h("div", { class: "qk-stage" }, canvas, overlay, grid, axes.rows, axes.cols);
  const legend = h("div", { class: "qk-legend" });
  const status = h("div", { class: "qk-status" });
  const panel = h("div", { class: "qk-panel" });

  const ctx = {
    model, meta, tokens: getTokens(model), columns: getColumns(model), n, per: 2 * n,
    nCells: meta.layers.length * meta.heads.length,
    // the shown attention's first cell among every cell of the grid (0 for one attention)
    cellOffset: meta.cell_offset,
    geom: gridGeometry(meta.layers.length, meta.heads.length, meta.cell_fill),
    bus, signal, on, fetchDetail, fail,
    dom: { root, stage, canvas, overlay, grid, axes, legend, status, panel },
    /** What is drawn: "matrix" | "single" (null before the first draw), the focused cell, its
     * whole head (single view), the drawn set (lod.js: ids, coords, norms in draw order) and the
     * drawn points' x, y (data units), `positionsKey` (same key: same points at the same places),
     * `localIndex` (single view: drawn index of each point of the head), theme, search and
     * highlight masks (Uint8Array [token] or null). */
    state: {
      mode: null, cell: -1, is3d: false, head: null, drawn: null, x: null, y: null, positionsKey: "",
      localIndex: null, size: 0, sizeKey: "", theme: "light", search: null, highlight: null,
    },
    focused: () => model.get("layer") != null && model.get("head") != null,
    canvasSize, getPoints, pointInfo, matrixLayout, xyOf, ensureSelectionDrawn, lassoMatrix,
    thumbnail: (token, px) => thumbs?.thumbnail(token, px) ?? ctx.single3d.thumbnail(token, px),
  };
  const { state, per, nCells, tokens } = ctx;
  const store = getPointStore(model, fetchDetail);
  // the matrix's level of detail: the sample, and what it lacks of the search and the selection
  const lod = {
    sample: null, rank: rankOf(meta.order), inSample: maskOf(meta.order.subarray(0, meta.sample_points), per),
    search: null, selection: null, zoom: null, version: 0, searchToken: 0, selectionToken: 0, zoomToken: 0,
  };

  ctx.toolbar = createToolbar(ctx);
  ctx.tooltip = createTooltip(ctx);
  ctx.atlas = createAtlas(ctx);
  ctx.probe = createProbe(ctx);
  const extraBar = [ctx.atlas.controls, ctx.probe.controls].filter(Boolean);
  root.append(ctx.toolbar.el, ...(extraBar.length ? [h("div", { class: "qk-toolbar qk-toolbar2" }, ...extraBar)] : []),
    h("div", { class: "qk-body" }, stage, h("div", { class: "qk-side" }, status, legend, ctx.atlas.el, panel)), ctx.tooltip.el);
  const side = root.querySelector(".qk-side");

  ctx.matrix = createMatrix(ctx);
  ctx.selection = createSelection(ctx);
  ctx.scatter = createScatter(ctx);
  ctx.lines = createLines(ctx);
  ctx.orbit = createOrbit(ctx);
  ctx.single3d = createSingle3D(ctx);
  ctx.thumbs = createThumbnailFeed(ctx);
  if (!nCells || !n) {
    status.textContent = "nothing to show: the embedding has no points";
    root.dataset.qkReady = "1";
    root.dataset.qkMode = "empty";
    onReady();
    return;
  }

  // ---- sizes and theme ------------------------------------------------------------------------
  function sizeFor() {
    const avail = (el.clientWidth || 900) - PANEL_PX;
    return Math.max(MIN_PX, Math.min(model.get("height") ?? 640, avail));
  }
  /** Room for the matrix: beside the side panel and under the axes, as tall as `height`. */
  function matrixRoom() {
    const w = Math.max(MIN_PX, (el.clientWidth || 900) - WIDE_PANEL_PX - AXIS_PX.left);
    const hgt = Math.max(MIN_PX / 2, (model.get("height") ?? 640) - AXIS_PX.top);
    return [w, hgt];
  }
  /** Rows are layers or heads, whichever gives bigger cells in the room there is; true if changed. */
  function chooseOrientation() {
    const [w, hgt] = matrixRoom();
    const t = chooseTranspose(meta.layers.length, meta.heads.length, w, hgt);
    if (t === ctx.geom.transpose) return false;
    ctx.geom = gridGeometry(meta.layers.length, meta.heads.length, meta.cell_fill, t);
    root.dataset.qkTransposed = String(t);
    return true;
  }
  // The single view is square; the matrix is the biggest grid of square cells that fits beside
  // the panel, in the orientation that makes the cells biggest.
  function canvasSize() {
    if (state.mode !== "matrix") return [state.size, state.size];
    return fitCanvas(ctx.geom, ...matrixRoom());
  }
  function applySize(force = false) {
    state.size = sizeFor();
    const turned = chooseOrientation();
    // the side column (legend, atlas, panel) scrolls within the widget's height rather than growing it
    side.style.maxHeight = `${Math.max(model.get("height") ?? 640, canvasSize()[1])}px`;
    const [w, hgt] = canvasSize();
    const key = `${state.mode} ${w}x${hgt} ${ctx.geom.transpose}`;
    if (key === state.sizeKey && !force) return;
    state.sizeKey = key;
    for (const e of [canvas, stage]) { e.style.width = `${w}px`; e.style.height = `${hgt}px`; }
    ctx.scatter.set({ width: w, height: hgt, aspectRatio: w / hgt });
    if (state.is3d) ctx.single3d.resize(w);
    ctx.matrix.drawLabels();
    if (turned && state.mode === "matrix" && state.drawn) { matrixLayout(); ctx.scatter.draw().catch(fail); }
  }
  function applyTheme() {
    const t = model.get("theme");
    state.theme = t === "dark" || t === "light" ? t : notebookTheme();
    root.dataset.qkTheme = state.theme;
    ctx.scatter.set({ backgroundColor: BACKGROUND[state.theme] });
    if (ctx.scatter.encoded()) recolor();
  }
  const recolor = () => ctx.scatter.recolor()?.catch?.(fail);

  function applySearch() {
    const q = model.get("search_query") ?? "";
    state.search = matchTokens(tokens.display, q, model.get("search_regex"));
    const c = ctx.toolbar.showSearch(q, state.search);
    root.dataset.qkSearchCount = c == null ? "" : String(c);
  }

  // ---- what is drawn ---------------------------------------------------------------------------
  /** The drawn point `local` (index within the focused head): its token, kind, seq and position. */
  function pointInfo(local) {
    const t = local % n;
    return { point: local, token: t, kind: local < n ? "query" : "key", seq: tokens.seq[t], pos: tokens.pos[t],
      layer: model.get("layer"), head: model.get("head") };
  }

  /** The current drawing for the side panel and the 3-D view (docs/internals.md, ctx.getPoints). */
  function getPoints() {
    const d = meta.dim, coords = state.mode === "single" ? state.head?.coords ?? null : null;
    return { mode: state.mode, layer: model.get("layer"), head: model.get("head"), cell: state.cell, nTokens: n,
      dim: d, coords, coords3: d === 3 ? coords : null, tokens };
  }

  /** x, y (data units) of the focused head's point `local` (single view), or null if not drawn. */
  function xyOf(local) {
    const i = state.localIndex?.[local] ?? -1;
    return i < 0 ? null : [state.x[i], state.y[i]];
  }

  /** The matrix's drawn set: the sample of every head, then searched, then selected extras; the
   * cells of a zoomed-in view drawn whole instead. */
  function matrixDrawn() {
    lod.sampleDrawn ??= lod.sample ? cellsBlock(lod.sample, lod.sample.points, lod.sample.offset, per, meta.dim, meta.missing) : emptyDrawn();
    let blocks = [lod.sampleDrawn, ...[lod.search, lod.selection].filter(Boolean).map((e) => e.block)];
    if (lod.zoom) blocks = [...blocks.map((b) => withoutCells(b, lod.zoom.skip, per, meta.dim)), lod.zoom.block];
    return concatDrawn(blocks, meta.dim);
  }

  /** Zoomed in on a few cells of the 2-D matrix: draw them whole (their heads are fetched). */
  let settleTimer = 0;
  function settle() {
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => drawVisibleWhole().catch(fail), SETTLE_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(settleTimer));
  async function drawVisibleWhole() {
    if (state.mode !== "matrix" || meta.dim === 3 || meta.sample_points >= per) return;
    if (ctx.scatter.lassoing()) { settle(); return; } // never redraw under a lasso being drawn
    let cells = [];
    const { x: [x0, x1], y: [y0, y1] } = ctx.scatter.viewDomain();
    if (2 / (x1 - x0) >= WHOLE_ZOOM) {
      cells = cellsInRect(ctx.geom, x0, y0, x1, y1).map((c) => c + ctx.cellOffset).filter((c) => !meta.missing[c]);
      if (cells.length * per > Math.max(WHOLE_POINTS, nCells * meta.sample_points)) cells = [];
    }
    const key = cells.join(",");
    if (key === (lod.zoom?.key ?? "")) return;
    const token = ++lod.zoomToken;
    const heads = await Promise.all(cells.map((c) => store.head(c)));
    if (token !== lod.zoomToken || state.mode !== "matrix" || signal.aborted) return;
    lod.zoom = cells.length ? {
      key, skip: maskOf(cells, ctx.cellOffset + nCells),
      block: concatDrawn(cells.map((c, i) => headBlock(heads[i], meta.order, c, meta.dim)), meta.dim),
    } : null;
    root.dataset.qkWhole = key;
    redrawMatrix();
  }

  /** Matrix positions: x, y of 2-D layouts; 3-D layouts projected through the shared camera. */
  function matrixLayout() {
    state.drawn = matrixDrawn();
    ({ x: state.x, y: state.y } = ctx.matrix.positions(state.drawn, ctx.orbit.camera(), project3D));
    state.localIndex = null;
    state.positionsKey = `matrix:${++lod.version}`;
  }

  /** Redraw the matrix after its drawn set changed (extras arrived). */
  function redrawMatrix() {
    if (state.mode !== "matrix") return;
    matrixLayout();
    ctx.scatter.draw().catch(fail);
    showStatus();
  }

  function showStatus() {
    const m = meta.sample_points, drawn = state.drawn?.ids.length ?? 0;
    status.textContent = state.mode === "matrix"
      ? `${attnLabel()}${meta.layers.length} layers × ${meta.heads.length} heads · ${n} tokens · ${nCells * per} points` +
        `${m < per ? ` (${drawn} drawn: ${m} of ${per} per head, plus searched and selected)` : ""}` +
        ` — click a head${meta.dim === 3 ? " (drag to turn every head)" : " (wheel to zoom, drag to pan)"}`
      : `${attnLabel()}layer ${model.get("layer")}, head ${model.get("head")} · ${pointCount()}` +
        `${state.head && state.head.finite < per ? ` of which this page holds ${state.head.finite}` : ""}` +
        ` — ${state.is3d ? "drag to rotate, wheel to zoom, " : ""}click a point for attention lines`;
  }

  let viewToken = 0, firstView = true;
  async function applyView() {
    const wantSingle = ctx.focused();
    const cell = wantSingle ? cellOf(meta, model.get("layer"), model.get("head")) : -1;
    const mode = wantSingle && cell >= 0 && !meta.missing[cell] ? "single" : "matrix";
    if (mode === state.mode && cell === state.cell) return;
    const token = ++viewToken;
    mark("view:start");
    let head = null;
    if (mode === "single") {
      status.textContent = `loading layer ${model.get("layer")}, head ${model.get("head")}…`;
      // full resolution of the focused head (a page that embeds only a sample of it: the sample)
      head = fillFromSample(await store.head(cell), lod.sample, cell, meta.dim);
      if (token !== viewToken || signal.aborted) return; // another head was asked for meanwhile
    }
    state.mode = mode; state.cell = cell; state.highlight = null; state.head = head;
    ctx.lines.forget();
    state.is3d = mode === "single" && meta.dim === 3;
    ctx.toolbar.showMode(mode);
    root.dataset.qkMode = mode;
    root.dataset.qkLayer = mode === "single" ? String(model.get("layer")) : "";
    root.dataset.qkHead = mode === "single" ? String(model.get("head")) : "";
    root.dataset.qkLines = "";
    ctx.scatter.clearAnnotations();
    applySize(true);
    if (mode === "matrix") {
      refreshSearchExtras();
      lod.selection = null;
      lod.zoom = null;
      lod.zoomToken++;
      root.dataset.qkWhole = "";
      matrixLayout();
      mark("positions");
    } else {
      state.drawn = headBlock(head, meta.order, cell, meta.dim);
      ({ x: state.x, y: state.y } = singlePositions(state.drawn.coords, meta.single_scale, meta.dim));
      state.localIndex = new Int32Array(per).fill(-1);
      state.drawn.ids.forEach((g, i) => { state.localIndex[g - cell * per] = i; });
      state.positionsKey = `single:${cell}`;
    }
    if (!firstView) ctx.scatter.reset(); // the camera starts at rest: no extra frame before the first paint
    firstView = false;
    ctx.single3d.show();
    if (mode === "matrix") ensureSelectionDrawn();
    await ctx.scatter.draw();
    mark("view:end");
    showStatus();
    ctx.atlas.onView();
    ctx.probe.draw();
    bus.publish("view", { mode, layer: model.get("layer"), head: model.get("head") });
  }

  // ---- level of detail: what the matrix must draw beyond its sample ------------------------------
  /** Searched points the sample lacks, fetched for every cell (at most `forced_points` in all). */
  function refreshSearchExtras() {
    const token = ++lod.searchToken;
    const match = state.search;
    if (!match || meta.sample_points >= per || !lod.sample) {
      if (lod.search) { lod.search = null; redrawMatrix(); }
      return;
    }
    const limit = Math.max(1, Math.floor(meta.forced_points / Math.max(1, nCells)));
    const points = searchPoints(match, lod.inSample, meta.order, limit);
    if (!points.length) {
      if (lod.search) { lod.search = null; redrawMatrix(); }
      return;
    }
    store.local(points).then((block) => {
      if (token !== lod.searchToken || signal.aborted) return;
      lod.search = { points, block: cellsBlock(block, points, ctx.cellOffset, per, meta.dim, meta.missing), covered: maskOf(points, per, lod.inSample.slice()) };
      lod.selection = null; // recomputed against the new coverage
      ensureSelectionDrawn();
      redrawMatrix();
    }).catch(fail);
  }

  /**
   * On the matrix, draw the selected points the sample (and the search) lack. Returns false when
   * nothing is missing (the caller marks the selection now), else a promise of the redraw.
   */
  function ensureSelectionDrawn() {
    if (state.mode !== "matrix" || meta.sample_points >= per) return false;
    const covered = lod.search?.covered ?? lod.inSample;
    const limit = meta.forced_points;
    // only the shown attention's cells are on this matrix
    const lo = ctx.cellOffset * per, hi = lo + nCells * per;
    const shown = ctx.selection.global().filter((g) => g >= lo && g < hi);
    const ids = selectionExtras(shown, covered, lod.rank, per, meta.missing, limit);
    const have = lod.selection?.ids;
    if (have && have.length === ids.length && have.every((v, i) => v === ids[i])) return false;
    if (!ids.length) {
      if (!lod.selection) return false;
      lod.selection = null;
      redrawMatrix();
      return Promise.resolve(true);
    }
    const token = ++lod.selectionToken;
    return store.at(ids).then((pts) => {
      if (token !== lod.selectionToken || signal.aborted) return true;
      lod.selection = { ids, block: idsBlock(ids, pts, meta.dim) };
      redrawMatrix();
      return true;
    });
  }

  /**
   * A lasso on the matrix selects from every point of the cells it crosses: their heads are
   * fetched whole, placed as on the matrix (through the shared camera in 3-D) and tested against
   * the polygon (data units, flat [x0, y0, x1, y1, ...]).
   */
  let lassoToken = 0;
  async function lassoMatrix(polygon) {
    const token = ++lassoToken;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < polygon.length; i += 2) {
      x0 = Math.min(x0, polygon[i]); x1 = Math.max(x1, polygon[i]);
      y0 = Math.min(y0, polygon[i + 1]); y1 = Math.max(y1, polygon[i + 1]);
    }
    const cells = cellsInRect(ctx.geom, x0, y0, x1, y1).map((c) => c + ctx.cellOffset).filter((c) => !meta.missing[c]);
    const out = [];
    root.dataset.qkLasso = "busy";
    try {
      for (const [i, cell] of cells.entries()) {
        if (cells.length > 1) status.textContent = `selecting from every point of ${cells.length} heads… ${i + 1}`;
        const head = await store.head(cell);
        if (token !== lassoToken || signal.aborted || state.mode !== "matrix") return;
        const ids = Uint32Array.from({ length: per }, (_, p) => cell * per + p);
        const { x, y } = ctx.matrix.positions({ ids, coords: head.coords }, ctx.orbit.camera(), project3D);
        const xy = new Float32Array(2 * per);
        for (let p = 0; p < per; p++) { xy[2 * p] = x[p]; xy[2 * p + 1] = y[p]; }
        for (const p of pointsInPolygon(xy, polygon)) out.push(cell * per + p);
      }
      ctx.selection.send(out);
    } finally {
      if (token === lassoToken) { delete root.dataset.qkLasso; showStatus(); }
    }
  }

  function attnLabel() {
    return meta.attn ? `${ATTN_LABELS[meta.attn] ?? meta.attn} · ` : "";
  }
  function pointCount() {
    if (!meta.attn) return `${per} points (${n} queries, ${n} keys)`;
    let q = 0, k = 0;
    for (let t = 0; t < n; t++) { q += tokens.stream[t] === meta.query_stream ? 1 : 0; k += tokens.stream[t] === meta.key_stream ? 1 : 0; }
    return `${q + k} points (${q} queries, ${k} keys)`;
  }

  // Two trait changes (layer, head) arrive as two events: coalesce into one redraw.
  let viewQueued = false;
  function queueView() {
    if (viewQueued) return;
    viewQueued = true;
    queueMicrotask(() => {
      viewQueued = false;
      if (lod.sample) applyView().catch(fail);
    });
  }

  // ---- the matrix: a click on a cell opens its head; the wheel zooms (2-D), then opens ---------
  // Capture phase on the stage: in the matrix a click picks a cell and must not reach the
  // scatterplot (which would select the nearest point instead). A press that moved is a pan.
  let pressAt = null;
  on(stage, "pointerdown", (e) => { pressAt = [e.clientX, e.clientY]; }, { capture: true });
  on(stage, "click", (e) => {
    if (state.mode !== "matrix") return;
    e.stopPropagation();
    const moved = pressAt ? Math.hypot(e.clientX - pressAt[0], e.clientY - pressAt[1]) : 0;
    pressAt = null;
    // a lasso's mouse-up is no click on a cell
    if (ctx.scatter.lassoing() || ctx.scatter.justLassoed() || moved > CLICK_PX) return;
    if (ctx.orbit.takeClick()) return; // the end of an orbit drag
    const hit = ctx.matrix.cellFromEvent(e);
    if (hit) ctx.toolbar.focus(meta.layers[hit.layer], meta.heads[hit.head]);
  }, { capture: true });
  on(stage, "wheel", (e) => {
    if (state.mode !== "matrix" || e.deltaY >= 0) return;
    const hit = ctx.matrix.cellFromEvent(e);
    if (!hit) return;
    // 2-D: the wheel zooms the matrix until the cell under the pointer is big, then opens it
    const [w, hgt] = canvasSize();
    if (meta.dim !== 3 && ctx.matrix.cellScreenPx() < OPEN_SHARE * Math.min(w, hgt)) return;
    e.preventDefault();
    e.stopPropagation();
    ctx.toolbar.focus(meta.layers[hit.layer], meta.heads[hit.head]);
  }, { capture: true, passive: false });

  // ---- model listeners ---------------------------------------------------------------------------
  const redrawSearch = () => {
    applySearch();
    if (state.mode === "matrix") refreshSearchExtras();
    if (state.mode) ctx.scatter.draw().catch(fail);
  };
  const redrawLines = () => { ctx.toolbar.showLines(); ctx.lines.draw(); };
  listen("change:layer", queueView);
  listen("change:head", queueView);
  listen("change:color", recolor);
  listen("change:color_mod", recolor);
  listen("change:size_by_norm", recolor);
  listen("change:search_query", redrawSearch);
  listen("change:search_regex", redrawSearch);
  listen("change:_selection", () => ctx.selection.apply());
  listen("change:lines_k", redrawLines);
  listen("change:lines_threshold", redrawLines);
  listen("change:theme", applyTheme);
  listen("change:height", () => applySize(true));
  listen("change:_probe", () => ctx.probe.update());
  listen("change:_hover", () => ctx.probe.drawHover());

  // ---- panel bus ---------------------------------------------------------------------------------
  bus.subscribe("highlight:tokens", (payload) => {
    const toks = payload?.tokens;
    state.highlight = toks ? (() => { const m = new Uint8Array(n); for (const t of toks) if (t < n) m[t] = 1; return m; })() : null;
    if (state.mode) ctx.scatter.draw().catch(fail);
  });
  // 3-D single view: its picks and orbit come over the bus (the scatter below it is hidden)
  bus.subscribe("point:click", (p) => {
    if (!state.is3d) return;
    if (!p) { ctx.lines.clear(); ctx.selection.send([]); return; }
    ctx.selection.sendLocal([p.point]);
    ctx.lines.show(p.point).catch(fail);
  });
  bus.subscribe("point:hover", (p) => {
    if (!state.is3d) return;
    if (p) ctx.tooltip.showPoint(p.point); else ctx.tooltip.hide();
  });
  bus.subscribe("camera:change", (msg) => { if (msg?.camera) ctx.orbit.turn(msg.camera); });
  bus.subscribe("camera", (msg) => {
    ctx.thumbs.publish();
    if (msg?.mode === "matrix") settle();
  });

  function fail(err) {
    console.error("[qkviz]", err);
    root.append(h("div", { class: "qk-error" }, `qkviz: ${err?.message ?? err}`));
  }

  // ---- start ---------------------------------------------------------------------------------------
  // Image captures: patch thumbnails over the focused head's points, from one atlas (fetched on
  // the first "view:points").
  const thumbs = meta.has_images ? mountThumbnails(overlay, { bus, fetchDetail }) : null;
  if (thumbs) signal.addEventListener("abort", thumbs);
  // For tests and bench scripts (not an API): where the drawn points are on screen.
  root.qkScreenPositions = ctx.scatter.screenPositions;
  applySize();
  applyTheme();
  ctx.toolbar.showLines();
  applySearch();
  status.textContent = `loading ${Math.min(meta.n_points, nCells * meta.sample_points)} of ${meta.n_points} points…`;
  const themeWatch = new MutationObserver(() => model.get("theme") === "auto" && applyTheme());
  if (document.body) themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
  signal.addEventListener("abort", () => themeWatch.disconnect());
  const resize = new ResizeObserver(() => applySize());
  resize.observe(el);
  signal.addEventListener("abort", () => resize.disconnect());

  (async () => {
    mark("load:start");
    lod.sample = await store.loadSample();
    mark("load:end");
    if (signal.aborted) return;
    ctx.scatter.create();
    recolor();
    await applyView();
    root.dataset.qkSelected = String(ctx.selection.global().length);
    root.dataset.qkReady = "1";
    mark("ready");
    onReady();
    try {
      const cleanup = mountPanel(panel, { model, bus, fetchDetail, signal, overlay, getPoints, screenPositions: ctx.scatter.screenPositions });
      if (typeof cleanup === "function") signal.addEventListener("abort", cleanup);
    } catch (err) {
      console.error("[qkviz] side panel failed", err);
    }
  })().catch((err) => {
    fail(err);
    if (root.dataset.qkReady !== "1") onFail(err);
  });
}
