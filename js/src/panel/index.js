// Side panel of the QKViz widget: sentence view, heatmap, aggregate and image views for the focused
// head, linked to the canvas only through the bus and ctx (js/src/bus.js; docs/internals.md,
// "Front-end panel contract"): nothing here imports from js/src/canvas/, and the canvas imports
// only mountPanel from here.
//
// The canvas publishes "point:click" {point, token, kind, seq, layer, head} (or null), "point:hover"
// {...} | null and "selection" {points, tokens?}; the panel publishes "highlight:tokens" {tokens:
// Uint32Array | null} and "lines:weights" {seq, layer, head, weights: Float32Array
// [query_pos*key_pos]} (the renormalised attention the scatter's lines must follow).
import { createAggregateView } from "./aggregate.js";
import { hiddenSets, renormalize } from "./attention.js";
import { imageDetail, sequenceDetail } from "./detail.js";
import { createHeatmap } from "./heatmap.js";
import { createImageView } from "./image.js";
import { createSentenceView } from "./sentence.js";
import { cellOf, getMeta, getTokens } from "../model.js";
import { checkbox, h } from "../ui/dom.js";
import { injectStyle } from "../ui/style.js";
import { decodeOptional } from "../wire/codec.js";

/**
 * Mount the side panel into `container`.
 * @param {HTMLElement} container
 * @param {{model: any, bus: any, fetchDetail(req: object): Promise<object>, getPoints?(): any}} ctx
 * @returns {() => void} cleanup
 */
/** Scores (content or position term) shifted to be >= 0 for the heatmap's colour ramp. */
function scoresForHeat(m) {
  let lo = Infinity;
  for (const v of m) if (Number.isFinite(v) && v < lo) lo = v;
  return Float32Array.from(m, (v) => (Number.isFinite(v) ? v - lo : 0));
}

