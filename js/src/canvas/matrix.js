// The matrix of every head: geometry, placement of each head's layout in its cell, labels and axes
// that follow the camera, and the cell under a pointer.
//
// Cells are square and laid out layers x heads, or transposed (heads x layers) when that gives
// bigger cells in the space the widget has (SmolLM2's 30 layers x 9 heads fill a wide widget as 9
// rows of 30). The matrix canvas has the grid's aspect ratio and the scatterplot stretches the data
// box [-1, 1]^2 over it (`aspectRatio` = canvas aspect), so a cell spans 2/nCols data units across
// and 2/nRows down and is square on screen. Each cell shows its head's [-1, 1] layout at `fill` of
// half a cell, so neighbouring cells never overlap. The matrix zooms and pans (2-D layouts): cell
// outlines and labels move with the camera, and when cells get too small for a "L3 H5" in each,
// the labels give way to row and column axes beside the canvas (thinned to stay legible). The
// functions up to matrixPositions3D are pure geometry.
import { h } from "../ui/dom.js";

/** Narrowest cell (CSS px on screen) that shows its own "L3 H5" label; smaller cells get axes. */
export const CELL_LABEL_PX = 56;

/**
 * @param {number} nLayers
 * @param {number} nHeads
 * @param {number} fill  share of half a cell a layout fills
 * @param {boolean} [transpose]  rows are heads and columns layers
 */
export function gridGeometry(nLayers, nHeads, fill, transpose = false) {
  const L = Math.max(1, nLayers), H = Math.max(1, nHeads);
  const r = transpose ? H : L, c = transpose ? L : H;
  return { nLayers: L, nHeads: H, transpose, nRows: r, nCols: c, cw: 2 / c, ch: 2 / r, fill, aspect: c / r };
}

/**
 * Rows are layers, unless heads as rows give bigger square cells in `width` x `height` (ties keep
 * layers as rows, the usual reading).
 */
export function chooseTranspose(nLayers, nHeads, width, height) {
  const side = (rows, cols) => Math.min(width / cols, height / rows);
  return side(nHeads, nLayers) > side(nLayers, nHeads) * 1.001;
}

/** The biggest canvas (CSS px) of square cells that fits in `width` x `height`. */
export function fitCanvas(g, width, height) {
  const s = Math.max(1, Math.min(width / g.nCols, height / g.nRows));
  return [Math.round(s * g.nCols), Math.round(s * g.nRows)];
}

/** [row, col] of a cell (the layer-major index over layers x heads). */
export function cellRC(g, cell) {
  const li = Math.floor(cell / g.nHeads), hi = cell % g.nHeads;
  return g.transpose ? [hi, li] : [li, hi];
}

/** The cell at [row, col]. */
export function cellOfRC(g, row, col) {
  return g.transpose ? col * g.nHeads + row : row * g.nHeads + col;
}

export function cellCenter(g, cell) {
  const [row, col] = cellRC(g, cell);
  return [-1 + (col + 0.5) * g.cw, 1 - (row + 0.5) * g.ch];
}

/** The cell under data point (x, y): {row, col, cell, layer, head} (indices into the grid's
 * layers and heads), or null. */
export function cellAt(g, x, y) {
  const col = Math.floor((x + 1) / g.cw);
  const row = Math.floor((1 - y) / g.ch);
  if (!(row >= 0 && col >= 0 && row < g.nRows && col < g.nCols)) return null;
  const cell = cellOfRC(g, row, col);
  return { row, col, cell, layer: Math.floor(cell / g.nHeads), head: cell % g.nHeads };
}

/** The cells whose boxes meet the rectangle [x0, x1] x [y0, y1] (data units). */
export function cellsInRect(g, x0, y0, x1, y1) {
  const c0 = Math.max(0, Math.floor((x0 + 1) / g.cw)), c1 = Math.min(g.nCols - 1, Math.floor((x1 + 1) / g.cw));
  const r0 = Math.max(0, Math.floor((1 - y1) / g.ch)), r1 = Math.min(g.nRows - 1, Math.floor((1 - y0) / g.ch));
  const out = [];
  for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) out.push(cellOfRC(g, r, c));
  return out.sort((a, b) => a - b);
}

/**
 * x, y (data units) of drawn points on the matrix: each at its cell's place.
 * @param {Float32Array} coords  [k * dim] layout coordinates of the drawn points
 * @param {Uint32Array} ids  [k] their global indices (cell = floor(id / per))
 * @param {number} per  points per head
 * @param {number} [first]  the grid's first cell among every cell (the shown attention's offset)
 */
