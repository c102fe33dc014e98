// DOM helpers shared by the canvas and the side panel: the one `h()`, a labelled checkbox,
// HiDPI canvases and pointer coordinates.

/**
 * Create an element. Props: `class`, `text` (textContent), `dataset` (object); a string value is
 * set as an attribute (`style`, `title`, `data-*`, `aria-*`, ...), any other value as a property
 * (`checked`, `hidden`, `width`, ...); null and false are skipped. Null children are skipped.
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (typeof v === "string" || !(k in e)) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

/** A labelled checkbox; `onChange(checked)`; returns the label (input at `.input`). */
export function checkbox(label, checked, onChange, signal, name) {
  const input = h("input", { type: "checkbox", checked, "data-name": name });
  input.addEventListener("change", () => onChange(input.checked), { signal });
  const l = h("label", { class: "qkv-check" }, input, " " + label);
  l.input = input;
  return l;
}

/** Size a canvas for the device pixel ratio; returns its 2-D context scaled to CSS pixels. */
export function fitCanvas(canvas, width, height) {
  const dpr = globalThis.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * dpr));
  canvas.height = Math.max(1, Math.round(height * dpr));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Mouse position in CSS pixels relative to an element's content box. */
export function localXY(ev, el) {
  const r = el.getBoundingClientRect();
  return [ev.clientX - r.left - el.clientLeft, ev.clientY - r.top - el.clientTop];
}

/** An attention weight in 3 significant places for tight labels (".123", "1.00"). */
export const fmtWeight = (w) => (w >= 0.995 ? w.toFixed(2) : w.toFixed(3).replace(/^0/, ""));
