// Small helpers shared by the side-panel views: typed-array coercion, DOM creation, colours.

/** Query and key colours (AttentionViz: greens for queries, pinks for keys). */
export const QUERY_RGB = [95, 185, 108];
export const KEY_RGB = [227, 55, 143];
export const rgb = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

const CTORS = {
  float32: Float32Array, uint32: Uint32Array, int32: Int32Array, uint8: Uint8Array,
  int16: Int16Array, float64: Float64Array,
};

/**
 * Coerce a payload field to a flat typed array.
 * Accepts a typed array, a plain array, or a wire dict {view|data|buffer, dtype, shape}.
 * @returns {ArrayBufferView|null}
 */
export function typed(x, Ctor = Float32Array) {
  if (x == null) return null;
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) return x;
  if (Array.isArray(x)) return Ctor.from(x.flat(Infinity));
  const view = x.view ?? x.data ?? x.buffer ?? x.array;
  if (view != null) {
    const C = CTORS[x.dtype] ?? Ctor;
    if (ArrayBuffer.isView(view) && !(view instanceof DataView) && view instanceof C) return view;
    const buf = view instanceof ArrayBuffer ? view : view.buffer;
    const off = view instanceof ArrayBuffer ? 0 : view.byteOffset;
    const len = (view instanceof ArrayBuffer ? view.byteLength : view.byteLength) / C.BYTES_PER_ELEMENT;
    return new C(buf, off, len);
  }
  return null;
}

/** Create an element with a class, attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
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

// A compact perceptual ramp (viridis, 9 stops) for heatmaps: t in [0, 1] -> [r, g, b].
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
export function ramp(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export const fmt = (w) => (w >= 0.995 ? w.toFixed(2) : w.toFixed(3).replace(/^0/, ""));

/** Mouse position in CSS pixels relative to an element's content box. */
export function localXY(ev, el) {
  const r = el.getBoundingClientRect();
  return [ev.clientX - r.left - el.clientLeft, ev.clientY - r.top - el.clientTop];
}
