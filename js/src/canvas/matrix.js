// Geometry of the matrix: layer rows x head columns of square cells. The matrix canvas has the
// grid's aspect ratio (nCols : nRows) and the scatterplot stretches the data box [-1, 1]^2 over it
// (`aspectRatio` = canvas aspect), so a cell spans 2/nCols data units across and 2/nRows down and
// is square on screen. Each cell shows its head's [-1, 1] layout at `fill` of half a cell, so
// neighbouring cells never overlap. The functions up to matrixPositions3D are pure geometry;
// createMatrix draws the cell outlines and labels over the canvas and finds the cell under a pointer.
import { h } from "../ui/dom.js";

export function gridGeometry(nRows, nCols, fill) {
  const r = Math.max(1, nRows), c = Math.max(1, nCols);
  return { nRows: r, nCols: c, cw: 2 / c, ch: 2 / r, fill, aspect: c / r };
}

/** Canvas size (CSS px) of the matrix whose longer side is `size`. */
export function matrixCanvasSize(g, size) {
  return g.aspect >= 1 ? [size, Math.round(size / g.aspect)] : [Math.round(size * g.aspect), size];
}

export function cellCenter(g, row, col) {
  return [-1 + (col + 0.5) * g.cw, 1 - (row + 0.5) * g.ch];
}

/** The cell under data point (x, y), or null. */
export function cellAt(g, x, y) {
  const col = Math.floor((x + 1) / g.cw);
  const row = Math.floor((1 - y) / g.ch);
  if (row < 0 || col < 0 || row >= g.nRows || col >= g.nCols) return null;
  return { row, col };
}

/** x, y of every point of every cell in data units (cells in order, 2n points each). */
export function matrixPositions(g, coords, nCells, dim = 2) {
  const n = coords.length / dim;
  const per = n / Math.max(1, nCells);
  const x = new Float32Array(n), y = new Float32Array(n);
  const sx = (g.cw / 2) * g.fill, sy = (g.ch / 2) * g.fill;
  for (let c = 0; c < nCells; c++) {
    const [cx, cy] = cellCenter(g, Math.floor(c / g.nCols), c % g.nCols);
    for (let i = c * per; i < (c + 1) * per; i++) {
      x[i] = cx + coords[dim * i] * sx;
      y[i] = cy + coords[dim * i + 1] * sy;
    }
  }
  return { x, y };
}

/** x, y of one cell's points in single-view units (square canvas). */
export function singlePositions(coords, cell, per, scale, dim = 2) {
  const x = new Float32Array(per), y = new Float32Array(per);
  for (let i = 0; i < per; i++) {
    x[i] = coords[dim * (cell * per + i)] * scale;
    y[i] = coords[dim * (cell * per + i) + 1] * scale;
  }
  return { x, y };
}

/**
 * x, y of every point of every cell of a 3-D layout seen through one shared camera (data units).
 * Each head's [-1, 1]^3 cube is projected with the camera's angles at its default distance (so
 * zooming the single view does not blow the cells up) and placed in its cell like a 2-D layout.
 * @param {(coords: Float32Array, camera: object) => Float32Array} project  scene3d.js project3D
 */
export function matrixPositions3D(g, coords, nCells, camera, project, distance = 3.2) {
  const ndc = project(coords, { ...camera, distance, aspect: 1 });
  // behind the camera (cannot happen at the default distance, but never draw NaN): park far away
  for (let i = 0; i < ndc.length; i++) if (!Number.isFinite(ndc[i])) ndc[i] = 100;
  return matrixPositions(g, ndc, nCells, 2);
}

/**
 * The matrix overlay of a view: cell outlines with their labels (and recall@k) in `ctx.dom.grid`,
 * the cell under a pointer event, and the hover outline with its tooltip.
 */
export function createMatrix(ctx) {
  const { meta, geom, dom } = ctx;
  const score = (row, col) => meta.recall[row * geom.nCols + col];

  function drawLabels() {
    dom.grid.replaceChildren();
    if (ctx.state.mode !== "matrix") return;
    const [W, H] = ctx.canvasSize();
    const px = (x) => ((x + 1) / 2) * W, py = (y) => ((1 - y) / 2) * H;
    const small = W / geom.nCols < 68;
    for (let r = 0; r < geom.nRows; r++) {
      for (let c = 0; c < geom.nCols; c++) {
        const x0 = -1 + c * geom.cw, y0 = 1 - r * geom.ch;
        const cellEl = h("div", { class: "qk-cell", dataset: { layer: meta.layers[r], head: meta.heads[c] } });
        Object.assign(cellEl.style, { left: `${px(x0)}px`, top: `${py(y0)}px`, width: `${px(x0 + geom.cw) - px(x0)}px`, height: `${py(y0 - geom.ch) - py(y0)}px` });
        cellEl.append(h("span", { class: "qk-cell-label" }, small ? `${meta.layers[r]}.${meta.heads[c]}` : `L${meta.layers[r]} H${meta.heads[c]}`));
        const scoreEl = h("span", { class: "qk-cell-score", title: "recall@k" });
        // the atlas (a chosen head score) tints the cell and prints its value; else recall@k
        if (!ctx.atlas?.decorate(cellEl, r * geom.nCols + c, scoreEl)) {
          const rec = score(r, c);
          if (meta.has_faithfulness && rec >= 0) scoreEl.textContent = rec.toFixed(2);
        }
        if (scoreEl.textContent) cellEl.append(scoreEl);
        dom.grid.append(cellEl);
      }
    }
  }

  /** The cell {row, col} under a pointer event, or null (the matrix camera is fixed). */
  function cellFromEvent(e) {
    // Canvas content box (not the border box) -> the [-1, 1] data box.
    const canvas = dom.canvas, r = canvas.getBoundingClientRect();
    const fx = (e.clientX - r.left - canvas.clientLeft) / canvas.clientWidth;
    const fy = (e.clientY - r.top - canvas.clientTop) / canvas.clientHeight;
    return cellAt(geom, fx * 2 - 1, 1 - fy * 2);
  }

  /** Outline the cell under the pointer and name it in the tooltip (null: the pointer left). */
  function hover(e) {
    for (const c of dom.grid.querySelectorAll("[data-hover=true]")) c.dataset.hover = "false";
    if (!e) return;
    const hit = cellFromEvent(e);
    if (!hit) { ctx.tooltip.hide(); return; }
    const cellEl = dom.grid.children[hit.row * geom.nCols + hit.col];
    if (cellEl) cellEl.dataset.hover = "true";
    const rec = score(hit.row, hit.col);
    ctx.tooltip.showText(`Layer ${meta.layers[hit.row]} · Head ${meta.heads[hit.col]}`,
      ...(meta.has_faithfulness && rec >= 0 ? [` · recall@k ${rec.toFixed(2)}`] : []),
      ctx.atlas?.describe(hit.row * geom.nCols + hit.col) ?? "");
  }

  /** x, y of every drawn point on the matrix: 2-D layouts as they are, 3-D through `camera`. Only the
   * shown attention's cells are drawn (an encoder-decoder grid holds every attention's). */
  function positions(coords, camera, project) {
    const first = ctx.cellOffset * ctx.per * meta.dim;
    const mine = coords.subarray(first, first + ctx.nCells * ctx.per * meta.dim);
    return meta.dim === 3
      ? matrixPositions3D(geom, mine, ctx.nCells, camera, project)
      : matrixPositions(geom, mine, ctx.nCells, meta.dim);
  }

  return { drawLabels, cellFromEvent, hover, positions };
}
