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
import { createHeatmap } from "./heatmap.js";
import { createImageView } from "./image.js";
import { createSentenceView } from "./sentence.js";
import { checkbox, h } from "../ui/dom.js";
import { injectStyle } from "../ui/style.js";
import { decodeOptional } from "../wire/codec.js";

/**
 * Mount the side panel into `container`.
 * @param {HTMLElement} container
 * @param {{model: any, bus: any, fetchDetail(req: object): Promise<object>, getPoints?(): any}} ctx
 * @returns {() => void} cleanup
 */
export function mountPanel(container, ctx) {
  const ac = new AbortController();
  const { signal } = ac;
  const { bus } = ctx;
  injectStyle(container.getRootNode?.() ?? document);
  const state = {
    layer: null, head: null, seq: null, token: null, kind: "query",
    detail: null, image: null, weights: null, modality: null,
    hideKeys: new Set(), hideQueries: new Set(),
    hideSpecial: false, hideFirst: false, valueWeighted: false,
    tab: "sentence", request: 0, aggregates: new Map(),
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
  const image = createImageView(views.image, {
    signal,
    onHover: (pos) => publishHighlight(pos == null ? null : [pos]),
    onClick: (pos) => { publishHighlight([pos]); loadImage(pos); },
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
    const n = d.display.length;
    const hid = hiddenSets(n, decodeOptional(d.special, "uint8"), state);
    const norms = decodeOptional(d.value_norms);
    valued.input.disabled = !norms;
    valued.title = norms ? "" : "capture with values=True to weight by value norms";
    // Nothing hidden or weighted: show the reply's rows as they are. (Exact rows already sum to 1;
    // a static page's top-k rows do not, and re-normalising them would inflate every weight.)
    const weighted = state.valueWeighted && norms;
    state.weights = !hid.keys.size && !hid.queries.size && !weighted ? decodeOptional(d.raw) : renormalize(decodeOptional(d.raw), n, n, {
      hiddenKeys: hid.keys, hiddenQueries: hid.queries,
      keyWeights: weighted ? norms : null,
    });
    root.dataset.hiddenKeys = [...hid.keys].sort((a, b) => a - b).join(",");
    sentence.render(d, state.weights, hid);
    figOther.hidden = !norms;
    if (norms) {
      const other = renormalize(decodeOptional(d.raw), n, n, {
        hiddenKeys: hid.keys, hiddenQueries: hid.queries, keyWeights: weighted ? null : norms,
      });
      capMain.textContent = weighted ? "‖v‖-weighted" : "attention";
      capOther.textContent = weighted ? "attention (not weighted)" : "‖v‖-weighted";
      heatmap.render(state.weights, n, n, { qLabels: d.display, size: 170 });
      heatmapOther.render(other, n, n, { size: 170 });
      root.dataset.otherWeights = weighted ? "raw" : "value";
    } else {
      capMain.textContent = "";
      heatmap.render(state.weights, n, n, { qLabels: d.display });
    }
    bus.publish("lines:weights", { seq: d.seq, layer: d.layer, head: d.head, weights: state.weights, tokens: decodeOptional(d.token, "uint32") });
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

  async function loadSequence() {
    const ticket = ++state.request;
    root.dataset.loading = "1";
    try {
      const d = await ctx.fetchDetail({ kind: "sequence", layer: state.layer, head: state.head, seq: state.seq });
      if (ticket !== state.request || signal.aborted) return;
      if (!d || d.error) throw new Error(d?.error ?? "no reply");
      if (!state.detail || state.detail.seq !== d.seq) { state.hideKeys.clear(); state.hideQueries.clear(); }
      state.detail = d;
      title.textContent = `layer ${d.layer} head ${d.head} · sequence ${d.seq} (${d.display.length} tokens)`;
      title.classList.remove("qkv-muted");
      setModality(d.modality ?? "text");
      recompute();
      showTab(state.tab);
      if (d.modality === "image") {
        const pos = state.pos ?? decodeOptional(d.token, "uint32").indexOf(state.token);
        await loadImage(pos >= 0 ? pos : 0, ticket);
      }
    } catch (err) {
      if (ticket === state.request) explain(err, "the sequence");
    } finally {
      if (ticket === state.request) root.dataset.loading = "0";
    }
  }

  async function loadImage(pos, ticket = state.request) {
    root.dataset.loading = "1";
    let d;
    try {
      d = await ctx.fetchDetail({
        kind: "image", layer: state.layer, head: state.head, seq: state.seq, patch: pos, point_kind: state.kind,
      });
      if (!d || d.error) throw new Error(d?.error ?? "no reply");
    } catch (err) {
      if (ticket === state.request) { explain(err, "the image"); root.dataset.loading = "0"; }
      return;
    }
    if (ticket !== state.request || signal.aborted) return;
    state.image = d;
    image.render(d);
    root.dataset.loading = "0";
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
    state.layer = p.layer ?? state.layer; state.head = p.head ?? state.head;
    state.seq = p.seq; state.token = p.token; state.pos = p.pos; state.kind = p.kind === 1 || p.kind === "key" ? "key" : "query";
    loadSequence();
    if (state.tab === "aggregate") loadAggregate();
  });
  on("point:hover", (p) => {
    const d = state.detail;
    if (!d) return;
    const pos = p && p.seq === d.seq ? decodeOptional(d.token, "uint32").indexOf(p.token) : -1;
    sentence.mark(pos >= 0 ? [pos] : null);
    if (state.image) image.mark(pos >= 0 ? [pos] : null);
    heatmap.mark(pos >= 0 ? pos : null, pos >= 0 ? pos : null);
  });
  on("selection", (s) => {
    const d = state.detail;
    if (!d) return;
    const tokens = selectionTokens(s, ctx);
    const mine = decodeOptional(d.token, "uint32"), positions = [];
    if (tokens) { const set = new Set(tokens); mine.forEach((t, p) => { if (set.has(t)) positions.push(p); }); }
    sentence.mark(positions.length ? positions : null);
    if (state.image) image.mark(positions.length ? positions : null);
  });
  // the focused head can change from Python (viz.focus) or the arrow keys: follow it
  const onHead = () => {
    const layer = ctx.model?.get?.("layer"), head = ctx.model?.get?.("head");
    if (layer == null || head == null || (layer === state.layer && head === state.head)) return;
    state.layer = layer; state.head = head;
    if (state.seq != null) loadSequence();
    if (state.tab === "aggregate") loadAggregate();
  };
  ctx.model?.on?.("change:layer", onHead);
  ctx.model?.on?.("change:head", onHead);

  showTab("sentence");
  // Offer only the tabs of this capture's modality from the start (not only after the first reply).
  const meta = ctx.model?.get?.("_meta");
  const modality = meta?.modality ?? (meta?.has_images === true ? "image" : meta?.has_images === false ? "text" : null);
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
 * local = token for queries, n + token for keys; see js/src/bus.js) mapped with getPoints().nTokens.
 */
function selectionTokens(s, ctx) {
  if (!s) return null;
  if (s.tokens) return decodeOptional(s.tokens, "uint32");
  const pts = decodeOptional(s.points, "uint32");
  const n = ctx.getPoints?.()?.nTokens;
  if (!pts || !n) return null;
  return Uint32Array.from(pts, (p) => (p % (2 * n)) % n);
}
