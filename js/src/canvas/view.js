// One rendered view of a QKViz model: toolbar, the canvas (matrix of all heads or one head),
// grid labels, tooltip, legend and the side panel. All state that Python can see lives in traits;
// everything here is derived from them (so a static page with a fake model behaves the same).
//
// This module wires the parts, one job each (toolbar, scatter, matrix, lines, tooltip, selection,
// orbit, single3d, thumbnails), and owns the view's lifetime: `signal` (every listener, observer
// and part registers on it) and the bus to the side panel (bus.js). The parts share one context,
// `ctx`: what the model says (meta, tokens, columns), the DOM, `ctx.state` (what is drawn: mode,
// cell, positions) and each other (ctx.scatter, ctx.lines, ...), looked up when called.
import { createBus } from "../bus.js";
import { cellOf, getColumns, getMeta, getTokens, loadGrid } from "../model.js";

/** How the status line and the toolbar name the attentions of an encoder-decoder model. */
export const ATTN_LABELS = { encoder: "encoder self-attention", decoder: "decoder self-attention", cross: "cross-attention (decoder → encoder)" };
import { mountPanel } from "../panel/index.js";
import { h } from "../ui/dom.js";
import { BACKGROUND } from "../ui/palette.js";
import { createAtlas } from "./atlas.js";
import { createLines } from "./lines.js";
import { createMatrix, gridGeometry, matrixCanvasSize, singlePositions } from "./matrix.js";
import { createOrbit } from "./orbit.js";
import { createProbe } from "./probe.js";
import { mark, createScatter } from "./scatter.js";
import { project3D } from "./scene3d.js";
import { matchTokens } from "./search.js";
import { createSelection } from "./selection.js";
import { createSingle3D } from "./single3d.js";
import { createThumbnailFeed, mountThumbnails } from "./thumbnails.js";
import { createToolbar } from "./toolbar.js";
import { createTooltip } from "./tooltip.js";

