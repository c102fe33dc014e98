// The live probe: a text box that asks Python to capture a sentence with the same model and place
// its tokens into every head's existing layout (QKViz.probe -> the `_probe` trait), and the drawing
// of those points (outlined diamonds: green queries, pink keys) on the matrix and in the focused
// head, with the probed sentence's own attention lines in the focused head. Also the linked hover
// of qkviz.compare: the point hovered in the other widget (`_hover`) gets a ring here.
// 2-D layouts only (a 3-D view says so); a standalone page has no kernel and no probe box.
import { decode } from "../wire/codec.js";
import { setTrait } from "../sync.js";
import { h } from "../ui/dom.js";
import { KEY_RGB, LINE_RGB, QUERY_RGB } from "../ui/palette.js";
import { topPartners } from "./lines.js";
import { cellCenter } from "./matrix.js";

const MARK_PX = 6; // half-width of a probe diamond, CSS px (single view; 0.7 of it on the matrix)
const RING_PX = 10;

/** Decode the `_probe` trait: null when there is none. */
export function decodeProbe(wire) {
  const m = wire?.n_tokens ?? 0;
  if (!m) return null;
  return {
    m, display: wire.display ?? [], texts: wire.texts ?? [],
    seq: decode(wire.seq, "uint32"), pos: decode(wire.pos, "uint32"),
    coords: decode(wire.coords, "float32"), attention: decode(wire.attention, "float32"), offsets: decode(wire.offsets, "uint32"),
  };
}

/** A closed polygon of `k` vertices around (x, y) with half-widths rx, ry (data units). */
function polygon(x, y, rx, ry, k) {
  const v = [];
  for (let i = 0; i <= k; i++) {
    const a = (2 * Math.PI * i) / k;
    v.push([x + rx * Math.cos(a), y + ry * Math.sin(a)]);
  }
  return v;
}