/** One line on the head's score function (docs/concepts/attention-families.md). */
export function familyCaption(d) {
  const mean = (a) => (a && a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
  const effect = d.position_effect ? ` Position effect ${mean(d.position_effect).toFixed(2)} (mean share of each query's attention that the position term moves).` : "";
  switch (d.family) {
    case "sink": return `Sink head: each query also gives a share to nothing (mean ${mean(d.sink).toFixed(2)}; the ∅ column).`;
    case "soft-capped": return `Soft-capped scores: cap·tanh(s/cap), cap ${d.softcap}.`;
    case "alibi": return `ALiBi: key j gets +${Number(d.alibi).toPrecision(3)}·j (recent keys favoured).${effect}`;
    case "relative": return `Relative buckets: each score gets a learned bias by key − query offset.${effect}`;
    case "disentangled": return `DeBERTa: content→position and position→content terms join c·q·k.${effect}`;
    default: return "";
  }
}

export function mountPanel(container, ctx) {
  const ac = new AbortController();
  const { signal } = ac;
  const { bus } = ctx;
  // an encoder-decoder embedding shows one attention: its name and the streams of its queries and keys
  const meta = ctx.model?.get ? getMeta(ctx.model) : null;
  const attn = meta?.attn || "";
  const streams = attn ? { query: meta.query_stream, key: meta.key_stream } : null;
  injectStyle(container.getRootNode?.() ?? document);
  const state = {
    layer: null, head: null, seq: null, token: null, kind: "query",
    detail: null, image: null, weights: null, modality: null,
    hideKeys: new Set(), hideQueries: new Set(),
    hideSpecial: false, hideFirst: false, valueWeighted: false,
    tab: "sentence", request: 0, aggregates: new Map(),
    // marks: the clicked token {token, point (global index)}, the last "selection", the hovered position
    clicked: null, selection: null, hover: null,
  };

  const title = h("div", { class: "qkv-title", text: " " });
  const empty = h("div", { class: "qkv-empty", text: "Click a point in the scatter to see its sequence's attention here." });
  const tabs = {};
  const tabBar = h("div", { class: "qkv-tabs" });
  for (const [id, label] of [["sentence", "Sentence"], ["image", "Image"], ["heatmap", "Heatmap"], ["aggregate", "Aggregate"]]) {
    tabs[id] = h("button", { text: label, "data-tab": id });
    tabs[id].addEventListener("click", () => showTab(id), { signal });
    tabBar.append(tabs[id]);
  }
  const special = checkbox("hide [CLS]/[SEP]", false, (v) => { state.hideSpecial = v; recompute(); }, signal, "hide-special");
  const first = checkbox("hide first token", false, (v) => { state.hideFirst = v; recompute(); }, signal, "hide-first");
  const valued = checkbox("weight by ‖v‖", false, (v) => { state.valueWeighted = v; recompute(); }, signal, "value-weighted");
  const reset = h("button", { class: "qkv-link", text: "reset", "data-name": "reset" });
  reset.addEventListener("click", () => {
    state.hideKeys.clear(); state.hideQueries.clear();
    for (const [c, k] of [[special, "hideSpecial"], [first, "hideFirst"], [valued, "valueWeighted"]]) { c.input.checked = false; state[k] = false; }
    sentence.clearPin(); recompute(); publishHighlight(null);
  }, { signal });
  const toolbar = h("div", { class: "qkv-toolbar" }, special, first, valued, reset);
  const views = {
    sentence: h("div", { class: "qkv-view", "data-view": "sentence" }),
    image: h("div", { class: "qkv-view", "data-view": "image" }),
    heatmap: h("div", { class: "qkv-view", "data-view": "heatmap" }),
    aggregate: h("div", { class: "qkv-view", "data-view": "aggregate" }),
  };
  const root = h("div", { class: "qkv-panel" }, title, tabBar, toolbar, empty, ...Object.values(views));
  container.append(root);

  /**
   * Mark, in the loaded sequence, the clicked token (until a lasso, a clear or another click
   * replaces it), the tokens of the selection that lie in the head the panel shows (a lasso in
   * another head marks nothing here) and the hovered token.
   */
  function showMarks() {
    const d = state.detail;
    if (!d) return;
    const mine = decodeOptional(d.token, "uint32"), want = new Set();
    if (state.clicked) want.add(state.clicked.token);
    const cell = meta && state.layer != null ? cellOf(meta, state.layer, state.head) : null;
    const tokens = selectionTokens(state.selection, ctx, cell);
    if (tokens) for (const t of tokens) want.add(t);
    const positions = [];
    mine.forEach((t, p) => { if (want.has(t) || p === state.hover) positions.push(p); });
    sentence.mark(positions.length ? positions : null);
    if (state.image) image.mark(positions.length ? positions : null);
  }

  const tokenOf = (pos) => (state.detail ? decodeOptional(state.detail.token, "uint32")[pos] : undefined);
  // One "highlight:tokens" per animation frame at most: sweeping the pointer over tokens (or a
  // hover followed by a click) must not ask the scatter for several redraws in one frame.
  let pendingHighlight, highlightQueued = false;
  function publishHighlight(positions) {
    const toks = positions == null ? null : Uint32Array.from(positions.filter((p) => p != null).map(tokenOf));
    pendingHighlight = { tokens: toks && toks.length ? toks : null };
    if (highlightQueued) return;
    highlightQueued = true;
    requestAnimationFrame(() => {
      highlightQueued = false;
      if (!signal.aborted) bus.publish("highlight:tokens", pendingHighlight);
    });
  }

  const sentence = createSentenceView(views.sentence, {
    signal,
    onHover: (side, pos) => { if (!sentence.pinned) publishHighlight(pos == null ? null : [pos]); },
    onClick: (side, pos) => publishHighlight(pos == null ? null : [pos]),
    onToggleHide: (side, pos) => {
      const set = side === "q" ? state.hideQueries : state.hideKeys;
      if (set.has(pos)) set.delete(pos); else set.add(pos);
      recompute();
    },
  });
  // The heatmap tab shows the attention as weighted now and, beside it when the capture has value
  // vectors, the other weighting (raw next to ‖v‖-weighted, or the reverse when weighting is on).
  const capMain = h("figcaption", { text: "attention" });
  const capOther = h("figcaption", { text: "‖v‖-weighted" });
  const figMain = h("figure", {}, capMain), figOther = h("figure", { "data-name": "heat-other", hidden: true }, capOther);
  views.heatmap.append(h("div", { class: "qkv-heat-pair" }, figMain, figOther));
  const heatmap = createHeatmap(figMain, {
    signal,
    onHover: (i, j) => publishHighlight(i == null ? null : [i, j]),
  });
  const heatmapOther = createHeatmap(figOther, {
    signal, cls: "qkv-heat-other",
    onHover: (i, j) => publishHighlight(i == null ? null : [i, j]),
  });
  // What the heatmap shows for heads whose scores add a position term (ALiBi, relative buckets,
  // DeBERTa): the attention, or one of the two parts of the scores; and a caption on the head's
  // score function (the sink, the slope, the position effect).
  const modeSel = h("select", { class: "qkv-heat-mode", title: "what the heatmap shows", "data-name": "heat-mode" },
    h("option", { value: "attention", text: "attention" }),
    h("option", { value: "content", text: "content score c·q·k" }),
    h("option", { value: "position", text: "position term" }));
  modeSel.addEventListener("change", () => recompute(), { signal });
  const caption = h("div", { class: "qkv-family", "data-name": "family" });
  views.heatmap.prepend(h("div", { class: "qkv-heat-head" }, modeSel), caption);
  const image = createImageView(views.image, {
    signal,
    onHover: (pos) => publishHighlight(pos == null ? null : [pos]),
    onClick: (pos) => { publishHighlight([pos]); showImage(pos); },
  });
  const aggregate = createAggregateView(views.aggregate, { signal });

  function showTab(id) {
    state.tab = id;
    for (const [k, b] of Object.entries(tabs)) b.classList.toggle("qkv-active", k === id);
    for (const [k, v] of Object.entries(views)) v.hidden = k !== id || (!state.detail && k !== "aggregate");
    toolbar.hidden = !(id === "sentence" || id === "heatmap") || !state.detail;
    empty.hidden = !!state.detail || id === "aggregate";
    root.dataset.activeTab = id;
    if (id === "aggregate") loadAggregate();
  }

  function setModality(m) {
    state.modality = m;
    tabs.sentence.hidden = m === "image";
    tabs.image.hidden = m !== "image";
    special.hidden = m === "image";
    if (m === "image" && state.tab === "sentence") showTab("image");
    if (m !== "image" && state.tab === "image") showTab("sentence");
  }

  /** Recompute the renormalised weights, redraw, and tell the scatter's lines. */
  function recompute() {
    const d = state.detail;
    if (!d) return;
    const nq = d.nq ?? d.display.length, nk = d.nk ?? nq;
    const hid = hiddenSets(nq, decodeOptional(d.special, "uint8"), state);
    if (d.keySpecial) hid.keys = hiddenSets(nk, d.keySpecial, state).keys; // cross-attention: the encoder's tokens
    const norms = decodeOptional(d.value_norms);
    valued.input.disabled = !norms;
    valued.title = norms ? "" : "capture with values=True to weight by value norms";
    // Nothing hidden or weighted: show the reply's rows as they are. (Exact rows already sum to 1;
    // a static page's top-k rows do not, and re-normalising them would inflate every weight.)
    const weighted = state.valueWeighted && norms;
    state.weights = !hid.keys.size && !hid.queries.size && !weighted ? decodeOptional(d.raw) : renormalize(decodeOptional(d.raw), nq, nk, {
      hiddenKeys: hid.keys, hiddenQueries: hid.queries,
      keyWeights: weighted ? norms : null,
    });
    root.dataset.hiddenKeys = [...hid.keys].sort((a, b) => a - b).join(",");
    sentence.render(d, state.weights, hid);
    showHeatmap(d, nq, nk);
    // beside the heatmap, when the capture has value vectors: the other weighting (raw next to
    // ‖v‖-weighted, or the reverse when weighting is on); same rows and columns, same hiding
    figOther.hidden = !norms;
    if (norms) {
      const other = renormalize(decodeOptional(d.raw), nq, nk, {
        hiddenKeys: hid.keys, hiddenQueries: hid.queries, keyWeights: weighted ? null : norms,
      });
      capMain.textContent = weighted ? "‖v‖-weighted" : "attention";
      capOther.textContent = weighted ? "attention (not weighted)" : "‖v‖-weighted";
      heatmapOther.render(other, nq, nk, { size: 170 });
      root.dataset.otherWeights = weighted ? "raw" : "value";
    } else {
      capMain.textContent = "";
    }
    bus.publish("lines:weights", { seq: d.seq, layer: d.layer, head: d.head, weights: state.weights, tokens: decodeOptional(d.token, "uint32") });
  }

  /** The heatmap in its mode, with a sink column for sink heads, and the caption. */
  function showHeatmap(d, nq, nk) {
    const hasPosition = !!d.position;
    modeSel.hidden = !hasPosition;
    for (const o of modeSel.options) o.disabled = (o.value === "content" && !d.content) || (o.value === "position" && !hasPosition);
    if (modeSel.selectedOptions[0]?.disabled) modeSel.value = "attention";
    const mode = hasPosition ? modeSel.value : "attention";
    const kLabels = d.keyDisplay ?? d.display;
    let m = mode === "content" ? d.content : mode === "position" ? d.position : state.weights, cols = nk;
    if (mode !== "attention") m = scoresForHeat(m); // scores may be negative: shown relative to their minimum
    let labels = kLabels;
    if (mode === "attention" && d.sink) { // the sink as one more column: what each row gave to nothing
      const w = new Float32Array(nq * (nk + 1));
      for (let i = 0; i < nq; i++) { w.set(m.subarray(i * nk, (i + 1) * nk), i * (nk + 1)); w[i * (nk + 1) + nk] = d.sink[i]; }
      m = w; cols = nk + 1; labels = [...kLabels, "∅ sink"];
    }
    const paired = !!decodeOptional(d.value_norms); // the value-weighted heatmap stands beside it
    heatmap.render(m, nq, cols, { qLabels: d.display, kLabels: labels, ...(paired ? { size: 170 } : {}) });
    caption.textContent = familyCaption(d);
    root.dataset.heatMode = mode;
    root.dataset.family = d.family || "";
  }

  /** Say why a request failed; a page without a kernel (static export) is expected, not an error. */
  function explain(err, what) {
    const msg = String(err?.message ?? err);
    const offline = /not available in a static page/.test(msg);
    title.textContent = offline
      ? "This page has no Python kernel and does not embed this view (open the notebook)."
      : `could not load ${what}: ${msg}`;
    title.classList.toggle("qkv-muted", offline);
  }

  // The sentence, heatmap and image views come from one sequence's attention (with `detail`:
  // value norms, the patch grid, pixels), computed here (detail.js); only the aggregate, which
  // spans every sequence, is asked for as it is shown.
  async function loadSequence() {
    const ticket = ++state.request;
    root.dataset.loading = "1";
    try {
      const req = { kind: "attention", layer: state.layer, head: state.head, seq: state.seq, detail: true, ...(attn ? { attn } : {}) };
      const reply = await ctx.fetchDetail(req);
      if (ticket !== state.request || signal.aborted) return;
      if (!reply || reply.error) throw new Error(reply?.error ?? "no reply");
      const d = sequenceDetail(reply, getTokens(ctx.model), reply.row ? "image" : "text", streams);
      if (!state.detail || state.detail.seq !== d.seq) { state.hideKeys.clear(); state.hideQueries.clear(); }
      state.detail = d;
      title.textContent = `layer ${d.layer} head ${d.head} · sequence ${d.seq} (${d.display.length} tokens)`;
      title.classList.remove("qkv-muted");
      setModality(d.modality);
      recompute();
      showTab(state.tab);
      state.hover = null;
      showMarks();
      if (d.modality === "image") {
        const pos = state.pos ?? d.token.indexOf(state.token);
        showImage(pos >= 0 ? pos : 0);
      }
    } catch (err) {
      if (ticket === state.request) explain(err, "the sequence");
    } finally {
      if (ticket === state.request) root.dataset.loading = "0";
    }
  }

  /** The image view of patch `pos` of the loaded image, seen as state.kind ("query" | "key"). */
  function showImage(pos) {
    try {
      state.image = imageDetail(state.detail, pos, state.kind);
    } catch (err) {
      explain(err, "the image");
      return;
    }
    image.render(state.image);
    root.qkvImage = state.image; // for tests (not an API): the numbers the image view draws
    root.dataset.imagePatch = String(pos);
  }

  async function loadAggregate() {
    if (state.layer == null) return;
    const key = `${state.layer}/${state.head}`;
    let d = state.aggregates.get(key);
    if (!d) {
      root.dataset.loading = "1";
      try {
        d = await ctx.fetchDetail({ kind: "aggregate", layer: state.layer, head: state.head });
        if (!d || d.error) throw new Error(d?.error ?? "no reply");
      } catch (err) {
        explain(err, "the aggregate");
        return;
      } finally {
        root.dataset.loading = "0";
      }
      if (signal.aborted) return;
      state.aggregates.set(key, d);
    }
    if (`${state.layer}/${state.head}` === key) aggregate.render(d);
  }

  // ---- the widget's events ----------------------------------------------------------------
  const subs = [];
  // bus.subscribe returns a token for bus.unsubscribe(token) (pub-sub-es)
  const on = (ev, fn) => { subs.push(bus.subscribe(ev, fn)); };
  on("point:click", (p) => {
    if (!p) return;
    const cell = ctx.getPoints?.()?.cell;
    state.clicked = { token: p.token, point: cell != null && cell >= 0 && meta ? cell * 2 * meta.n_tokens + p.point : null };
    state.layer = p.layer ?? state.layer; state.head = p.head ?? state.head;
    state.seq = p.seq; state.token = p.token; state.pos = p.pos; state.kind = p.kind === 1 || p.kind === "key" ? "key" : "query";
    loadSequence();
    if (state.tab === "aggregate") loadAggregate();
  });
  on("point:hover", (p) => {
    const d = state.detail;
    if (!d) return;
    const pos = p && p.seq === d.seq ? decodeOptional(d.token, "uint32").indexOf(p.token) : -1;
    state.hover = pos >= 0 ? pos : null;
    showMarks();
    heatmap.mark(pos >= 0 ? pos : null, pos >= 0 ? pos : null);
  });
  on("selection", (s) => {
    state.selection = s;
    // a lasso, a clear or another point replaced the click: its token is no longer marked
    const pts = s?.points ? decodeOptional(s.points, "uint32") : null;
    if (state.clicked && !(pts && pts.length === 1 && pts[0] === state.clicked.point)) state.clicked = null;
    showMarks();
  });
  // the focused head can change from Python (viz.focus) or the arrow keys: follow it
  const onHead = () => {
    const layer = ctx.model?.get?.("layer"), head = ctx.model?.get?.("head");
    if (layer == null || head == null || (layer === state.layer && head === state.head)) return;
    state.layer = layer; state.head = head;
    showMarks(); // the selection's marks belong to the head they were made in
    if (state.seq != null) loadSequence();
    if (state.tab === "aggregate") loadAggregate();
  };
  ctx.model?.on?.("change:layer", onHead);
  ctx.model?.on?.("change:head", onHead);

  showTab("sentence");
  // Offer only the tabs of this capture's modality from the start (not only after the first reply).
  const metaWire = ctx.model?.get?.("_meta");
  const modality = metaWire?.modality ?? (metaWire?.has_images === true ? "image" : metaWire?.has_images === false ? "text" : null);
  if (modality) setModality(modality);
  signal.addEventListener("abort", () => {
    for (const token of subs) bus.unsubscribe(token);
    ctx.model?.off?.("change:layer", onHead);
    ctx.model?.off?.("change:head", onHead);
    root.remove();
  });
  const cleanup = () => ac.abort();
  // tests and the widget may want to drive the panel directly
  cleanup.state = state;
  cleanup.views = { sentence, heatmap, heatmapOther, image, aggregate };
  cleanup.showTab = showTab;
  return cleanup;
}

/**
 * Global token rows of a "selection" event: its `tokens`, or its global `points` (cell·2n + local,
 * local = token for queries, n + token for keys; see js/src/bus.js) mapped with getPoints().nTokens,
 * only those of `cell` when it is given (the head the panel shows).
 */
function selectionTokens(s, ctx, cell = null) {
  if (!s) return null;
  if (s.tokens) return decodeOptional(s.tokens, "uint32");
  const pts = decodeOptional(s.points, "uint32");
  const n = ctx.getPoints?.()?.nTokens;
  if (!pts || !n) return null;
  const per = 2 * n, inCell = cell == null || cell < 0 ? pts : pts.filter((p) => Math.floor(p / per) === cell);
  return Uint32Array.from(inCell, (p) => (p % per) % n);
}
