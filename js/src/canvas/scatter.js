// The scatter: one regl-scatterplot per view (drawing through the page's one WebGL renderer), the
// colour of every drawn point as a palette index (z) and its norm (w), point sizes, and draws
// coalesced so that the latest state is always the one drawn. Also the scatter's own events
// (click, lasso, hover, pan/zoom) turned into selection, lines, tooltip and bus events.
//
// What is drawn is `ctx.state.drawn` (canvas/lod.js: global index, coordinates and norm of every
// drawn point, in draw order) at `ctx.state.x`, `ctx.state.y`. Everything this module hands out
// is indexed as the rest of the front end expects: global indices for the selection, indices
// within the focused head (`local`) for clicks, hovers, colours, sizes and screen positions of the
// single view, whatever order the points are drawn in.
import createScatterplot from "regl-scatterplot";
import { BACKGROUND, LASSO_RGB } from "../ui/palette.js";
import { brightOnTop, encodeField, fillColorIndex, withDimmed } from "./colors.js";
import { drawnIndicesOf } from "./lod.js";
import { renderLegend } from "./legend.js";
import { getRenderer } from "./renderer.js";

// Timing marks for bench/widget.py (performance.getEntriesByType("mark"), names "qk:*").
export const mark = (name) => globalThis.performance?.mark?.(`qk:${name}`);

const DIMMED = 0.35; // opacity factor of unselected points while some are selected

/**
 * An empty spatial index in kdbush's format (v1 header: magic 0xdb, version 1 and Float64Array
 * coordinates, node size 16, no items). The matrix never asks the scatter which drawn point is
 * where (a click finds its cell by geometry, a lasso tests every point of the cells it crosses:
 * view.js), so its draws skip building a kd-tree over hundreds of thousands of points.
 */
export function emptySpatialIndex() {
  const data = new ArrayBuffer(8);
  new Uint8Array(data, 0, 2).set([0xdb, (1 << 4) | 8]);
  new Uint16Array(data, 2, 1)[0] = 16;
  return data;
}
const LASSO_CLICK_MS = 400; // a click this soon after a lasso ends belongs to the lasso
// Above this many drawn points the scatter keeps its own draw order while some are dimmed (the
// order costs an array and a set of every point per draw); the dimmed colours alone still keep a
// stack of faded points fainter than a match.
const ORDER_LIMIT = 1 << 20;

/**
 * A linear scale for regl-scatterplot's `xScale`/`yScale`: it sets the range and, on every camera
 * change, the domain to the visible part of the data box, which is how the matrix's labels and
 * pointer maths follow the camera.
 */
export function linearScale(domain = [-1, 1], range = [0, 1]) {
  let d = [...domain], r = [...range];
  const scale = (v) => r[0] + ((v - d[0]) / (d[1] - d[0])) * (r[1] - r[0]);
  scale.domain = (v) => (v === undefined ? [...d] : ((d = [...v]), scale));
  scale.range = (v) => (v === undefined ? [...r] : ((r = [...v]), scale));
  scale.invert = (px) => d[0] + ((px - r[0]) / (r[1] - r[0])) * (d[1] - d[0]);
  scale.copy = () => linearScale(d, r);
  return scale;
}

