// The head atlas: tint the matrix cells by a head score (or recall@k), dim all but the top N,
// rank the heads, show the focused head's scores, and the similar-heads map (heads placed by how
// alike they attend: qkviz.analysis.similar_heads_map). Reads meta.scores / meta.similar
// (WidgetState.scores_wire / similar_wire); a click on a ranked head or a map dot focuses it.
import { h } from "../ui/dom.js";
import { CATEGORICAL, viridis } from "../ui/palette.js";

const SVG = "http://www.w3.org/2000/svg";
const MAP_W = 220, MAP_H = 130, PAD = 8;
const RANKED = 8;

/** Readable names of the score columns (others show as they are). */
export const SCORE_LABELS = {
  recall: "recall@k (faithfulness)", previous_token: "previous token", first_token: "first token (sink)",
  self: "self", special: "special tokens", entropy: "entropy (nats)", mean_distance: "mean distance",
  induction: "induction", js: "JS divergence vs other",
};
const label = (name) => SCORE_LABELS[name] ?? (name.endsWith("_vw") ? `${SCORE_LABELS[name.slice(0, -3)] ?? name.slice(0, -3)} ‖v‖-weighted` : name);
export const fmtScore = (v) => {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 10) return v.toFixed(1);
  return a > 0 && a < 0.001 ? v.toExponential(1) : v.toFixed(3); // tiny divergences stay readable
};

/**
 * Finite-aware min/max and the cells sorted by one score.
 * @param {Float32Array | number[]} values  one value per cell (NaN: none)
 * @param {"desc" | "asc"} order
 * @returns {{lo: number, hi: number, ranked: number[]}}  ranked: cells with a value, best first
 */
export function rankCells(values, order = "desc") {
  let lo = Infinity, hi = -Infinity;
  const cells = [];
  for (let c = 0; c < values.length; c++) {
    const v = values[c];
    if (!Number.isFinite(v)) continue;
    lo = Math.min(lo, v); hi = Math.max(hi, v);
    cells.push(c);
  }
  cells.sort((a, b) => (order === "desc" ? values[b] - values[a] : values[a] - values[b]) || a - b);
  return { lo, hi, ranked: cells };
}

