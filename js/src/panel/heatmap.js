// Heatmap of a q × k attention matrix (the sequence's, or the aggregate by position), hover values.
import { fitCanvas, fmtWeight as fmt, h, localXY } from "../ui/dom.js";
import { HIGHLIGHT, viridis } from "../ui/palette.js";

const LABELS_UP_TO = 48; // draw token labels along the axes when the matrix is this small

/**
 * @param {HTMLElement} root
 * @param {{signal: AbortSignal, size?: number, onHover?(i: number|null, j: number|null): void,
 *          onClick?(i: number, j: number): void, cls?: string}} hooks
 */
export function createHeatmap(root, hooks) {
  const { signal } = hooks;
  const canvas = h("canvas", { class: `qkv-heat ${hooks.cls ?? ""}` });
  const status = h("div", { class: "qkv-status", text: " " });
  const el = h("div", { class: "qkv-heatmap" }, canvas, status);
  root.append(el);
  let m = null, nq = 0, nk = 0, labelsQ = null, labelsK = null, max = 1, geom = null;
  let cross = null; // [i, j] marked from outside

  function render(weights, rows, cols, { qLabels = null, kLabels = null, size = hooks.size ?? 320 } = {}) {
    m = weights; nq = rows; nk = cols; labelsQ = qLabels; labelsK = kLabels;
    max = 0;
    if (m) for (let x = 0; x < m.length; x++) if (m[x] > max) max = m[x];
    if (!(max > 0)) max = 1;
    const labels = qLabels && nq <= LABELS_UP_TO && nk <= LABELS_UP_TO;
    const pad = labels ? 70 : 4;
    const cell = Math.max(1, Math.min(18, Math.floor((size - pad) / Math.max(nq, nk, 1))));
    geom = { pad, cell, labels };
    paint();
  }

  function paint() {
    if (!geom) return;
    const { pad, cell, labels } = geom;
    const ctx = fitCanvas(canvas, pad + nk * cell + 2, pad + nq * cell + 2);
    if (!m) return;
    // one pixel per cell in an ImageData, scaled up without smoothing: fast for 512 × 512
    const img = new ImageData(Math.max(nk, 1), Math.max(nq, 1));
    for (let i = 0; i < nq; i++) for (let j = 0; j < nk; j++) {
      const c = viridis(Math.sqrt(m[i * nk + j] / max)); // sqrt: small weights stay visible
      const o = (i * nk + j) * 4;
      img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
    }
    const tmp = document.createElement("canvas");
    tmp.width = img.width; tmp.height = img.height;
    tmp.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, pad, pad, nk * cell, nq * cell);
    if (labels) {
      ctx.fillStyle = getComputedStyle(el).color || "#333";
      ctx.font = `${Math.min(11, cell)}px sans-serif`;
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (let i = 0; i < nq; i++) ctx.fillText(String(labelsQ[i]).slice(0, 10), pad - 3, pad + (i + 0.5) * cell);
      ctx.textAlign = "left";
      for (let j = 0; j < nk; j++) {
        ctx.save();
        ctx.translate(pad + (j + 0.5) * cell, pad - 3); ctx.rotate(-Math.PI / 2.5);
        ctx.fillText(String((labelsK ?? labelsQ)[j]).slice(0, 10), 0, 0);
        ctx.restore();
      }
    }
    if (cross) {
      ctx.strokeStyle = HIGHLIGHT; ctx.lineWidth = 1.5;
      const [i, j] = cross;
      if (i != null) ctx.strokeRect(pad, pad + i * cell, nk * cell, cell);
      if (j != null) ctx.strokeRect(pad + j * cell, pad, cell, nq * cell);
    }
  }

  function cellAt(ev) {
    if (!geom || !m) return null;
    const [x, y] = localXY(ev, canvas);
    const j = Math.floor((x - geom.pad) / geom.cell), i = Math.floor((y - geom.pad) / geom.cell);
    return i >= 0 && i < nq && j >= 0 && j < nk ? [i, j] : null;
  }
  canvas.addEventListener("mousemove", (ev) => {
    const c = cellAt(ev);
    if (!c) { status.textContent = " "; hooks.onHover?.(null, null); return; }
    const [i, j] = c;
    const q = labelsQ ? ` ${JSON.stringify(String(labelsQ[i]))}` : "";
    const k = (labelsK ?? labelsQ) ? ` ${JSON.stringify(String((labelsK ?? labelsQ)[j]))}` : "";
    status.textContent = `q ${i}${q} → k ${j}${k}: ${fmt(m[i * nk + j])}`;
    status.dataset.value = String(m[i * nk + j]);
    hooks.onHover?.(i, j);
  }, { signal });
  canvas.addEventListener("mouseleave", () => { status.textContent = " "; hooks.onHover?.(null, null); }, { signal });
  canvas.addEventListener("click", (ev) => { const c = cellAt(ev); if (c) hooks.onClick?.(c[0], c[1]); }, { signal });

  return {
    el, canvas, status, render,
    /** Outline query row i and/or key column j (null clears). */
    mark(i, j) { cross = i == null && j == null ? null : [i, j]; paint(); },
    /** CSS-pixel centre of cell (i, j) relative to the canvas (tests and tooltips). */
    cellCenter(i, j) { return geom ? [geom.pad + (j + 0.5) * geom.cell, geom.pad + (i + 0.5) * geom.cell] : null; },
  };
}