export function createProbe(ctx) {
  const { model, meta, geom, on, n, per } = ctx;
  const available = meta.can_probe && model.get("_probe") !== undefined;
  const input = h("input", { class: "qk-probe-text", type: "text", placeholder: "probe: type a sentence, Enter" });
  const go = h("button", { class: "qk-probe-go", title: "capture it with the same model and place it in every head" }, "place");
  const clear = h("button", { class: "qk-probe-clear", title: "remove the probe" }, "×");
  const note = h("span", { class: "qk-probe-note" });
  const controls = available ? h("span", { class: "qk-group qk-probe" }, input, go, clear, note) : null;
  let probe = decodeProbe(available ? model.get("_probe") : null);
  let lastHover = -1;

  async function submit(text) {
    note.textContent = text ? "capturing…" : "";
    ctx.dom.root.dataset.qkProbe = "busy";
    try {
      const r = await ctx.fetchDetail({ kind: "probe", text });
      if (r?.error) throw new Error(r.error);
      note.textContent = text ? `${r.n_tokens} tokens placed in every head` : "";
    } catch (err) {
      note.textContent = `probe failed: ${err?.message ?? err}`;
    } finally {
      ctx.dom.root.dataset.qkProbe = probe ? String(probe.m) : "";
    }
  }
  if (available) {
    on(go, "click", () => submit(input.value.trim()));
    on(input, "keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit(input.value.trim()); } });
    on(clear, "click", () => { input.value = ""; submit(""); });
  }

  /** Data units per CSS pixel along x and y of the current canvas (the matrix stretches x). */
  function unitsPerPx() {
    const [w, hgt] = ctx.canvasSize();
    return [2 / Math.max(1, w), 2 / Math.max(1, hgt)];
  }

  /** x, y (data units) of probe point i (0..2m) of cell c in the current view, or null. */
  function position(c, i) {
    const d = meta.dim, m = probe.m;
    const o = (c * 2 * m + i) * d;
    const x = probe.coords[o], y = probe.coords[o + 1];
    if (!(Math.abs(x) < 50)) return null; // a cell without a layout parks its points at 100
    if (ctx.state.mode === "single") return [x * meta.single_scale, y * meta.single_scale];
    const [cx, cy] = cellCenter(geom, Math.floor(c / geom.nCols), c % geom.nCols);
    return [cx + x * (geom.cw / 2) * geom.fill, cy + y * (geom.ch / 2) * geom.fill];
  }

  function draw() {
    const { state } = ctx;
    if (!probe || !state.mode || meta.dim === 3) {
      ctx.scatter.annotate("probe", null);
      if (probe && meta.dim === 3) note.textContent = "probe points are drawn on 2-D layouts only";
      ctx.dom.root.dataset.qkProbe = probe ? String(probe.m) : "";
      return;
    }
    const [ux, uy] = unitsPerPx();
    const scale = state.mode === "matrix" ? 0.7 : 1;
    const rx = MARK_PX * ux * scale, ry = MARK_PX * uy * scale;
    const cells = state.mode === "matrix" ? [...Array(ctx.nCells).keys()] : [state.cell];
    const halo = state.theme === "dark" ? [1, 1, 1, 0.9] : [0.05, 0.05, 0.05, 0.9];
    const out = [];
    const m = probe.m;
    for (const c of cells) {
      for (let i = 0; i < 2 * m; i++) {
        const p = position(c, i);
        if (!p) continue;
        const rgb = (i < m ? QUERY_RGB : KEY_RGB).map((v) => v / 255);
        const v = polygon(p[0], p[1], rx, ry, 4);
        // a dark (light, on dark) halo under the coloured diamond: visible over points of its colour
        out.push({ vertices: v, lineColor: halo, lineWidth: state.mode === "matrix" ? 3 : 4.5 });
        out.push({ vertices: v, lineColor: [...rgb, 1], lineWidth: state.mode === "matrix" ? 1.5 : 2 });
      }
    }
    const lines = state.mode === "single" ? probeLines(state.cell) : [];
    ctx.scatter.annotate("probe", [...lines, ...out]);
    ctx.dom.root.dataset.qkProbe = String(m);
    ctx.dom.root.dataset.qkProbeLines = String(lines.length);
  }

  /** Attention lines of the probed text in cell c: each query to its top-k keys (same seq). */
  function probeLines(c) {
    const m = probe.m, k = model.get("lines_k"), thr = model.get("lines_threshold");
    const size = probe.attention.length / Math.max(1, ctx.nCells);
    const segs = [];
    let first = 0;
    for (let s = 0; s < probe.offsets.length; s++) {
      let len = 0;
      while (first + len < m && probe.seq[first + len] === s) len++;
      const w = probe.attention.subarray(c * size + probe.offsets[s], c * size + probe.offsets[s] + len * len);
      for (let q = 0; q < len; q++) {
        const a = position(c, first + q);
        for (const { pos, weight } of topPartners(w, "query", q, k, thr)) {
          const b = position(c, m + first + pos);
          if (a && b) segs.push({ a, b, weight });
        }
      }
      first += len;
    }
    const wmax = Math.max(1e-9, ...segs.map((s) => s.weight));
    return segs.map(({ a, b, weight }) => ({
      vertices: [a, b], lineColor: [...LINE_RGB, 0.25 + 0.75 * (weight / wmax)], lineWidth: 1 + 2.5 * (weight / wmax),
    }));
  }

  function update() {
    probe = decodeProbe(model.get("_probe"));
    if (probe && note.textContent === "capturing…") note.textContent = `${probe.m} tokens placed in every head`;
    if (!probe && available) note.textContent = "";
    draw();
  }

  // ---- linked hover (qkviz.compare) --------------------------------------------------------------
  if (meta.link_hover) {
    let queued = false, pending = -1;
    ctx.bus.subscribe("point:hover", (p) => {
      pending = p && ctx.state.mode === "single" ? ctx.state.cell * per + p.point : -1;
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        if (ctx.signal.aborted || model.get("_hover") === pending) return;
        lastHover = pending;
        setTrait(model, "_hover", pending);
      });
    });
  }
  /** A ring at the point the other widget hovers (when it is drawn here). */
  function drawHover() {
    const g = model.get("_hover") ?? -1;
    const { state } = ctx;
    if (g < 0 || g === lastHover || state.mode !== "single" || Math.floor(g / per) !== state.cell || !state.x) {
      ctx.scatter.annotate("hover", null);
      ctx.dom.root.dataset.qkHoverRing = "";
      return;
    }
    const local = g % per;
    const [ux, uy] = unitsPerPx();
    const color = local < n ? QUERY_RGB : KEY_RGB;
    const ring = polygon(state.x[local], state.y[local], RING_PX * ux, RING_PX * uy, 20);
    const halo = state.theme === "dark" ? [1, 1, 1, 0.9] : [0.05, 0.05, 0.05, 0.9];
    ctx.scatter.annotate("hover", [{ vertices: ring, lineColor: halo, lineWidth: 5 },
      { vertices: ring, lineColor: [...color.map((v) => v / 255), 1], lineWidth: 2.5 }]);
    ctx.dom.root.dataset.qkHoverRing = String(local);
  }

  return { controls, draw, update, drawHover };
}