export function matrixPositions(g, coords, ids, per, dim = 2, first = 0) {
  const k = ids.length, x = new Float32Array(k), y = new Float32Array(k);
  const sx = (g.cw / 2) * g.fill, sy = (g.ch / 2) * g.fill;
  let last = -1, cx = 0, cy = 0;
  for (let i = 0; i < k; i++) {
    const cell = Math.floor(ids[i] / per);
    if (cell !== last) { [cx, cy] = cellCenter(g, cell - first); last = cell; }
    x[i] = cx + coords[dim * i] * sx;
    y[i] = cy + coords[dim * i + 1] * sy;
  }
  return { x, y };
}

/** x, y of points in single-view units (square canvas). @param {Float32Array} coords [k * dim] */
export function singlePositions(coords, scale, dim = 2) {
  const k = coords.length / dim, x = new Float32Array(k), y = new Float32Array(k);
  for (let i = 0; i < k; i++) {
    x[i] = coords[dim * i] * scale;
    y[i] = coords[dim * i + 1] * scale;
  }
  return { x, y };
}

/**
 * x, y of drawn points of a 3-D layout seen through one shared camera (data units). Each head's
 * [-1, 1]^3 cube is projected with the camera's angles at its default distance (so zooming the
 * single view does not blow the cells up) and placed in its cell like a 2-D layout.
 * @param {(coords: Float32Array, camera: object) => Float32Array} project  scene3d.js project3D
 */
export function matrixPositions3D(g, coords, ids, per, camera, project, distance = 3.2, first = 0) {
  const ndc = project(coords, { ...camera, distance, aspect: 1 });
  // behind the camera (cannot happen at the default distance, but never draw NaN): park far away
  for (let i = 0; i < ndc.length; i++) if (!Number.isFinite(ndc[i])) ndc[i] = 100;
  return matrixPositions(g, ndc, ids, per, 2, first);
}

/** A nice step (1, 2, 5, 10, 20, ...) of labels so that consecutive ones are >= `minPx` apart. */
export function labelStep(cellPx, minPx) {
  for (let base = 1; ; base *= 10) {
    for (const m of [1, 2, 5]) if (base * m * cellPx >= minPx) return base * m;
  }
}

/**
 * The matrix overlay of a view: cell outlines with their labels (and recall@k) in `ctx.dom.grid`,
 * the row and column axes, the cell under a pointer event, and the hover outline with its tooltip.
 * `ctx.geom` is the current geometry (view.js replaces it when the orientation changes).
 */
