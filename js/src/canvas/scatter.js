// The scatter: one regl-scatterplot per view (drawing through the page's one WebGL renderer), the
// colour of every drawn point as a palette index (z) and its norm (w), point sizes, and draws
// coalesced so that the latest state is always the one drawn. Also the scatter's own events
// (click, lasso, hover, pan/zoom) turned into selection, lines, tooltip and bus events.
import createScatterplot from "regl-scatterplot";
import { BACKGROUND, LASSO_RGB } from "../ui/palette.js";
import { brightOnTop, encodeField, fillColorIndex, withDimmed } from "./colors.js";
import { renderLegend } from "./legend.js";
import { getRenderer } from "./renderer.js";

// Timing marks for bench/widget.py (performance.getEntriesByType("mark"), names "qk:*").
export const mark = (name) => globalThis.performance?.mark?.(`qk:${name}`);

const DIMMED = 0.35; // opacity factor of unselected points while some are selected
const LASSO_CLICK_MS = 400; // a click this soon after a lasso ends belongs to the lasso
// Above this many drawn points the scatter keeps its own draw order while some are dimmed (the
// order costs an array and a set of every point per draw); the dimmed colours alone still keep a
// stack of faded points fainter than a match.
const ORDER_LIMIT = 1 << 20;

export function createScatter(ctx) {
  const { model, tokens, columns, n, per, nCells, geom, dom, bus, signal } = ctx;
  let sc = null; // the regl-scatterplot instance, once the grid is loaded
  let enc = null, palette = null, z = null, drawn = 0;
  let ordered = false; // a draw order (dimmed points first) is set
  const spatial = { matrix: null, single: new Map() }; // kd-trees of drawn positions, reused
  const lasso = { active: false, end: -1e9, points: [] };

  /** Make the scatterplot (after the grid arrived) and route its events. */
  function create() {
    sc = createScatterplot({
      renderer: getRenderer(), canvas: dom.canvas, width: ctx.state.size, height: ctx.state.size, aspectRatio: 1,
      backgroundColor: BACKGROUND[ctx.state.theme], pointSize: 3, pointSizeSelected: 1, pointOutlineWidth: 1,
      lassoColor: [...LASSO_RGB.map((v) => v / 255), 1], lassoMinDelay: 8, lassoMinDist: 2, lassoInitiator: false,
      deselectOnDblClick: false, deselectOnEscape: true,
      // Posting 1M+ point arrays to a worker (structured clone) costs more than indexing here.
      spatialIndexUseWorker: false,
    });
    const scatter = sc;
    signal.addEventListener("abort", () => scatter.destroy());
    sc.subscribe("lassoStart", () => { lasso.active = true; });
    // Camera moves (pan/zoom) -> "camera" on the bus, at most once per frame.
    let cameraQueued = false;
    sc.subscribe("view", () => {
      if (cameraQueued) return;
      cameraQueued = true;
      requestAnimationFrame(() => { cameraQueued = false; bus.publish("camera", { mode: ctx.state.mode }); });
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
      ctx.selection.send(points);
      if (!wasLasso && points.length === 1 && ctx.state.mode === "single") {
        bus.publish("point:click", ctx.pointInfo(points[0]));
        ctx.lines.show(points[0]).catch(ctx.fail);
      }
    });
    sc.subscribe("deselect", () => {
      lasso.active = false;
      ctx.lines.clear();
      ctx.selection.send([]);
    });
    sc.subscribe("pointOver", (i) => {
      if (ctx.state.mode !== "single") return;
      ctx.tooltip.showPoint(i);
      bus.publish("point:hover", ctx.pointInfo(i));
    });
    sc.subscribe("pointOut", () => {
      if (ctx.state.mode !== "single") return;
      ctx.tooltip.hide();
      bus.publish("point:hover", null);
    });
  }

  const drawnCells = () => (ctx.state.mode === "matrix" ? Array.from({ length: nCells }, (_, c) => ctx.cellOffset + c) : [ctx.state.cell]);

  /** Palette index of every drawn point (the colour field; search or panel highlight dims). */
  function computeZ() {
    const cells = drawnCells();
    const out = new Float32Array(cells.length * per);
    const { state } = ctx;
    const hl = state.mode === "single" && state.highlight ? state.highlight : state.search;
    const norms = enc.byValue && state.grid.vnorms ? state.grid.vnorms : state.grid.norms;
    fillColorIndex(out, enc, cells, n, norms, null, palette.half, palette.missing, hl);
    return out;
  }
  /** Norm of every drawn point in 0..1 (size by norm). */
  function computeW() {
    const cells = drawnCells();
    const w = new Float32Array(cells.length * per);
    const norms = ctx.state.grid.norms;
    let o = 0;
    for (const c of cells) for (let p = 0; p < per; p++) w[o++] = norms[c * per + p] / 255;
    return w;
  }
  /** Point diameter (CSS px), or 16 sizes from small to large norms with size by norm. */
  function pointSize() {
    const base = ctx.state.mode === "matrix" ? Math.max(1.5, Math.min(4, ctx.canvasSize()[0] / geom.nCols / 45)) : 5;
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
    if (ctx.state.grid && ctx.state.mode) return draw();
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
    const { mode, cell } = ctx.state;
    mark("draw:start");
    const zz = computeZ(), w = computeW();
    mark("draw:zw");
    const index = mode === "matrix" ? spatial.matrix : spatial.single.get(cell);
    sc.set({
      // regl-scatterplot replaces a colour's alpha by the opacity encoding, so dimming (search,
      // highlight) goes through a per-palette-index opacity, read from the same index z.
      colorBy: "valueA", pointColor: palette.colors, opacityBy: "valueA", opacity: palette.opacity,
      sizeBy: model.get("size_by_norm") ? "valueB" : null,
      pointSize: pointSize(), cameraIsFixed: mode === "matrix", opacityInactiveScale: DIMMED, opacityInactiveMax: 1,
    });
    await sc.draw({ x: ctx.state.x, y: ctx.state.y, z: zz, w }, {
      zDataType: "categorical", wDataType: "continuous", select: ctx.selection.local(), ...(index ? { spatialIndex: index } : {}),
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
      const built = sc.get("spatialIndex");
      if (mode === "matrix") spatial.matrix = built;
      else spatial.single.set(cell, built);
    }
    z = zz;
    ctx.single3d.paint();
    ctx.thumbs.publish();
    drawn += 1;
    dom.root.dataset.qkDraws = String(drawn);
  }

  /** RGBA [point*4] of the drawn points from their palette index (3-D view), selection-dimmed. */
  function pointColors() {
    const out = new Float32Array(z.length * 4), sel = ctx.selection.local(), chosen = new Uint8Array(z.length);
    for (const i of sel) if (i < z.length) chosen[i] = 1;
    for (let i = 0; i < z.length; i++) {
      const c = palette.colors[z[i]];
      const a = palette.opacity[z[i]] * (sel.length && !chosen[i] ? DIMMED : 1);
      out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = a;
    }
    return out;
  }

  /** Diameters (CSS px) of the drawn points with size by norm, as the scatter maps them
   * (regl-scatterplot: pointSize[floor(w * (len - 1))]); null when all are the same. */
  function pointSizes() {
    const ps = pointSize();
    return Array.isArray(ps) ? Float32Array.from(computeW(), (w) => ps[Math.floor(w * (ps.length - 1))]) : null;
  }

  /** 1 = thumbnail drawn faint: search/highlight-dimmed, or outside a multi-point selection. */
  function thumbDim() {
    const sel = ctx.selection.local(), dim = new Uint8Array(z.length);
    for (let i = 0; i < z.length; i++) dim[i] = z[i] >= palette.half ? 1 : 0;
    // A lasso (several points) fades the others; a single click (lines) keeps every patch readable.
    if (sel.length > 1) { const on = new Set(sel); for (let i = 0; i < z.length; i++) if (!on.has(i)) dim[i] = 1; }
    return dim;
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

  /** CSS-pixel positions (relative to the canvas) of the drawn points: Float32Array [point * 2]. */
  function screenPositions() {
    const m = ctx.state.x?.length ?? 0;
    const out = new Float32Array(m * 2);
    if (!sc || !m) return out;
    const canvas = dom.canvas;
    const ratio = canvas.clientWidth / Math.max(1, canvas.width / (globalThis.devicePixelRatio || 1));
    for (let i = 0; i < m; i++) {
      const p = sc.getScreenPosition(i);
      if (p) { out[2 * i] = p[0] * ratio; out[2 * i + 1] = p[1] * ratio; }
    }
    return out;
  }

  return {
    create, draw, recolor, pointColors, pointSizes, thumbDim, screenPositions,
    ready: () => sc != null,
    drawn: () => z != null,
    encoded: () => enc != null,
    /** True from the start of a lasso until its selection arrives. */
    lassoing: () => lasso.active,
    /** Positions moved (the 3-D matrix turned): the matrix's spatial index must be rebuilt. */
    forgetMatrixIndex: () => { spatial.matrix = null; },
    set: (opts) => sc?.set(opts),
    select: (points) => sc?.select(points, { preventEvent: true }),
    deselect: () => sc?.deselect(),
    reset: () => sc?.reset?.(),
    /** Forget every annotation layer (lines, probe, hover ring) and clear the drawing. */
    clearAnnotations: () => { layers.clear(); sc?.clearAnnotations?.(); },
    annotate,
  };
}