export function createAtlas(ctx) {
  const { meta, dom, on, nCells } = ctx;
  const names = [...(meta.has_faithfulness ? ["recall"] : []), ...(meta.scores?.names ?? [])];
  const state = { score: "", top: 0, order: "desc", hover: -1 };

  /** One value per cell of a score (NaN where a head has none). */
  function values(name) {
    if (name === "recall") return Float32Array.from(meta.recall, (v) => (v >= 0 ? v : NaN));
    const i = meta.scores?.names.indexOf(name) ?? -1;
    return i < 0 ? new Float32Array(nCells).fill(NaN) : meta.scores.values.subarray(i * nCells, (i + 1) * nCells);
  }
  let current = null; // {values, lo, hi, ranked, kept: Set}
  function compute() {
    if (!state.score) { current = null; return; }
    const v = values(state.score);
    const { lo, hi, ranked } = rankCells(v, state.order);
    current = { values: v, lo, hi, ranked, kept: state.top > 0 ? new Set(ranked.slice(0, state.top)) : null };
  }
  const norm = (v) => (current && current.hi > current.lo ? (v - current.lo) / (current.hi - current.lo) : 0.5);
  const cellName = (c) => `L${meta.layers[Math.floor(c / meta.heads.length)]} H${meta.heads[c % meta.heads.length]}`;
  const focusCell = (c) => ctx.toolbar.focus(meta.layers[Math.floor(c / meta.heads.length)], meta.heads[c % meta.heads.length]);

  // ---- controls (a toolbar row) -----------------------------------------------------------------
  const scoreSel = h("select", { class: "qk-atlas-score", title: "tint and rank the heads by a score" },
    h("option", { value: "" }, "—"), ...names.map((n) => h("option", { value: n }, label(n))));
  const topInput = h("input", { class: "qk-atlas-top", type: "number", min: "0", value: "0", title: "keep only the N best heads bright (0: all)" });
  const orderBtn = h("button", { class: "qk-atlas-order", title: "rank highest first / lowest first" }, "high first");
  const controls = h("span", { class: "qk-group qk-atlas-controls" },
    h("label", {}, "heads by", scoreSel), h("label", {}, "top", topInput), orderBtn);

  // ---- side: the ranking, the focused head, the map ----------------------------------------------
  const list = h("div", { class: "qk-atlas-list" });
  const headBox = h("div", { class: "qk-atlas-head" });
  const mapCaption = h("div", { class: "qk-atlas-caption" }, " ");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "qk-simmap");
  svg.setAttribute("width", String(MAP_W));
  svg.setAttribute("height", String(MAP_H));
  const mapBox = meta.similar
    ? h("div", { class: "qk-atlas-map" }, h("div", { class: "qk-atlas-title", title: "classical MDS of the mean Jensen–Shannon distance between the heads' attention rows over the same queries" }, "similar heads"), svg, mapCaption)
    : null;
  // collapsible, so that the side panel below stays within reach
  const el = names.length || meta.similar
    ? h("details", { class: "qk-atlas", open: true }, h("summary", { class: "qk-atlas-title" }, "head atlas"), list, headBox, mapBox)
    : null;

  on(scoreSel, "change", () => { state.score = scoreSel.value; update(); });
  on(topInput, "change", () => { state.top = Math.max(0, Number(topInput.value) | 0); update(); });
  on(orderBtn, "click", () => {
    state.order = state.order === "desc" ? "asc" : "desc";
    orderBtn.textContent = state.order === "desc" ? "high first" : "low first";
    update();
  });

  function update() {
    compute();
    ctx.matrix.drawLabels();
    renderList();
    renderHead();
    renderMap();
    if (mapBox) caption(-1);
    dom.root.dataset.qkAtlas = state.score ? `${state.score}:${state.top}:${state.order}` : "";
  }

  /** Called by the matrix for every cell it draws: tint, value, dimmed when filtered out. */
  function decorate(cellEl, cell, scoreEl) {
    if (!current) return false;
    const v = current.values[cell];
    const t = norm(v);
    if (Number.isFinite(v)) {
      const [r, g, b] = viridis(t);
      cellEl.style.background = `rgba(${r | 0},${g | 0},${b | 0},${0.1 + 0.3 * t})`;
    }
    scoreEl.textContent = fmtScore(v);
    scoreEl.title = label(state.score);
    cellEl.dataset.score = Number.isFinite(v) ? String(v) : "";
    if (current.kept && !current.kept.has(cell)) cellEl.dataset.out = "true";
    return true;
  }

  /** Tooltip text of a matrix cell. */
  function describe(cell) {
    if (!current) return "";
    return ` · ${label(state.score)} ${fmtScore(current.values[cell])}`;
  }

  function renderList() {
    list.replaceChildren();
    if (!current) return;
    const rows = current.ranked.slice(0, RANKED);
    list.append(h("div", { class: "qk-atlas-title" }, `heads by ${label(state.score)}`));
    for (const c of rows) {
      const v = current.values[c];
      const bar = h("span", { class: "qk-atlas-bar" });
      bar.style.width = `${Math.round(4 + 60 * norm(v))}px`;
      const row = h("button", { class: "qk-atlas-row", dataset: { cell: String(c) } }, h("span", {}, cellName(c)), bar, h("span", { class: "qk-atlas-val" }, fmtScore(v)));
      on(row, "click", () => focusCell(c));
      list.append(row);
    }
  }

  /** The focused head's every score, and its most similar heads. */
  function renderHead() {
    headBox.replaceChildren();
    const c = ctx.state.mode === "single" ? ctx.state.cell : -1;
    if (c < 0 || !names.length) return;
    // one row per score; its value-weighted twin (name_vw) after a slash
    const rows = names.filter((n) => !n.endsWith("_vw")).map((n) => {
      const vw = names.includes(`${n}_vw`) ? ` / ${fmtScore(values(`${n}_vw`)[c])}` : "";
      return h("div", { class: "qk-atlas-kv", dataset: { score: n } }, h("span", {}, label(n)),
        h("span", { class: "qk-atlas-val", title: vw ? "raw / ‖v‖-weighted" : "" }, fmtScore(values(n)[c]) + vw));
    });
    const hasVw = names.some((n) => n.endsWith("_vw"));
    headBox.append(h("div", { class: "qk-atlas-title" }, `${cellName(c)} scores${hasVw ? " (raw / ‖v‖-weighted)" : ""}`), ...rows);
    if (meta.similar) {
      const k = meta.similar.nearest.length / nCells;
      const near = [];
      for (let j = 0; j < k; j++) {
        const o = meta.similar.nearest[c * k + j];
        if (o < 0) continue;
        const b = h("button", { class: "qkv-link", dataset: { cell: String(o) } }, `${cellName(o)} (${fmtScore(meta.similar.nearestJs[c * k + j])})`);
        on(b, "click", () => focusCell(o));
        near.push(b, " ");
      }
      if (near.length) headBox.append(h("div", { class: "qk-atlas-near" }, "most alike: ", ...near));
    }
  }

  // ---- the similar-heads map -----------------------------------------------------------------------
  function renderMap() {
    if (!mapBox) return;
    const { xy, nearest } = meta.similar;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let c = 0; c < nCells; c++) {
      const x = xy[2 * c], y = xy[2 * c + 1];
      if (!Number.isFinite(x)) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const sx = (x) => PAD + ((x - x0) / Math.max(1e-9, x1 - x0)) * (MAP_W - 2 * PAD);
    const sy = (y) => MAP_H - PAD - ((y - y0) / Math.max(1e-9, y1 - y0)) * (MAP_H - 2 * PAD);
    svg.replaceChildren();
    const focus = ctx.state.mode === "single" ? ctx.state.cell : -1;
    const k = nearest.length / nCells;
    const from = state.hover >= 0 ? state.hover : focus;
    if (from >= 0) {
      for (let j = 0; j < k; j++) {
        const o = nearest[from * k + j];
        if (o < 0 || !Number.isFinite(xy[2 * o])) continue;
        const line = document.createElementNS(SVG, "line");
        line.setAttribute("x1", String(sx(xy[2 * from]))); line.setAttribute("y1", String(sy(xy[2 * from + 1])));
        line.setAttribute("x2", String(sx(xy[2 * o]))); line.setAttribute("y2", String(sy(xy[2 * o + 1])));
        line.setAttribute("class", "qk-simmap-link");
        svg.append(line);
      }
    }
    const r = nCells > 150 ? 2.5 : 4;
    for (let c = 0; c < nCells; c++) {
      if (!Number.isFinite(xy[2 * c])) continue;
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", String(sx(xy[2 * c]))); dot.setAttribute("cy", String(sy(xy[2 * c + 1])));
      dot.setAttribute("r", String(c === focus ? r + 2 : r));
      const li = Math.floor(c / meta.heads.length);
      let fill = CATEGORICAL[li % CATEGORICAL.length]; // by layer unless a score is chosen
      if (current) {
        const v = current.values[c];
        const [rr, gg, bb] = viridis(norm(v));
        fill = Number.isFinite(v) ? `rgb(${rr | 0},${gg | 0},${bb | 0})` : "#9a9a9a";
        if (current.kept && !current.kept.has(c)) dot.setAttribute("opacity", "0.25");
      }
      dot.setAttribute("fill", fill);
      dot.setAttribute("class", c === focus ? "qk-simmap-dot qk-simmap-focus" : "qk-simmap-dot");
      dot.dataset.cell = String(c);
      const title = document.createElementNS(SVG, "title");
      title.textContent = cellName(c) + (current ? ` · ${fmtScore(current.values[c])}` : "");
      dot.append(title);
      dot.addEventListener("mouseenter", () => { state.hover = c; caption(c); renderMap(); }, { signal: ctx.signal });
      dot.addEventListener("mouseleave", () => { state.hover = -1; caption(-1); renderMap(); }, { signal: ctx.signal });
      dot.addEventListener("click", () => focusCell(c), { signal: ctx.signal });
      svg.append(dot);
    }
  }
  function caption(c) {
    if (c < 0) { mapCaption.textContent = current ? "colour: the chosen score" : "colour: layer · click a head to open it"; return; }
    const k = meta.similar.nearest.length / nCells, o = meta.similar.nearest[c * k];
    mapCaption.textContent = `${cellName(c)}${current ? ` · ${fmtScore(current.values[c])}` : ""}${o >= 0 ? ` · most alike ${cellName(o)} (JS ${fmtScore(meta.similar.nearestJs[c * k])})` : ""}`;
  }

  /** After every navigation: the focused head's scores and its ring on the map. */
  function onView() {
    renderHead();
    renderMap();
  }

  if (mapBox) caption(-1);
  compute();
  return {
    controls: names.length ? controls : null, el, decorate, describe, onView, update,
    /** Choose the score (tests and Python-free pages): "" clears. */
    choose(score, top = 0, order = "desc") {
      scoreSel.value = score; state.score = score; state.top = top; topInput.value = String(top);
      state.order = order; orderBtn.textContent = order === "desc" ? "high first" : "low first";
      update();
    },
  };
}