export function createMatrix(ctx) {
  const { meta, dom } = ctx;
  const score = (cell) => meta.recall[cell];
  let cellsBox = null, cellEls = [], size = [1, 1], labelMode = "";

  const rowName = (g, r) => (g.transpose ? `H${meta.heads[r]}` : `L${meta.layers[r]}`);
  const colName = (g, c) => (g.transpose ? `L${meta.layers[c]}` : `H${meta.heads[c]}`);

  /** Build the cells for the current geometry and canvas size (at the camera's rest). */
  function drawLabels() {
    dom.grid.replaceChildren();
    dom.axes.rows.replaceChildren();
    dom.axes.cols.replaceChildren();
    cellsBox = null; cellEls = []; labelMode = "";
    if (ctx.state.mode !== "matrix") { dom.root.dataset.qkLabels = ""; return; }
    const g = ctx.geom;
    size = ctx.canvasSize();
    const [W, H] = size;
    cellsBox = h("div", { class: "qk-cells" });
    Object.assign(cellsBox.style, { width: `${W}px`, height: `${H}px` });
    const cw = W / g.nCols, chh = H / g.nRows;
    const nCells = g.nLayers * g.nHeads;
    for (let cell = 0; cell < nCells; cell++) {
      const [r, c] = cellRC(g, cell);
      const li = Math.floor(cell / g.nHeads), hi = cell % g.nHeads;
      const el = h("div", { class: "qk-cell", dataset: { layer: meta.layers[li], head: meta.heads[hi] } });
      Object.assign(el.style, { left: `${c * cw}px`, top: `${r * chh}px`, width: `${cw}px`, height: `${chh}px` });
      el.append(h("span", { class: "qk-cell-label" }, `L${meta.layers[li]} H${meta.heads[hi]}`));
      const scoreEl = h("span", { class: "qk-cell-score", title: "recall@k" });
      // the atlas (a chosen head score) tints the cell and prints its value; else recall@k
      if (!ctx.atlas?.decorate(el, cell, scoreEl)) {
        const rec = score(cell);
        if (meta.has_faithfulness && rec >= 0) scoreEl.textContent = rec.toFixed(2);
      }
      if (scoreEl.textContent) el.append(scoreEl);
      if (meta.missing[(ctx.cellOffset ?? 0) + cell]) el.dataset.missing = "true";
      cellEls.push(el);
    }
    cellsBox.append(...cellEls);
    dom.grid.append(cellsBox);
    follow();
  }

  /** Move outlines and labels with the camera; labels in cells or on the axes by cell size. */
  function follow() {
    if (!cellsBox || ctx.state.mode !== "matrix") return;
    const g = ctx.geom, [W, H] = size;
    const { x: [x0, x1], y: [y0, y1] } = ctx.scatter.viewDomain();
    const k = 2 / (x1 - x0);
    const tx = ((-1 - x0) / (x1 - x0)) * W, ty = ((y1 - 1) / (y1 - y0)) * H;
    cellsBox.style.transform = `translate(${tx}px, ${ty}px) scale(${k})`;
    cellsBox.style.setProperty("--qk-zoom", String(k));
    const cellPx = (k * W) / g.nCols;
    const mode = cellPx >= CELL_LABEL_PX ? "cells" : "axes";
    if (mode !== labelMode) { labelMode = mode; dom.root.dataset.qkLabels = mode; }
    dom.axes.rows.replaceChildren();
    dom.axes.cols.replaceChildren();
    if (mode !== "axes") return;
    // row labels: one every `step` rows, at the rows' centres, only those in view
    const rowPx = (k * H) / g.nRows, colPx = cellPx;
    const rStep = labelStep(rowPx, 13), cStep = labelStep(colPx, 8 + 7 * String(Math.max(...meta.layers, ...meta.heads)).length);
    for (let r = 0; r < g.nRows; r += rStep) {
      const y = ty + (r + 0.5) * rowPx;
      if (y < -rowPx || y > H + rowPx) continue;
      const el = h("span", { class: "qk-axis-label" }, rowName(g, r));
      el.style.top = `${y}px`;
      dom.axes.rows.append(el);
    }
    for (let c = 0; c < g.nCols; c += cStep) {
      const x = tx + (c + 0.5) * colPx;
      if (x < -colPx || x > W + colPx) continue;
      const el = h("span", { class: "qk-axis-label" }, colName(g, c));
      el.style.left = `${x}px`;
      dom.axes.cols.append(el);
    }
  }

  /** The data point (matrix units) under a pointer event, through the camera. */
  function dataAt(e) {
    // Canvas content box (not the border box) -> the visible part of the data box.
    const canvas = dom.canvas, r = canvas.getBoundingClientRect();
    const fx = (e.clientX - r.left - canvas.clientLeft) / canvas.clientWidth;
    const fy = (e.clientY - r.top - canvas.clientTop) / canvas.clientHeight;
    const { x: [x0, x1], y: [y0, y1] } = ctx.scatter.viewDomain();
    return [x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)];
  }

  /** The cell under a pointer event ({row, col, cell, layer, head}), or null. */
  function cellFromEvent(e) {
    const [x, y] = dataAt(e);
    return cellAt(ctx.geom, x, y);
  }

  /** How wide a cell is on screen now (CSS px). */
  function cellScreenPx() {
    const { x: [x0, x1] } = ctx.scatter.viewDomain();
    return ((2 / (x1 - x0)) * size[0]) / ctx.geom.nCols;
  }

  /** Outline the cell under the pointer and name it in the tooltip (null: the pointer left). */
  function hover(e) {
    for (const c of dom.grid.querySelectorAll("[data-hover=true]")) c.dataset.hover = "false";
    if (!e) return;
    const hit = cellFromEvent(e);
    if (!hit) { ctx.tooltip.hide(); return; }
    const cellEl = cellEls[hit.cell];
    if (cellEl) cellEl.dataset.hover = "true";
    const rec = score(hit.cell);
    ctx.tooltip.showText(`Layer ${meta.layers[hit.layer]} · Head ${meta.heads[hit.head]}`,
      ...(meta.has_faithfulness && rec >= 0 ? [` · recall@k ${rec.toFixed(2)}`] : []),
      ctx.atlas?.describe(hit.cell) ?? "");
  }

  /** x, y of drawn points on the matrix: 2-D layouts as they are, 3-D through `camera`. Drawn
   * points carry global indices; the matrix shows the cells of one attention, from `cellOffset`. */
  function positions(drawn, camera, project) {
    const per = 2 * meta.n_tokens, first = ctx.cellOffset ?? 0;
    return meta.dim === 3
      ? matrixPositions3D(ctx.geom, drawn.coords, drawn.ids, per, camera, project, 3.2, first)
      : matrixPositions(ctx.geom, drawn.coords, drawn.ids, per, meta.dim, first);
  }

  return { drawLabels, follow, cellFromEvent, cellScreenPx, dataAt, hover, positions };
}
