// The tooltip that follows the pointer over the stage: a point's token in its sentence (or, for
// images, the patch itself), or the name of the head under the pointer on the matrix.
import { h } from "../ui/dom.js";

const CONTEXT = 30; // tokens shown either side of the hovered one

export function createTooltip(ctx) {
  const { meta, tokens, dom, on } = ctx;
  const el = h("div", { class: "qk-tooltip", hidden: true });
  let mouse = [0, 0];

  on(dom.stage, "mousemove", (e) => {
    const r = dom.root.getBoundingClientRect();
    mouse = [e.clientX - r.left, e.clientY - r.top];
    if (ctx.state.mode === "matrix") ctx.matrix.hover(e);
    else if (!el.hidden) place();
  });
  on(dom.stage, "mouseleave", () => { el.hidden = true; ctx.matrix.hover(null); });

  function place() {
    el.style.left = `${mouse[0] + 14}px`;
    el.style.top = `${mouse[1] + 14}px`;
  }
  function show() {
    el.hidden = false;
    place();
  }

  /** The point `local` (index within the focused head) with its token in context. */
  function showPoint(local) {
    const info = ctx.pointInfo(local);
    const t = info.token, first = t - info.pos;
    el.replaceChildren(
      h("b", { class: info.kind === "query" ? "qk-q" : "qk-k" }, tokens.display[t] ?? ""),
      ` (${info.kind}, pos ${info.pos} of ${tokens.seqLen[t] - 1}, ${meta.has_images ? "image" : "seq"} ${info.seq})`);
    if (meta.has_images) {
      // images: the patch itself instead of a "sentence" of patch names
      const thumb = ctx.thumbnail(t, 64);
      if (thumb) { thumb.className = "qk-tip-thumb"; el.append(thumb); }
      show();
      return;
    }
    const sentence = h("div", { class: "qk-sentence" });
    const len = tokens.seqLen[t];
    const lo = Math.max(0, info.pos - CONTEXT), hi = Math.min(len, info.pos + CONTEXT + 1);
    if (lo > 0) sentence.append("… ");
    for (let p = lo; p < hi; p++) {
      const word = tokens.display[first + p] ?? "";
      sentence.append(p === info.pos ? h("mark", {}, word) : word, " ");
    }
    if (hi < len) sentence.append("…");
    el.append(sentence);
    show();
  }

  /** Plain text (the matrix's head names). */
  function showText(...parts) {
    el.replaceChildren(...parts);
    show();
  }

  return { el, showPoint, showText, hide: () => { el.hidden = true; } };
}