export function createScatter(ctx) {
  const { model, tokens, columns, n, per, dom, bus, signal } = ctx;
  let sc = null; // the regl-scatterplot instance, once the grid is loaded
  let enc = null, palette = null, z = null, drawn = 0, zIds = null;
  let ordered = false; // a draw order (dimmed points first) is set
  const scales = { x: linearScale(), y: linearScale() };
  // kd-trees of the single view's positions, reused while the same points sit at the same places
  const spatial = { single: new Map() };
  const lasso = { active: false, end: -1e9, points: [] };

  /** Make the scatterplot (after the grid arrived) and route its events. */
  function create() {
    sc = createScatterplot({
      renderer: getRenderer(), canvas: dom.canvas, width: ctx.state.size, height: ctx.state.size, aspectRatio: 1,
      backgroundColor: BACKGROUND[ctx.state.theme], pointSize: 3, pointSizeSelected: 1, pointOutlineWidth: 1,
      lassoColor: [...LASSO_RGB.map((v) => v / 255), 1], lassoMinDelay: 8, lassoMinDist: 2, lassoInitiator: false,
      deselectOnDblClick: false, deselectOnEscape: true, xScale: scales.x, yScale: scales.y,
      // Posting 1M+ point arrays to a worker (structured clone) costs more than indexing here.
      spatialIndexUseWorker: false,
    });
    const scatter = sc;
    signal.addEventListener("abort", () => scatter.destroy());
    sc.subscribe("lassoStart", () => { lasso.active = true; });
    // Camera moves (pan/zoom) -> the matrix's labels follow, and "camera" on the bus, at most
    // once per frame.
    let cameraQueued = false;
    sc.subscribe("view", () => {
      if (cameraQueued) return;
      cameraQueued = true;
      requestAnimationFrame(() => {
        cameraQueued = false;
        ctx.matrix.follow();
        bus.publish("camera", { mode: ctx.state.mode });
      });
    });
    sc.subscribe("select", ({ points }) => {
      const wasLasso = lasso.active;
      lasso.active = false;
      // A lasso closed where it started ends with a mouse-up next to its mouse-down, which
      // regl-scatterplot then also reads as a click on the nearest point: keep the lasso's result.
      if (!wasLasso && performance.now() - lasso.end < LASSO_CLICK_MS) {
        sc.select(lasso.points, { preventEvent: true });
        return;
      }
      if (wasLasso) { lasso.end = performance.now(); lasso.points = [...points]; }
      // On the matrix a lasso selects from every point of the cells it crosses, not only from the
      // drawn sample: "lassoEnd" (next) does that.
      if (wasLasso && ctx.state.mode === "matrix") return;
      const ids = ctx.state.drawn.ids;
      ctx.selection.send(Uint32Array.from(points, (i) => ids[i]));
      if (!wasLasso && points.length === 1 && ctx.state.mode === "single") {
        const local = localOf(points[0]);
        bus.publish("point:click", ctx.pointInfo(local));
        ctx.lines.show(local).catch(ctx.fail);
      }
    });
    sc.subscribe("lassoEnd", ({ coordinates }) => {
      if (ctx.state.mode !== "matrix" || !coordinates?.length) return;
      ctx.lassoMatrix(coordinates.flat()).catch(ctx.fail);
    });
    sc.subscribe("deselect", () => {
      lasso.active = false;
      ctx.lines.clear();
      ctx.selection.send([]);
    });
    sc.subscribe("pointOver", (i) => {
      if (ctx.state.mode !== "single") return;
      const local = localOf(i);
      ctx.tooltip.showPoint(local);
      bus.publish("point:hover", ctx.pointInfo(local));
    });
    sc.subscribe("pointOut", () => {
      if (ctx.state.mode !== "single") return;
      ctx.tooltip.hide();
      bus.publish("point:hover", null);
    });
  }

  /** Index within the focused head of drawn point `i`. */
  const localOf = (i) => ctx.state.drawn.ids[i] - ctx.state.cell * per;

  /** Palette index of every drawn point (the colour field; search or panel highlight dims). */
  function computeZ() {
    const { state } = ctx, d = state.drawn;
    const out = new Float32Array(d.ids.length);
    const hl = state.mode === "single" && state.highlight ? state.highlight : state.search;
    fillColorIndex(out, enc, d.ids, n, enc.byValue && d.vnorms ? d.vnorms : d.norms, palette.half, palette.missing, hl);
    return out;
  }
  /** Norm of every drawn point in 0..1 (size by norm). */
  function computeW() {
    const norms = ctx.state.drawn.norms;
    return Float32Array.from(norms, (v) => v / 255);
  }
  /** Point diameter (CSS px), or 16 sizes from small to large norms with size by norm. */
  function pointSize() {
    const base = ctx.state.mode === "matrix" ? Math.max(1.5, Math.min(4, ctx.canvasSize()[0] / ctx.geom.nCols / 45)) : 5;
    if (!model.get("size_by_norm")) return base;
    return Array.from({ length: 16 }, (_, i) => base * (0.4 + (1.8 * i) / 15));
  }

  /** Encode the colour field (and its legend) for the current theme; redraw when drawn. */
  function recolor() {
    const field = model.get("color"), dark = ctx.state.theme === "dark";
    enc = encodeField(field, tokens, columns, model.get("color_mod"), dark);
    palette = withDimmed(enc.palette, dark);
    renderLegend(dom.legend, enc.legend);
    ctx.toolbar.showColor();
    if (ctx.state.drawn && ctx.state.mode) return draw();
  }

  // regl-scatterplot refuses a draw while one is running (and the newer state would be lost):
  // coalesce requests so that the last state is always drawn once the current draw finishes.
  let drawing = null, drawAgain = false;
  function draw() {
    if (drawing) {
      drawAgain = true;
      return drawing;
    }
    // regl-scatterplot ignores a press while it takes new points: `data-qk-drawing` says when (tests
    // click once it is gone)
    dom.root.dataset.qkDrawing = "1";
    drawing = (async () => {
      try {
        do {
          drawAgain = false;
          await drawOnce();
        } while (drawAgain);
      } finally {
        drawing = null;
        delete dom.root.dataset.qkDrawing;
      }
    })();
    return drawing;
  }

  async function drawOnce() {
    const { mode, drawn: d } = ctx.state;
    mark("draw:start");
    const zz = computeZ(), w = computeW();
    mark("draw:zw");
    // the kd-tree of positions depends on which points sit where: the same drawn set at the same
    // positions reuses it (a recolour, a search, a selection)
    const key = ctx.state.positionsKey;
    const index = mode === "matrix" ? emptySpatialIndex() : spatial.single.get(key) ?? null;
    sc.set({
      // regl-scatterplot replaces a colour's alpha by the opacity encoding, so dimming (search,
      // highlight) goes through a per-palette-index opacity, read from the same index z.
      colorBy: "valueA", pointColor: palette.colors, opacityBy: "valueA", opacity: palette.opacity,
      sizeBy: model.get("size_by_norm") ? "valueB" : null,
      pointSize: pointSize(), cameraIsFixed: mode === "matrix" && ctx.meta.dim === 3,
      opacityInactiveScale: DIMMED, opacityInactiveMax: 1,
    });
    await sc.draw({ x: ctx.state.x, y: ctx.state.y, z: zz, w }, {
      zDataType: "categorical", wDataType: "continuous", select: ctx.selection.drawn(),
      ...(index ? { spatialIndex: index } : {}),
    });
    // dimmed points underneath, so that a faded point never covers a match (after the draw: a draw
    // of another length forgets the order)
    const order = zz.length <= ORDER_LIMIT ? brightOnTop(zz, palette.half) : null;
    if (order || ordered) {
      ordered = order != null;
      await sc.set({ pointOrder: order });
    }
    mark("draw:end");
    if (!index) {
      spatial.single.set(key, sc.get("spatialIndex"));
      if (spatial.single.size > 4) spatial.single.delete(spatial.single.keys().next().value);
    }
    z = zz; zIds = d.ids;
    ctx.single3d.paint();
    ctx.thumbs.publish();
    drawn += 1;
    dom.root.dataset.qkDraws = String(drawn);
    dom.root.dataset.qkDrawn = String(d.ids.length);
  }

  /** Values per drawn point (`stride` each, in draw order) in the focused head's point order. */
  function toLocal(values, stride, fill = 0) {
    const ids = zIds, lo = ctx.state.cell * per;
    const out = new values.constructor(per * stride).fill(fill);
    for (let i = 0; i < ids.length; i++) {
      const p = ids[i] - lo;
      for (let j = 0; j < stride; j++) out[p * stride + j] = values[i * stride + j];
    }
    return out;
  }

  /** RGBA [point*4] of the focused head's points (3-D view), selection-dimmed; local order. */
  function pointColors() {
    const out = new Float32Array(z.length * 4), sel = ctx.selection.drawn(), chosen = new Uint8Array(z.length);
    for (const i of sel) if (i < z.length) chosen[i] = 1;
    for (let i = 0; i < z.length; i++) {
      const c = palette.colors[z[i]];
      const a = palette.opacity[z[i]] * (sel.length && !chosen[i] ? DIMMED : 1);
      out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = a;
    }
    return toLocal(out, 4);
  }

  /** Diameters (CSS px) of the focused head's points with size by norm, as the scatter maps them
   * (regl-scatterplot: pointSize[floor(w * (len - 1))]), local order; null when all are the same. */
  function pointSizes() {
    const ps = pointSize();
    return Array.isArray(ps) ? toLocal(Float32Array.from(computeW(), (w) => ps[Math.floor(w * (ps.length - 1))]), 1) : null;
  }

  /** 1 = thumbnail drawn faint: search/highlight-dimmed, or outside a multi-point selection; local order. */
  function thumbDim() {
    const sel = ctx.selection.drawn(), dim = new Uint8Array(z.length);
    for (let i = 0; i < z.length; i++) dim[i] = z[i] >= palette.half ? 1 : 0;
    // A lasso (several points) fades the others; a single click (lines) keeps every patch readable.
    if (sel.length > 1) { const on = new Set(sel); for (let i = 0; i < z.length; i++) if (!on.has(i)) dim[i] = 1; }
    return toLocal(dim, 1, 1);
  }

  // Annotations (regl-scatterplot draws one list) come from several parts: attention lines, the
  // probe's points and lines, the linked hover ring. Each owns a named layer; all are drawn together.
  const layers = new Map();
  /** Replace one annotation layer (null or [] removes it) and draw them all. */
  function annotate(name, list) {
    if (list && list.length) layers.set(name, list); else layers.delete(name);
    if (!sc) return;
    const all = [...layers.values()].flat();
    if (all.length) sc.drawAnnotations(all); else sc.clearAnnotations?.();
  }

  /**
   * CSS-pixel positions (relative to the canvas) of the points: Float32Array [point * 2] of the
   * focused head (local order) in the single view; on the matrix, of every point of the shown
   * attention's cells (global index minus its first cell's), NaN for points not drawn (for tests:
   * it is as big as the grid).
   */
  function screenPositions() {
    const ids = ctx.state.drawn?.ids;
    const total = ctx.state.mode === "single" ? per : ctx.nCells * per;
    const out = new Float32Array(total * 2).fill(NaN);
    if (!sc || !ids?.length || !zIds) return out;
    const lo = ctx.state.mode === "single" ? ctx.state.cell * per : (ctx.cellOffset ?? 0) * per;
    const canvas = dom.canvas;
    const ratio = canvas.clientWidth / Math.max(1, canvas.width / (globalThis.devicePixelRatio || 1));
    for (let i = 0; i < ids.length; i++) {
      const p = sc.getScreenPosition(i), at = ids[i] - lo;
      if (p && at >= 0 && at < total) { out[2 * at] = p[0] * ratio; out[2 * at + 1] = p[1] * ratio; }
    }
    return out;
  }

  /** The visible part of the data box: x [left, right], y [bottom, top] (data units). */
  function viewDomain() {
    return { x: scales.x.domain(), y: scales.y.domain() };
  }

  return {
    create, draw, recolor, pointColors, pointSizes, thumbDim, screenPositions, viewDomain,
    ready: () => sc != null,
    drawn: () => z != null,
    encoded: () => enc != null,
    /** True from the start of a lasso until its selection arrives. */
    lassoing: () => lasso.active,
    /** True just after a lasso ended (its mouse-up's click belongs to it). */
    justLassoed: () => performance.now() - lasso.end < LASSO_CLICK_MS,
    /** The drawn indices of global points (a selection shown on what is drawn). */
    drawnIndicesOf: (global) => drawnIndicesOf(ctx.state.drawn?.ids ?? new Uint32Array(0), global),
    /** Set scatterplot properties; unchanged values are skipped (each set costs a frame). */
    set: (opts) => {
      if (!sc) return;
      const changed = Object.fromEntries(Object.entries(opts).filter(([k, v]) => sc.get(k) !== v));
      if (Object.keys(changed).length) sc.set(changed);
    },
    select: (points) => sc?.select(points, { preventEvent: true }),
    deselect: () => sc?.deselect(),
    reset: () => sc?.reset?.(),
    /** Forget every annotation layer (lines, probe, hover ring) and clear the drawing. */
    clearAnnotations: () => { layers.clear(); sc?.clearAnnotations?.(); },
    annotate,
  };
}