const PANEL_PX = 240; // room the single view leaves beside itself for the side panel
const WIDE_PANEL_PX = 360; // the same for a wide matrix (the side panel keeps its 340 px)
const MIN_PX = 220;

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
  const stage = h("div", { class: "qk-stage" }, canvas, overlay, grid);
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
    dom: { root, stage, canvas, overlay, grid, legend, status, panel },
    /** What is drawn: "matrix" | "single" (null before the first draw), the focused cell, the
     * drawn points' x, y (data units), the grid ({coords, norms}), theme, search and highlight
     * masks (Uint8Array [token] or null). */
    state: {
      mode: null, cell: -1, is3d: false, x: null, y: null, grid: null,
      size: 0, sizeKey: "", theme: "light", search: null, highlight: null,
    },
    focused: () => model.get("layer") != null && model.get("head") != null,
    canvasSize, getPoints, pointInfo, matrixLayout,
    thumbnail: (token, px) => thumbs?.thumbnail(token, px) ?? ctx.single3d.thumbnail(token, px),
  };
  const { state, per, nCells, geom, tokens } = ctx;

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
  // The single view is square; the matrix has the grid's aspect ratio (no empty bands) and, when it
  // is wider than tall (6 layers x 12 heads), uses the width beside the panel rather than the square.
  function canvasSize() {
    if (state.mode !== "matrix") return [state.size, state.size];
    if (geom.aspect <= 1) return matrixCanvasSize(geom, state.size);
    const avail = Math.max(MIN_PX, (el.clientWidth || 900) - WIDE_PANEL_PX);
    const w = Math.max(state.size, Math.min(avail, (model.get("height") ?? 640) * geom.aspect));
    return [Math.round(w), Math.round(w / geom.aspect)];
  }
  function applySize(force = false) {
    state.size = sizeFor();
    // the side column (legend, atlas, panel) scrolls within the widget's height rather than growing it
    side.style.maxHeight = `${Math.max(model.get("height") ?? 640, canvasSize()[1])}px`;
    const [w, hgt] = canvasSize();
    const key = `${state.mode} ${w}x${hgt}`;
    if (key === state.sizeKey && !force) return;
    state.sizeKey = key;
    for (const e of [canvas, stage]) { e.style.width = `${w}px`; e.style.height = `${hgt}px`; }
    ctx.scatter.set({ width: w, height: hgt, aspectRatio: w / hgt });
    if (state.is3d) ctx.single3d.resize(w);
    ctx.matrix.drawLabels();
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
    const d = meta.dim, c = state.mode === "single" ? state.cell : -1;
    const coords = c >= 0 ? state.grid.coords.subarray(c * per * d, (c + 1) * per * d) : null;
    return { mode: state.mode, layer: model.get("layer"), head: model.get("head"), cell: state.cell, nTokens: n,
      dim: d, coords, coords3: d === 3 ? coords : null, tokens };
  }

  /** Matrix positions: x, y of 2-D layouts; 3-D layouts projected through the shared camera. */
  function matrixLayout() {
    ({ x: state.x, y: state.y } = ctx.matrix.positions(state.grid.coords, ctx.orbit.camera(), project3D));
    if (meta.dim === 3) ctx.scatter.forgetMatrixIndex(); // positions moved with the camera
  }

  async function applyView() {
    const wantSingle = ctx.focused();
    const cell = wantSingle ? cellOf(meta, model.get("layer"), model.get("head")) : -1;
    const mode = wantSingle && cell >= 0 ? "single" : "matrix";
    if (mode === state.mode && cell === state.cell) return;
    state.mode = mode; state.cell = cell; state.highlight = null;
    ctx.lines.forget();
    state.is3d = mode === "single" && meta.dim === 3;
    if (mode === "matrix") {
      matrixLayout();
      mark("positions");
    } else {
      ({ x: state.x, y: state.y } = singlePositions(state.grid.coords, cell, per, meta.single_scale, meta.dim));
    }
    ctx.toolbar.showMode(mode);
    root.dataset.qkMode = mode;
    root.dataset.qkLayer = mode === "single" ? String(model.get("layer")) : "";
    root.dataset.qkHead = mode === "single" ? String(model.get("head")) : "";
    root.dataset.qkLines = "";
    ctx.scatter.clearAnnotations();
    applySize(true);
    ctx.scatter.reset();
    ctx.single3d.show();
    await ctx.scatter.draw();
    status.textContent = mode === "matrix"
      ? `${attnLabel()}${meta.layers.length} layers × ${meta.heads.length} heads · ${n} tokens · ${nCells * per} points — click a head${meta.dim === 3 ? " (drag to turn every head)" : ""}`
      : `${attnLabel()}layer ${model.get("layer")}, head ${model.get("head")} · ${pointCount()} — ${state.is3d ? "drag to rotate, wheel to zoom, " : ""}click a point for attention lines`;
    ctx.atlas.onView();
    ctx.probe.draw();
    bus.publish("view", { mode, layer: model.get("layer"), head: model.get("head") });
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
      if (state.grid) applyView().catch(fail);
    });
  }

  // ---- the matrix: a click or a wheel-up on a cell opens that head ------------------------------
  // Capture phase on the stage: in the matrix a click picks a cell and must not reach the
  // scatterplot (which would select the nearest point instead).
  on(stage, "click", (e) => {
    if (state.mode !== "matrix") return;
    e.stopPropagation();
    if (ctx.scatter.lassoing()) return;
    if (ctx.orbit.takeClick()) return; // the end of an orbit drag
    const hit = ctx.matrix.cellFromEvent(e);
    if (hit) ctx.toolbar.focus(meta.layers[hit.row], meta.heads[hit.col]);
  }, { capture: true });
  on(stage, "wheel", (e) => {
    if (state.mode !== "matrix" || e.deltaY >= 0) return;
    const hit = ctx.matrix.cellFromEvent(e);
    if (hit) { e.preventDefault(); ctx.toolbar.focus(meta.layers[hit.row], meta.heads[hit.col]); }
  }, { capture: true, passive: false });

  // ---- model listeners ---------------------------------------------------------------------------
  const redrawSearch = () => { applySearch(); if (state.mode) ctx.scatter.draw().catch(fail); };
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
    ctx.selection.send([p.point]);
    ctx.lines.show(p.point).catch(fail);
  });
  bus.subscribe("point:hover", (p) => {
    if (!state.is3d) return;
    if (p) ctx.tooltip.showPoint(p.point); else ctx.tooltip.hide();
  });
  bus.subscribe("camera:change", (msg) => { if (msg?.camera) ctx.orbit.turn(msg.camera); });
  bus.subscribe("camera", () => ctx.thumbs.publish());

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
  status.textContent = `loading ${meta.n_points} points…`;
  const themeWatch = new MutationObserver(() => model.get("theme") === "auto" && applyTheme());
  if (document.body) themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
  signal.addEventListener("abort", () => themeWatch.disconnect());
  const resize = new ResizeObserver(() => applySize());
  resize.observe(el);
  signal.addEventListener("abort", () => resize.disconnect());

  (async () => {
    mark("load:start");
    state.grid = await loadGrid(model, fetchDetail);
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
