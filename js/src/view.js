// One rendered view of a QKViz model: toolbar, the canvas (matrix of all heads or one head),
// grid labels, tooltip, legend and the side panel. All state that Python can see lives in traits;
// everything here is derived from them (so a static page with a fake model behaves the same).
import createScatterplot from "regl-scatterplot";
import { createBus } from "./bus.js";
import { encode } from "./codec.js";
import { encodeField, fillColorIndex, renderLegend, withDimmed } from "./colors.js";
import { getColumns, getMeta, getTokens, loadGrid } from "./data.js";
import { cellAt, gridGeometry, matrixCanvasSize, matrixPositions, matrixPositions3D, singlePositions } from "./layout.js";
import { lineAnnotations, topPartners } from "./lines.js";
import { getRenderer } from "./renderer.js";
import { matchTokens } from "./search.js";
import { mount3D, mountPanel, mountThumbnails, orbitCamera, project3D } from "./views/index.js";
import { LINE_RGB } from "./views/scene3d.js";

const FIELDS = [
  ["kind", "query / key"], ["position", "position (normalised)"], ["position_mod", "position mod n"],
  ["norm", "vector norm"], ["sequence", "sequence"], ["category", "token category"], ["length", "sequence length"],
];
const BG = { light: [1, 1, 1, 1], dark: [0.082, 0.094, 0.114, 1] };
// Attention lines (2-D and 3-D) share one orange that reads on the light and the dark background
// and stays apart from the query greens and key pinks.
const THUMB_SIZE = 14; // CSS px of a patch thumbnail in the single view

function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

// Timing marks for bench/widget.py (performance.getEntriesByType("mark"), names "qk:*").
const mark = (name) => globalThis.performance?.mark?.(`qk:${name}`);

