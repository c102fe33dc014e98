// The toolbar: navigation (back to the matrix, layer/head, arrow steps), colour field, size by
// norm, thumbnails, token search, lasso and clear, attention-line settings. Controls write traits
// through sync.js; the `show*` functions put trait values back into the controls.
import { h } from "../ui/dom.js";
import { setTrait, setTraits } from "../sync.js";

/** How the attention selector names the attentions of an encoder-decoder model. */
const ATTN_NAMES = { encoder: "encoder self", decoder: "decoder self", cross: "cross (decoder → encoder)" };

const FIELDS = [
  ["kind", "query / key"], ["position", "position (normalised)"], ["position_mod", "position mod n"],
  ["norm", "vector norm"], ["sequence", "sequence"], ["category", "token category"], ["length", "sequence length"],
];
const SEARCH_DEBOUNCE_MS = 150;
const ARROW_KEYS = { ArrowLeft: "←", ArrowRight: "→", ArrowUp: "↑", ArrowDown: "↓" };

export function createToolbar(ctx) {
  const { model, meta, columns, on } = ctx;
  const back = h("button", { class: "qk-back", title: "back to all heads" }, "◀ all heads");
  // "layer –" / "head –": what the dropdowns say on the matrix, where no head is focused
  const none = (label) => h("option", { value: "", disabled: true }, `${label} –`);
  const layerSel = h("select", { class: "qk-layer", title: "layer" }, none("layer"),
    ...meta.layers.map((l) => h("option", { value: String(l) }, `layer ${l}`)));
  const headSel = h("select", { class: "qk-head", title: "head" }, none("head"),
    ...meta.heads.map((x) => h("option", { value: String(x) }, `head ${x}`)));
  const arrows = ["←", "→", "↑", "↓"].map((a) => h("button", { class: "qk-step", title: "step head/layer (arrow keys)", dataset: { dir: a } }, a));
  const fitBtn = h("button", { class: "qk-fit", title: "zoom the matrix back to every head" }, "fit");
  const colorSel = h("select", { class: "qk-color", title: "colour by" },
    ...FIELDS.map(([v, label]) => h("option", { value: v }, label)),
    ...(columns.mean_r ? [h("option", { value: "patch_color" }, "patch colour")] : []),
    ...(meta.has_values ? [h("option", { value: "value_norm" }, "value norm ‖v‖")] : []),
    ...Object.keys(columns).map((c) => h("option", { value: c }, c)));
  const modInput = h("input", { class: "qk-mod", type: "number", min: "1", title: "n of position mod n" });
  const sizeBox = h("input", { class: "qk-size", type: "checkbox" });
  const searchBox = h("input", { class: "qk-search", type: "search", placeholder: "search tokens" });
  const regexBox = h("input", { class: "qk-regex", type: "checkbox" });
  // a slot of fixed width (style.js): the count appearing while typing never re-wraps the toolbar,
  // which would move the canvas under the pointer
  const count = h("span", { class: "qk-count" });
  const lassoBtn = h("button", { class: "qk-lasso", title: "lasso select (or shift-drag)", "aria-pressed": "false" }, "lasso");
  const clearBtn = h("button", { class: "qk-clear", title: "clear selection" }, "clear");
  const thumbBox = h("input", { class: "qk-thumbs", type: "checkbox", checked: true });
  const kInput = h("input", { class: "qk-k", type: "number", min: "1", title: "lines per point (top-k)" });
  const thrInput = h("input", { class: "qk-threshold", type: "number", min: "0", max: "1", step: "0.01", title: "minimum attention weight of a line" });
  // Encoder-decoder embeddings: which attention the grid shows (one grid of layers x heads each).
  const attnSel = h("select", { class: "qk-attn", title: "attention" },
    ...meta.attns.map((a) => h("option", { value: a.name }, ATTN_NAMES[a.name] ?? a.name)));
  attnSel.value = meta.attn;
  const nav = h("span", { class: "qk-nav" }, ...(meta.attns.length > 1 ? [attnSel] : []), back, layerSel, headSel, ...arrows, fitBtn);
  const el = h("div", { class: "qk-toolbar" },
    nav, h("span", { class: "qk-sep" }),
    h("label", {}, "colour", colorSel), modInput, h("label", {}, sizeBox, "size by norm"),
    ...(meta.has_images ? [h("label", { title: "patch thumbnails over the points (off: coloured dots)" }, thumbBox, "thumbnails")] : []),
    h("span", { class: "qk-sep" }),
    searchBox, h("label", {}, regexBox, "regex"), count, h("span", { class: "qk-sep" }),
    lassoBtn, clearBtn, h("span", { class: "qk-group" }, h("label", {}, "lines k", kInput), h("label", {}, "≥", thrInput)));

  // ---- controls -> traits ----------------------------------------------------------------------
  const focus = (layer, head) => setTraits(model, { layer, head });
  function step(dir) {
    if (!ctx.focused()) return;
    let li = meta.layers.indexOf(model.get("layer")), hi = meta.heads.indexOf(model.get("head"));
    if (dir === "←") hi -= 1; else if (dir === "→") hi += 1; else if (dir === "↑") li -= 1; else if (dir === "↓") li += 1;
    if (li < 0 || hi < 0 || li >= meta.layers.length || hi >= meta.heads.length) return;
    focus(meta.layers[li], meta.heads[hi]);
  }
  on(ctx.dom.root, "keydown", (e) => {
    if (ARROW_KEYS[e.key] && ctx.focused() && e.target === ctx.dom.root) { e.preventDefault(); step(ARROW_KEYS[e.key]); }
  });
  for (const a of arrows) on(a, "click", () => step(a.dataset.dir));
  on(back, "click", () => focus(null, null));
  on(fitBtn, "click", () => ctx.scatter.reset());
  on(attnSel, "change", () => {
    const layer = null, head = null, attn = attnSel.value; // another attention: its matrix
    setTraits(model, { layer, head, attn });
  });
  on(layerSel, "change", () => focus(Number(layerSel.value), ctx.focused() ? model.get("head") : meta.heads[0]));
  on(headSel, "change", () => focus(ctx.focused() ? model.get("layer") : meta.layers[0], Number(headSel.value)));
  on(colorSel, "change", () => setTrait(model, "color", colorSel.value));
  on(modInput, "change", () => setTrait(model, "color_mod", Math.max(1, Number(modInput.value) | 0)));
  on(thumbBox, "change", () => ctx.thumbs.publish());
  on(sizeBox, "change", () => setTrait(model, "size_by_norm", sizeBox.checked));
  let searchTimer = 0;
  on(searchBox, "input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setTrait(model, "search_query", searchBox.value), SEARCH_DEBOUNCE_MS);
  });
  on(regexBox, "change", () => setTrait(model, "search_regex", regexBox.checked));
  on(lassoBtn, "click", () => {
    const lasso = !lassoOn();
    lassoBtn.setAttribute("aria-pressed", String(lasso));
    ctx.scatter.set({ mouseMode: lasso ? "lasso" : "panZoom" });
  });
  on(clearBtn, "click", () => { ctx.scatter.deselect(); ctx.selection.send([]); });
  on(kInput, "change", () => setTrait(model, "lines_k", Math.max(1, Number(kInput.value) | 0)));
  on(thrInput, "change", () => setTrait(model, "lines_threshold", Math.min(1, Math.max(0, Number(thrInput.value) || 0))));

  // ---- traits -> controls ----------------------------------------------------------------------
  const lassoOn = () => lassoBtn.getAttribute("aria-pressed") === "true";
  return {
    el, focus,
    lassoOn,
    thumbnailsOn: () => thumbBox.checked,
    /** The colour field, its n and size by norm. */
    showColor() {
      const field = model.get("color");
      colorSel.value = field;
      modInput.value = String(model.get("color_mod"));
      modInput.hidden = field !== "position_mod";
      sizeBox.checked = Boolean(model.get("size_by_norm"));
    },
    /** The search box (unless it already says so), the regex box and the match count. */
    showSearch(query, matches) {
      if (searchBox.value !== query) searchBox.value = query;
      regexBox.checked = Boolean(model.get("search_regex"));
      let c = 0;
      if (matches) for (const v of matches) c += v;
      count.textContent = matches ? `${c} match${c === 1 ? "" : "es"}` : "";
      return matches ? c : null;
    },
    showLines() {
      kInput.value = String(model.get("lines_k"));
      thrInput.value = String(model.get("lines_threshold"));
    },
    /** Navigation for a mode: back and the arrows only in the single view. */
    showMode(mode) {
      nav.dataset.mode = mode;
      back.disabled = mode === "matrix";
      for (const a of arrows) a.disabled = mode === "matrix";
      fitBtn.hidden = mode !== "matrix" || meta.dim === 3; // the 3-D matrix turns instead of zooming
      layerSel.value = mode === "single" ? String(model.get("layer")) : "";
      headSel.value = mode === "single" ? String(model.get("head")) : "";
    },
  };
}