function notebookTheme() {
  const b = document.body;
  if (b?.dataset?.jpThemeLight === "false" || b?.classList?.contains("vscode-dark")) return "dark";
  if (b?.dataset?.jpThemeLight === "true" || b?.classList?.contains("vscode-light")) return "light";
  return globalThis.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function renderView({ model, el, fetchDetail, signal }) {
  const on = (target, ev, fn, opts) => target.addEventListener(ev, fn, { signal, ...opts });
  const listen = (name, fn) => {
    model.on(name, fn);
    signal.addEventListener("abort", () => model.off(name, fn));
  };
  const meta = getMeta(model);
  const tokens = getTokens(model);
  const columns = getColumns(model);
  const n = meta.n_tokens, per = 2 * n;
  const nCells = meta.layers.length * meta.heads.length;
  const geom = gridGeometry(meta.layers.length, meta.heads.length, meta.cell_fill);
  const bus = createBus();
  signal.addEventListener("abort", () => bus.clear());

  // ---- DOM ------------------------------------------------------------------------------------
  const back = h("button", { class: "qk-back", title: "back to all heads" }, "◀ all heads");
  const layerSel = h("select", { class: "qk-layer", title: "layer" },
    ...meta.layers.map((l) => h("option", { value: String(l) }, `layer ${l}`)));
  const headSel = h("select", { class: "qk-head", title: "head" },
    ...meta.heads.map((x) => h("option", { value: String(x) }, `head ${x}`)));
  const arrows = ["←", "→", "↑", "↓"].map((a) => h("button", { class: "qk-step", title: "step head/layer (arrow keys)", dataset: { dir: a } }, a));
  const colorSel = h("select", { class: "qk-color", title: "colour by" },
    ...FIELDS.map(([v, label]) => h("option", { value: v }, label)),
    ...(columns.mean_r ? [h("option", { value: "patch_color" }, "patch colour")] : []),
    ...Object.keys(columns).map((c) => h("option", { value: c }, c)));
  const modInput = h("input", { class: "qk-mod", type: "number", min: "1", title: "n of position mod n" });
  const sizeBox = h("input", { class: "qk-size", type: "checkbox" });
  const searchBox = h("input", { class: "qk-search", type: "search", placeholder: "search tokens" });
  const regexBox = h("input", { class: "qk-regex", type: "checkbox" });
  const count = h("span", { class: "qk-count" });
  const lassoBtn = h("button", { class: "qk-lasso", title: "lasso select (or shift-drag)", "aria-pressed": "false" }, "lasso");
  const clearBtn = h("button", { class: "qk-clear", title: "clear selection" }, "clear");
  const thumbBox = h("input", { class: "qk-thumbs", type: "checkbox", checked: true });
  const kInput = h("input", { class: "qk-k", type: "number", min: "1", title: "lines per point (top-k)" });
  const thrInput = h("input", { class: "qk-threshold", type: "number", min: "0", max: "1", step: "0.01", title: "minimum attention weight of a line" });
  const nav = h("span", { class: "qk-nav" }, back, layerSel, headSel, ...arrows);
  const toolbar = h("div", { class: "qk-toolbar" },
    nav, h("span", { class: "qk-sep" }),
    h("label", {}, "colour", colorSel), modInput, h("label", {}, sizeBox, "size by norm"),
    ...(meta.has_images ? [h("label", { title: "patch thumbnails over the points (off: coloured dots)" }, thumbBox, "thumbnails")] : []),
    h("span", { class: "qk-sep" }),
    searchBox, h("label", {}, regexBox, "regex"), count, h("span", { class: "qk-sep" }),
    lassoBtn, clearBtn, h("span", { class: "qk-group" }, h("label", {}, "lines k", kInput), h("label", {}, "≥", thrInput)));
  const canvas = h("canvas", { class: "qk-canvas" });
  const grid = h("div", { class: "qk-grid" });
  // For the panel's drawings over the scatter (e.g. image-patch thumbnails); never takes the mouse.
  const overlay = h("div", { class: "qk-overlay" });
  const stage = h("div", { class: "qk-stage" }, canvas, overlay, grid);
  const legend = h("div", { class: "qk-legend" });
  const status = h("div", { class: "qk-status" });
  const panel = h("div", { class: "qk-panel" });
  const side = h("div", { class: "qk-side" }, status, legend, panel);
  const tooltip = h("div", { class: "qk-tooltip", hidden: true });
  const root = h("div", { class: "qk-root", tabindex: "0" }, toolbar, h("div", { class: "qk-body" }, stage, side), tooltip);
  el.replaceChildren(root);
  signal.addEventListener("abort", () => root.remove());

  const state = {
    mode: null, cell: -1, size: 0, scatter: null, grid: null, x: null, y: null, drawn: 0,
    enc: null, palette: null, search: null, highlight: null, lines: null, attention: new Map(),
    lassoing: false, lassoEnd: -1e9, lassoPoints: [], spatial: { matrix: null, single: new Map() }, theme: "light",
    // 3-D layouts: one camera shared by the single view (orbit) and the matrix (every head from it)
    camera: orbitCamera(), scene: null, sceneBox: null, is3d: false, z: null, suppressClick: false,
  };
  const focused = () => model.get("layer") != null && model.get("head") != null;
  const cellOf = (layer, head) => meta.layers.indexOf(layer) * meta.heads.length + meta.heads.indexOf(head);

  if (!nCells || !n) {
    status.textContent = "nothing to show: the embedding has no points";
    root.dataset.qkReady = "1";
    root.dataset.qkMode = "empty";
    return;
  }

  // ---- sizes and theme ------------------------------------------------------------------------
  function sizeFor() {
    const avail = (el.clientWidth || 900) - 240;
    return Math.max(220, Math.min(model.get("height") ?? 640, avail));
  }
  // The single view is square; the matrix has the grid's aspect ratio (no empty bands) and, when it
  // is wider than tall (6 layers x 12 heads), uses the width beside the panel rather than the square.
  function canvasSize() {
    if (state.mode !== "matrix") return [state.size, state.size];
    if (geom.aspect <= 1) return matrixCanvasSize(geom, state.size);
    const avail = Math.max(220, (el.clientWidth || 900) - 360); // the side panel keeps its 340 px
    const w = Math.max(state.size, Math.min(avail, (model.get("height") ?? 640) * geom.aspect));
    return [Math.round(w), Math.round(w / geom.aspect)];
  }
  function applySize(force = false) {
    state.size = sizeFor();
    const [w, hgt] = canvasSize();
    const key = `${state.mode} ${w}x${hgt}`;
    if (key === state.sizeKey && !force) return;
    state.sizeKey = key;
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
    stage.style.width = `${w}px`;
    stage.style.height = `${hgt}px`;
    state.scatter?.set({ width: w, height: hgt, aspectRatio: w / hgt });
    if (state.is3d) state.scene?.resize(w);
    drawGridLabels();
  }
  function applyTheme() {
    const t = model.get("theme");
    state.theme = t === "dark" || t === "light" ? t : notebookTheme();
    root.dataset.qkTheme = state.theme;
    state.scatter?.set({ backgroundColor: BG[state.theme] });
    if (state.enc) recolor();
  }

  // ---- grid overlay -----------------------------------------------------------------------------
  function drawGridLabels() {
    grid.replaceChildren();
    if (state.mode !== "matrix") return;
    const [W, H] = canvasSize();
    const px = (x) => ((x + 1) / 2) * W, py = (y) => ((1 - y) / 2) * H;
    const small = W / geom.nCols < 68;
    for (let r = 0; r < geom.nRows; r++) {
      for (let c = 0; c < geom.nCols; c++) {
        const x0 = -1 + c * geom.cw, y0 = 1 - r * geom.ch;
        const cellEl = h("div", { class: "qk-cell", dataset: { layer: meta.layers[r], head: meta.heads[c] } });
        Object.assign(cellEl.style, { left: `${px(x0)}px`, top: `${py(y0)}px`, width: `${px(x0 + geom.cw) - px(x0)}px`, height: `${py(y0 - geom.ch) - py(y0)}px` });
        cellEl.append(h("span", { class: "qk-cell-label" }, small ? `${meta.layers[r]}.${meta.heads[c]}` : `L${meta.layers[r]} H${meta.heads[c]}`));
        const rec = meta.recall[r * geom.nCols + c];
        if (meta.has_faithfulness && rec >= 0) cellEl.append(h("span", { class: "qk-cell-score", title: "recall@k" }, rec.toFixed(2)));
        grid.append(cellEl);
      }
    }
  }

  // ---- drawing ---------------------------------------------------------------------------------
  const drawnCells = () => (state.mode === "matrix" ? [...Array(nCells).keys()] : [state.cell]);

  function computeZ() {
    const cells = drawnCells();
    const z = new Float32Array(cells.length * per);
    const hl = state.mode === "single" && state.highlight ? state.highlight : state.search;
    fillColorIndex(z, state.enc, cells, n, state.grid.norms, null, state.palette.half, state.palette.missing, hl);
    return z;
  }
  function computeW() {
    const cells = drawnCells();
    const w = new Float32Array(cells.length * per);
    let o = 0;
    for (const c of cells) for (let p = 0; p < per; p++) w[o++] = state.grid.norms[c * per + p] / 255;
    return w;
  }
  function pointSize() {
    const base = state.mode === "matrix" ? Math.max(1.5, Math.min(4, canvasSize()[0] / geom.nCols / 45)) : 5;
    if (!model.get("size_by_norm")) return base;
    return Array.from({ length: 16 }, (_, i) => base * (0.4 + (1.8 * i) / 15));
  }
  function localSelection() {
    const sel = selectionFromModel();
    if (state.mode === "matrix") return Array.from(sel);
    const lo = state.cell * per, out = [];
    for (const g of sel) if (g >= lo && g < lo + per) out.push(g - lo);
    return out;
  }

  // regl-scatterplot refuses a draw while one is running (and the newer state would be lost):
  // coalesce requests so that the last state is always drawn once the current draw finishes.
  let drawing = null, drawAgain = false;
  function draw() {
    if (drawing) {
      drawAgain = true;
      return drawing;
    }
    drawing = (async () => {
      try {
        do {
          drawAgain = false;
          await drawOnce();
        } while (drawAgain);
      } finally {
        drawing = null;
      }
    })();
    return drawing;
  }

  async function drawOnce() {
    const sc = state.scatter, mode = state.mode, cell = state.cell;
    mark("draw:start");
    const z = computeZ(), w = computeW();
    mark("draw:zw");
    const spatial = mode === "matrix" ? state.spatial.matrix : state.spatial.single.get(cell);
    sc.set({
      // regl-scatterplot replaces a colour's alpha by the opacity encoding, so dimming (search,
      // highlight) goes through a per-palette-index opacity, read from the same index z.
      colorBy: "valueA", pointColor: state.palette.colors, opacityBy: "valueA", opacity: state.palette.opacity,
      sizeBy: model.get("size_by_norm") ? "valueB" : null,
      pointSize: pointSize(), cameraIsFixed: state.mode === "matrix", opacityInactiveScale: 0.35, opacityInactiveMax: 1,
    });
    await sc.draw({ x: state.x, y: state.y, z, w }, {
      zDataType: "categorical", wDataType: "continuous", select: localSelection(), ...(spatial ? { spatialIndex: spatial } : {}),
    });
    mark("draw:end");
    if (!spatial) {
      const idx = sc.get("spatialIndex");
      if (mode === "matrix") state.spatial.matrix = idx;
      else state.spatial.single.set(cell, idx);
    }
    state.z = z;
    paint3D();
    publishPoints();
    state.drawn += 1;
    root.dataset.qkDraws = String(state.drawn);
  }

  /** The 3-D view's colours and selection, from the drawn palette index (as the scatter shows them). */
  function paint3D() {
    if (!state.is3d || !state.scene || !state.z) return;
    // size by norm: the scatter's own mapping (regl-scatterplot: pointSize[floor(w * (len - 1))])
    const ps = pointSize(), sizes = Array.isArray(ps) ? Float32Array.from(computeW(), (w) => ps[Math.floor(w * (ps.length - 1))]) : null;
    state.scene.setColors(pointColors(state.z), { selected: localSelection(), sizes });
  }

  /** RGBA [point*4] of the drawn points from their palette index (3-D view), selection-dimmed. */
  function pointColors(z) {
    const out = new Float32Array(z.length * 4), sel = localSelection(), chosen = new Uint8Array(z.length);
    for (const i of sel) if (i < z.length) chosen[i] = 1;
    for (let i = 0; i < z.length; i++) {
      const c = state.palette.colors[z[i]];
      const a = state.palette.opacity[z[i]] * (sel.length && !chosen[i] ? 0.35 : 1);
      out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = a;
    }
    return out;
  }

  /** 1 = thumbnail drawn faint: search/highlight-dimmed, or outside a multi-point selection. */
  function thumbDim() {
    const z = state.z, sel = localSelection(), dim = new Uint8Array(z.length);
    for (let i = 0; i < z.length; i++) dim[i] = z[i] >= state.palette.half ? 1 : 0;
    // A lasso (several points) fades the others; a single click (lines) keeps every patch readable.
    if (sel.length > 1) { const on = new Set(sel); for (let i = 0; i < z.length; i++) if (!on.has(i)) dim[i] = 1; }
    return dim;
  }

  /** Screen positions of the focused head's points for the thumbnail overlay ("view:points"). */
  function publishPoints() {
    if (!meta.has_images) return;
    if (state.mode !== "single" || state.is3d || !state.z || !thumbBox.checked) {
      bus.publish("view:points", null);
      // the 3-D view draws its own thumbnails, in depth order
      if (state.is3d) state.scene?.setThumbnails(state.z && thumbBox.checked ? { size: THUMB_SIZE, dim: thumbDim() } : null);
      return;
    }
    const dim = thumbDim();
    const lines = state.lineSegs ?? [];
    bus.publish("view:points", { xy: screenPositions(), size: THUMB_SIZE, dim, lines, lineColor: `rgb(${LINE_RGB.map((v) => Math.round(v * 255)).join(",")})` });
  }

  function recolor() {
    const field = model.get("color");
    state.enc = encodeField(field, tokens, columns, model.get("color_mod"), state.theme === "dark");
    state.palette = withDimmed(state.enc.palette, state.theme === "dark");
    renderLegend(legend, state.enc.legend);
    colorSel.value = field;
    modInput.value = String(model.get("color_mod"));
    modInput.hidden = field !== "position_mod";
    sizeBox.checked = Boolean(model.get("size_by_norm"));
    if (state.grid && state.mode) return draw();
  }

  function applySearch() {
    const q = model.get("search_query") ?? "";
    state.search = matchTokens(tokens.display, q, model.get("search_regex"));
    if (searchBox.value !== q) searchBox.value = q;
    regexBox.checked = Boolean(model.get("search_regex"));
    let c = 0;
    if (state.search) for (const v of state.search) c += v;
    count.textContent = state.search ? `${c} match${c === 1 ? "" : "es"}` : "";
    root.dataset.qkSearchCount = state.search ? String(c) : "";
  }

  async function applyView() {
    const wantSingle = focused();
    const cell = wantSingle ? cellOf(model.get("layer"), model.get("head")) : -1;
    const mode = wantSingle && cell >= 0 ? "single" : "matrix";
    if (mode === state.mode && cell === state.cell) return;
    state.mode = mode; state.cell = cell; state.lines = null; state.highlight = null;
    state.is3d = mode === "single" && meta.dim === 3;
    if (mode === "matrix") {
      matrixLayout();
      mark("positions");
    } else {
      ({ x: state.x, y: state.y } = singlePositions(state.grid.coords, cell, per, meta.single_scale, meta.dim));
      layerSel.value = String(model.get("layer"));
      headSel.value = String(model.get("head"));
    }
    nav.dataset.mode = mode;
    back.disabled = mode === "matrix";
    for (const a of arrows) a.disabled = mode === "matrix";
    root.dataset.qkMode = mode;
    root.dataset.qkLayer = mode === "single" ? String(model.get("layer")) : "";
    root.dataset.qkHead = mode === "single" ? String(model.get("head")) : "";
    root.dataset.qkLines = "";
    state.scatter.clearAnnotations?.();
    applySize(true);
    state.scatter.reset?.();
    show3D();
    await draw();
    status.textContent = mode === "matrix"
      ? `${meta.layers.length} layers × ${meta.heads.length} heads · ${n} tokens · ${meta.n_points} points — click a head${meta.dim === 3 ? " (drag to turn every head)" : ""}`
      : `layer ${model.get("layer")}, head ${model.get("head")} · ${per} points (${n} queries, ${n} keys) — ${state.is3d ? "drag to rotate, wheel to zoom, " : ""}click a point for attention lines`;
    bus.publish("view", { mode, layer: model.get("layer"), head: model.get("head") });
  }

  /** Matrix positions: x, y of 2-D layouts; 3-D layouts projected through the shared camera. */
  function matrixLayout() {
    if (meta.dim === 3) {
      ({ x: state.x, y: state.y } = matrixPositions3D(geom, state.grid.coords, nCells, state.camera, project3D));
      state.spatial.matrix = null; // positions moved with the camera: rebuild the hit index
    } else {
      ({ x: state.x, y: state.y } = matrixPositions(geom, state.grid.coords, nCells, meta.dim));
    }
  }

  /** The orbitable 3-D view replaces the scatter in the single view of a 3-D layout (one extra
   * WebGL context per widget view while a 3-D head is open, reused for every head; leaving the
   * single view loses it, so many widgets on the matrix stay under the browser's context cap). */
  function show3D() {
    if (!state.is3d) {
      if (state.scene) {
        signal.removeEventListener("abort", state.scene);
        state.scene();
        state.sceneBox.remove();
        state.scene = null; state.sceneBox = null;
      }
      canvas.style.visibility = "";
      return;
    }
    if (!state.scene) {
      state.sceneBox = h("div", { class: "qk-3d" });
      stage.insertBefore(state.sceneBox, overlay);
      state.scene = mount3D(state.sceneBox, { model, bus, getPoints }, {
        size: canvasSize()[0], camera: state.camera, external: true, background: () => BG[state.theme],
        lasso: () => lassoBtn.getAttribute("aria-pressed") === "true", onSelect: (points) => sendSelection(points),
        atlas: () => (state.atlas ??= fetchDetail({ kind: "atlas" })),
      });
      signal.addEventListener("abort", state.scene);
    } else {
      state.scene.resize(canvasSize()[0]);
      state.scene.setCamera(state.camera);
      state.scene.reload();
    }
    state.sceneBox.hidden = false;
    canvas.style.visibility = "hidden"; // still drawn (selection and search keep one code path)
  }

  function getPoints() {
    const d = meta.dim, c = state.mode === "single" ? state.cell : -1;
    const coords = c >= 0 ? state.grid.coords.subarray(c * per * d, (c + 1) * per * d) : null;
    return { mode: state.mode, layer: model.get("layer"), head: model.get("head"), cell: state.cell, nTokens: n,
      dim: d, coords, coords3: d === 3 ? coords : null, tokens };
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

  // ---- selection --------------------------------------------------------------------------------
  function selectionFromModel() {
    const wire = model.get("_selection");
    if (!wire?.view) return new Uint32Array(0);
    const v = wire.view;
    return new Uint32Array(v.buffer.slice(v.byteOffset, v.byteOffset + (v.byteLength - (v.byteLength % 4))));
  }
  function sendSelection(local) {
    const offset = state.mode === "single" ? state.cell * per : 0;
    const globalIdx = Uint32Array.from(local, (i) => i + offset).sort();
    model.set("_selection", encode(globalIdx, "uint32"));
    model.save_changes();
    root.dataset.qkSelected = String(globalIdx.length);
    bus.publish("selection", { points: globalIdx });
    publishPoints();
  }
  function applySelectionFromModel() {
    if (!state.scatter || !state.mode) return;
    const local = localSelection();
    root.dataset.qkSelected = String(selectionFromModel().length);
    state.scatter.select(local, { preventEvent: true });
    paint3D();
    publishPoints();
  }

  // ---- attention lines ---------------------------------------------------------------------------
  async function attentionFor(layer, head, seq) {
    const key = `${layer}/${head}/${seq}`;
    if (!state.attention.has(key)) {
      state.attention.set(key, fetchDetail({ kind: "attention", layer, head, seq }).then((r) => r.weights));
    }
    return state.attention.get(key);
  }
  function pointInfo(local) {
    const t = local % n;
    return { point: local, token: t, kind: local < n ? "query" : "key", seq: tokens.seq[t], pos: tokens.pos[t],
      layer: model.get("layer"), head: model.get("head") };
  }
  async function showLines(local) {
    if (state.mode !== "single" || !meta.has_attention) return;
    const info = pointInfo(local);
    const layer = info.layer, head = info.head;
    const weights = await attentionFor(layer, head, info.seq);
    if (state.mode !== "single" || model.get("layer") !== layer || model.get("head") !== head) return;
    state.lines = { local, info, weights };
    drawLines();
  }
  function drawLines() {
    const sc = state.scatter;
    if (!state.lines || state.mode !== "single") {
      sc.clearAnnotations?.();
      state.scene?.setLines(null);
      root.dataset.qkLines = "";
      if (state.lineSegs) { state.lineSegs = null; publishPoints(); }
      return;
    }
    const { local, info, weights } = state.lines;
    const first = info.token - info.pos; // tokens of one seq are consecutive rows of the table
    const partners = topPartners(weights, info.kind, info.pos, model.get("lines_k"), model.get("lines_threshold"));
    const segs = partners.map(({ pos, weight }) => {
      const other = info.kind === "query" ? n + first + pos : first + pos;
      return { other, weight, x0: state.x[local], y0: state.y[local], x1: state.x[other], y1: state.y[other] };
    });
    if (state.is3d) state.scene?.setLines(segs.map((sg) => ({ a: local, b: sg.other, weight: sg.weight })));
    else sc.drawAnnotations(lineAnnotations(segs, LINE_RGB));
    if (meta.has_images) {
      const wmax = Math.max(1e-9, ...segs.map((sg) => sg.weight));
      state.lineSegs = segs.map((sg) => ({ a: local, b: sg.other, weight: sg.weight / wmax }));
      publishPoints();
    }
    const off = state.cell * per;
    root.dataset.qkLines = JSON.stringify({ from: local + off, kind: info.kind,
      to: segs.map((s) => s.other + off), weights: segs.map((s) => s.weight) });
  }

  /** CSS-pixel positions (relative to the canvas) of the drawn points: Float32Array [point * 2]. */
  function screenPositions() {
    const sc = state.scatter, m = state.x?.length ?? 0;
    const out = new Float32Array(m * 2);
    if (!sc || !m) return out;
    const ratio = canvas.clientWidth / Math.max(1, canvas.width / (globalThis.devicePixelRatio || 1));
    for (let i = 0; i < m; i++) {
      const p = sc.getScreenPosition(i);
      if (p) { out[2 * i] = p[0] * ratio; out[2 * i + 1] = p[1] * ratio; }
    }
    return out;
  }

  // ---- tooltip ------------------------------------------------------------------------------------
  let mouse = [0, 0];
  on(stage, "mousemove", (e) => {
    const r = root.getBoundingClientRect();
    mouse = [e.clientX - r.left, e.clientY - r.top];
    if (state.mode === "matrix") hoverCell(e);
    else if (!tooltip.hidden) placeTooltip();
  });
  on(stage, "mouseleave", () => { tooltip.hidden = true; hoverCell(null); });
  function placeTooltip() {
    tooltip.style.left = `${mouse[0] + 14}px`;
    tooltip.style.top = `${mouse[1] + 14}px`;
  }
  function showTooltip(local) {
    const info = pointInfo(local);
    const t = info.token, first = t - info.pos;
    tooltip.replaceChildren();
    const b = h("b", { class: info.kind === "query" ? "qk-q" : "qk-k" }, tokens.display[t] ?? "");
    tooltip.append(b, ` (${info.kind}, pos ${info.pos} of ${tokens.seqLen[t] - 1}, ${meta.has_images ? "image" : "seq"} ${info.seq})`);
    if (meta.has_images) {
      // images: the patch itself instead of a "sentence" of patch names
      const thumb = thumbs?.thumbnail(t, 64) ?? (state.is3d ? state.scene?.thumbnail(t, 64) : null);
      if (thumb) { thumb.className = "qk-tip-thumb"; tooltip.append(thumb); }
      tooltip.hidden = false;
      placeTooltip();
      return;
    }
    const sentence = h("div", { class: "qk-sentence" });
    const len = tokens.seqLen[t];
    const lo = Math.max(0, info.pos - 30), hi = Math.min(len, info.pos + 31);
    if (lo > 0) sentence.append("… ");
    for (let p = lo; p < hi; p++) {
      const word = tokens.display[first + p] ?? "";
      sentence.append(p === info.pos ? h("mark", {}, word) : word, " ");
    }
    if (hi < len) sentence.append("…");
    tooltip.append(sentence);
    tooltip.hidden = false;
    placeTooltip();
  }
  function hoverCell(e) {
    for (const c of grid.querySelectorAll("[data-hover=true]")) c.dataset.hover = "false";
    if (!e) return;
    const hit = cellFromEvent(e);
    if (!hit) { tooltip.hidden = true; return; }
    const cellEl = grid.children[hit.row * geom.nCols + hit.col];
    if (cellEl) cellEl.dataset.hover = "true";
    const rec = meta.recall[hit.row * geom.nCols + hit.col];
    tooltip.replaceChildren(`Layer ${meta.layers[hit.row]} · Head ${meta.heads[hit.col]}`,
      ...(meta.has_faithfulness && rec >= 0 ? [` · recall@k ${rec.toFixed(2)}`] : []));
    tooltip.hidden = false;
    placeTooltip();
  }
  function cellFromEvent(e) {
    // Canvas content box (not the border box) -> the [-1, 1] data box; the matrix camera is fixed.
    const r = canvas.getBoundingClientRect();
    const fx = (e.clientX - r.left - canvas.clientLeft) / canvas.clientWidth;
    const fy = (e.clientY - r.top - canvas.clientTop) / canvas.clientHeight;
    return cellAt(geom, fx * 2 - 1, 1 - fy * 2);
  }

  // ---- interaction --------------------------------------------------------------------------------
  function focus(layer, head) {
    model.set("layer", layer);
    model.set("head", head);
    model.save_changes();
  }
  function step(dir) {
    if (!focused()) return;
    let li = meta.layers.indexOf(model.get("layer")), hi = meta.heads.indexOf(model.get("head"));
    if (dir === "←") hi -= 1; else if (dir === "→") hi += 1; else if (dir === "↑") li -= 1; else if (dir === "↓") li += 1;
    if (li < 0 || hi < 0 || li >= meta.layers.length || hi >= meta.heads.length) return;
    focus(meta.layers[li], meta.heads[hi]);
  }
  // Capture phase on the stage: in the matrix a click picks a cell and must not reach the
  // scatterplot (which would select the nearest point instead).
  on(stage, "click", (e) => {
    if (state.mode !== "matrix") return;
    e.stopPropagation();
    if (state.lassoing) return;
    if (state.suppressClick) { state.suppressClick = false; return; } // the end of an orbit drag
    const hit = cellFromEvent(e);
    if (hit) focus(meta.layers[hit.row], meta.heads[hit.col]);
  }, { capture: true });
  on(stage, "wheel", (e) => {
    if (state.mode !== "matrix" || e.deltaY >= 0) return;
    const hit = cellFromEvent(e);
    if (hit) { e.preventDefault(); focus(meta.layers[hit.row], meta.heads[hit.col]); }
  }, { capture: true, passive: false });
  // 3-D matrix: dragging turns the shared camera, so every head turns together (a click still
  // picks a cell). The single 3-D view orbits the same camera ("camera:change" below).
  let orbit = null, orbitQueued = false;
  on(stage, "pointerdown", (e) => {
    state.suppressClick = false; // a drag released outside the stage never got its click
    // shift-drag or lasso mode: the scatter's lasso, not an orbit
    const lassoing = e.shiftKey || lassoBtn.getAttribute("aria-pressed") === "true";
    if (state.mode === "matrix" && meta.dim === 3 && !lassoing) orbit = { x: e.clientX, y: e.clientY, moved: 0 };
  });
  on(globalThis, "pointermove", (e) => {
    if (!orbit || state.mode !== "matrix") return;
    const dx = e.clientX - orbit.x, dy = e.clientY - orbit.y;
    orbit.moved += Math.abs(dx) + Math.abs(dy); orbit.x = e.clientX; orbit.y = e.clientY;
    if (orbit.moved < 4) return;
    turnCamera({ theta: state.camera.theta - dx * 0.01, phi: Math.max(-1.5, Math.min(1.5, state.camera.phi + dy * 0.01)) });
  });
  on(globalThis, "pointerup", () => {
    if (orbit && orbit.moved >= 4) state.suppressClick = true;
    orbit = null;
  });
  /** Set the shared camera; the matrix re-projects every head once per frame at most. */
  function turnCamera(change) {
    state.camera = { ...state.camera, ...change };
    root.dataset.qkCamera = JSON.stringify({ theta: state.camera.theta, phi: state.camera.phi, distance: state.camera.distance });
    if (state.mode !== "matrix" || orbitQueued) return;
    orbitQueued = true;
    requestAnimationFrame(() => {
      orbitQueued = false;
      if (state.mode !== "matrix" || signal.aborted) return;
      matrixLayout();
      draw().then(() => bus.publish("camera", { mode: state.mode })).catch(fail);
    });
  }

  on(root, "keydown", (e) => {
    const map = { ArrowLeft: "←", ArrowRight: "→", ArrowUp: "↑", ArrowDown: "↓" };
    if (map[e.key] && focused() && e.target === root) { e.preventDefault(); step(map[e.key]); }
  });
  for (const a of arrows) on(a, "click", () => step(a.dataset.dir));
  on(back, "click", () => { model.set("layer", null); model.set("head", null); model.save_changes(); });
  on(layerSel, "change", () => focus(Number(layerSel.value), focused() ? model.get("head") : meta.heads[0]));
  on(headSel, "change", () => focus(focused() ? model.get("layer") : meta.layers[0], Number(headSel.value)));
  on(colorSel, "change", () => { model.set("color", colorSel.value); model.save_changes(); });
  on(modInput, "change", () => { const v = Math.max(1, Number(modInput.value) | 0); model.set("color_mod", v); model.save_changes(); });
  on(thumbBox, "change", () => publishPoints());
  on(sizeBox, "change", () => { model.set("size_by_norm", sizeBox.checked); model.save_changes(); });
  let searchTimer = 0;
  on(searchBox, "input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { model.set("search_query", searchBox.value); model.save_changes(); }, 150);
  });
  on(regexBox, "change", () => { model.set("search_regex", regexBox.checked); model.save_changes(); });
  on(lassoBtn, "click", () => {
    const lasso = lassoBtn.getAttribute("aria-pressed") !== "true";
    lassoBtn.setAttribute("aria-pressed", String(lasso));
    state.scatter?.set({ mouseMode: lasso ? "lasso" : "panZoom" });
  });
  on(clearBtn, "click", () => { state.scatter?.deselect(); sendSelection([]); });
  on(kInput, "change", () => { model.set("lines_k", Math.max(1, Number(kInput.value) | 0)); model.save_changes(); });
  on(thrInput, "change", () => { model.set("lines_threshold", Math.min(1, Math.max(0, Number(thrInput.value) || 0))); model.save_changes(); });

  function syncLineInputs() {
    kInput.value = String(model.get("lines_k"));
    thrInput.value = String(model.get("lines_threshold"));
  }

  // ---- model listeners ---------------------------------------------------------------------------
  listen("change:layer", queueView);
  listen("change:head", queueView);
  listen("change:color", () => recolor()?.catch?.(fail));
  listen("change:color_mod", () => recolor()?.catch?.(fail));
  listen("change:size_by_norm", () => recolor()?.catch?.(fail));
  listen("change:search_query", () => { applySearch(); if (state.mode) draw().catch(fail); });
  listen("change:search_regex", () => { applySearch(); if (state.mode) draw().catch(fail); });
  listen("change:_selection", applySelectionFromModel);
  listen("change:lines_k", () => { syncLineInputs(); drawLines(); });
  listen("change:lines_threshold", () => { syncLineInputs(); drawLines(); });
  listen("change:theme", applyTheme);
  listen("change:height", applySize);

  // ---- panel bus ---------------------------------------------------------------------------------
  bus.subscribe("highlight:tokens", (payload) => {
    const toks = payload?.tokens;
    state.highlight = toks ? (() => { const m = new Uint8Array(n); for (const t of toks) if (t < n) m[t] = 1; return m; })() : null;
    if (state.mode) draw().catch(fail);
  });
  bus.subscribe("lines:weights", (payload) => {
    if (!payload || !focused()) return;
    state.attention.set(`${model.get("layer")}/${model.get("head")}/${payload.seq}`, Promise.resolve(payload.weights));
    if (state.lines?.info.seq === payload.seq) { state.lines.weights = payload.weights; drawLines(); }
  });

  // 3-D single view: its picks and orbit come over the bus (the scatter below it is hidden)
  bus.subscribe("point:click", (p) => {
    if (!state.is3d) return;
    if (!p) { state.lines = null; drawLines(); sendSelection([]); return; }
    sendSelection([p.point]);
    showLines(p.point).catch(fail);
  });
  bus.subscribe("point:hover", (p) => {
    if (!state.is3d) return;
    if (p) showTooltip(p.point); else tooltip.hidden = true;
  });
  bus.subscribe("camera:change", (msg) => { if (msg?.camera) turnCamera(msg.camera); });
  bus.subscribe("camera", () => publishPoints());

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
  root.qkScreenPositions = screenPositions;
  applySize();
  applyTheme();
  syncLineInputs();
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
    const scatter = createScatterplot({
      renderer: getRenderer(), canvas, width: state.size, height: state.size, aspectRatio: 1,
      backgroundColor: BG[state.theme], pointSize: 3, pointSizeSelected: 1, pointOutlineWidth: 1,
      lassoColor: [0.15, 0.39, 0.92, 1], lassoMinDelay: 8, lassoMinDist: 2, lassoInitiator: false,
      deselectOnDblClick: false, deselectOnEscape: true,
      // Posting 1M+ point arrays to a worker (structured clone) costs more than indexing here.
      spatialIndexUseWorker: false,
    });
    state.scatter = scatter;
    signal.addEventListener("abort", () => scatter.destroy());
    scatter.subscribe("lassoStart", () => { state.lassoing = true; });
    // Camera moves (pan/zoom) -> "camera" on the bus, at most once per frame.
    let cameraQueued = false;
    scatter.subscribe("view", () => {
      if (cameraQueued) return;
      cameraQueued = true;
      requestAnimationFrame(() => { cameraQueued = false; bus.publish("camera", { mode: state.mode }); });
    });
    scatter.subscribe("select", ({ points }) => {
      const wasLasso = state.lassoing;
      state.lassoing = false;
      // A lasso closed where it started ends with a mouse-up next to its mouse-down, which
      // regl-scatterplot then also reads as a click on the nearest point: keep the lasso's result.
      if (!wasLasso && performance.now() - state.lassoEnd < 400) {
        scatter.select(state.lassoPoints, { preventEvent: true });
        return;
      }
      if (wasLasso) { state.lassoEnd = performance.now(); state.lassoPoints = [...points]; }
      sendSelection(points);
      if (!wasLasso && points.length === 1 && state.mode === "single") {
        const info = pointInfo(points[0]);
        bus.publish("point:click", info);
        showLines(points[0]).catch(fail);
      }
    });
    scatter.subscribe("deselect", () => {
      state.lassoing = false;
      state.lines = null;
      drawLines();
      sendSelection([]);
    });
    scatter.subscribe("pointOver", (i) => {
      if (state.mode !== "single") return;
      showTooltip(i);
      bus.publish("point:hover", pointInfo(i));
    });
    scatter.subscribe("pointOut", () => {
      if (state.mode !== "single") return;
      tooltip.hidden = true;
      bus.publish("point:hover", null);
    });
    recolor();
    await applyView();
    root.dataset.qkSelected = String(selectionFromModel().length);
    root.dataset.qkReady = "1";
    mark("ready");
    try {
      const cleanup = mountPanel(panel, {
        model, bus, fetchDetail, signal,
        overlay,
        getPoints,
        screenPositions,
      });
      if (typeof cleanup === "function") signal.addEventListener("abort", cleanup);
    } catch (err) {
      console.error("[qkviz] side panel failed", err);
    }
  })().catch(fail);
}
