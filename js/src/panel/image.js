// Image view (ViT): the image of the clicked patch with its patch grid and the patch outlined, the
// head's attention from that patch as a darkening overlay (AttentionViz's formula: `strength`, from
// detail.js imageDetail), CLS attention beside it, and optional arrows to each patch's argmax.
import { fitCanvas, fmtWeight as fmt, h, localXY } from "../ui/dom.js";
import { HIGHLIGHT, KEY_RGB, QUERY_RGB, hexToRgb, rgb, viridis } from "../ui/palette.js";
import { decodeOptional } from "../wire/codec.js";

const SIZE = 224;        // CSS px of the longer image side
const ARROW_MIN = 0.05;  // arrows only for patches whose top weight reaches this (AttentionViz)

/**
 * @param {HTMLElement} root
 * @param {{signal: AbortSignal, onHover(pos: number|null): void, onClick(pos: number): void}} hooks
 */
export function createImageView(root, hooks) {
  const { signal } = hooks;
  const base = h("canvas", { class: "qkv-image-base" });
  const overlay = h("canvas", { class: "qkv-image-overlay" });
  const clsBox = h("div", { class: "qkv-cls-box" });
  const clsMap = h("canvas", { class: "qkv-cls-map" });
  const status = h("div", { class: "qkv-status", text: " " });
  const arrowsBox = h("input", { type: "checkbox", "data-name": "arrows" });
  const el = h("div", { class: "qkv-image" },
    h("div", { class: "qkv-image-row" },
      h("figure", {}, base, h("figcaption", { text: "image · clicked patch" })),
      h("figure", {}, overlay, h("figcaption", { text: "attention from the patch" })),
      h("figure", { class: "qkv-cls" }, clsBox, clsMap, h("figcaption", { text: "CLS query's attention" }))),
    h("label", { class: "qkv-check" }, arrowsBox, " arrows to each patch's most-attended patch"),
    status);
  root.append(el);
  arrowsBox.addEventListener("change", () => paint(), { signal });

  let d = null, geom = null, pixels = null, marked = new Set();

  function render(detail) {
    d = detail;
    if (!d) { geom = null; return; }
    const [R, C] = d.grid;
    const [ih, iw] = d.image_size ?? [R * 14, C * 14];
    const scale = SIZE / Math.max(ih, iw);
    geom = { R, C, w: Math.round(iw * scale), h: Math.round(ih * scale) };
    geom.pw = geom.w / C; geom.ph = geom.h / R;
    pixels = null;
    const img = decodeOptional(d.image, "uint8");
    if (img) {
      // uint8 [h, w, 3] -> an RGBA canvas at native size, drawn scaled
      const c = document.createElement("canvas"); c.width = iw; c.height = ih;
      const id = new ImageData(iw, ih);
      for (let p = 0, q = 0; p < iw * ih; p++, q += 3) {
        id.data[4 * p] = img[q]; id.data[4 * p + 1] = img[q + 1]; id.data[4 * p + 2] = img[q + 2]; id.data[4 * p + 3] = 255;
      }
      c.getContext("2d").putImageData(id, 0, 0);
      pixels = c;
    }
    paint();
  }

  function drawImage(ctx) {
    if (pixels) { ctx.imageSmoothingEnabled = true; ctx.drawImage(pixels, 0, 0, geom.w, geom.h); }
    else { ctx.fillStyle = "#bbb"; ctx.fillRect(0, 0, geom.w, geom.h); }
  }
  function grid(ctx) {
    ctx.strokeStyle = "rgba(255,255,255,0.35)"; ctx.lineWidth = 0.5;
    ctx.beginPath();
    for (let c = 1; c < geom.C; c++) { ctx.moveTo(c * geom.pw, 0); ctx.lineTo(c * geom.pw, geom.h); }
    for (let r = 1; r < geom.R; r++) { ctx.moveTo(0, r * geom.ph); ctx.lineTo(geom.w, r * geom.ph); }
    ctx.stroke();
  }
  const center = (r, c) => [(c + 0.5) * geom.pw, (r + 0.5) * geom.ph];

  function paint() {
    if (!d || !geom) return;
    const { R, C, pw, ph } = geom;
    const col = d.kind === "key" ? KEY_RGB : QUERY_RGB;
    // base: image, grid, clicked patch outlined
    const b = fitCanvas(base, geom.w, geom.h);
    drawImage(b); grid(b);
    for (const p of marked) outline(b, p, HIGHLIGHT, 1.5);
    if (d.patch_row >= 0) { b.strokeStyle = rgb(col); b.lineWidth = 2.5; b.strokeRect(d.patch_col * pw + 1, d.patch_row * ph + 1, pw - 2, ph - 2); }
    // overlay: pixels × strength, as black with alpha 1 - strength (exact multiply)
    const o = fitCanvas(overlay, geom.w, geom.h);
    drawImage(o);
    const strength = decodeOptional(d.strength);
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
      o.fillStyle = `rgba(0,0,0,${1 - strength[r * C + c]})`;
      o.fillRect(c * pw, r * ph, pw, ph);
    }
    grid(o);
    if (d.patch_row >= 0) { o.strokeStyle = rgb(col); o.lineWidth = 2; o.strokeRect(d.patch_col * pw + 1, d.patch_row * ph + 1, pw - 2, ph - 2); }
    for (const p of marked) outline(o, p, HIGHLIGHT, 1.5);
    if (arrowsBox.checked) arrows(o);
    // CLS: the clicked patch's weight on CLS as a grey box, and the CLS query's map
    const heat = decodeOptional(d.heat), special = decodeOptional(d.to_special);
    let top = 0;
    for (const v of heat) top = Math.max(top, v);
    const toCls = special && special.length ? special[0] : 0;
    top = Math.max(top, toCls) || 1;
    const g = Math.round(255 * Math.sqrt(toCls / top));
    clsBox.style.background = `rgb(${g},${g},${g})`;
    clsBox.style.color = g > 128 ? "#000" : "#fff";
    clsBox.textContent = `CLS ${fmt(toCls)}`;
    clsBox.dataset.value = String(toCls);
    const cm = fitCanvas(clsMap, 96, Math.round(96 * R / C));
    const cls = decodeOptional(d.cls_heat);
    let cmax = 0;
    for (const v of cls) cmax = Math.max(cmax, v);
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
      const t = viridis(Math.sqrt(cls[r * C + c] / (cmax || 1)));
      cm.fillStyle = `rgb(${t[0]},${t[1]},${t[2]})`;
      cm.fillRect(c * 96 / C, r * 96 / C, 96 / C + 0.5, 96 / C + 0.5);
    }
    status.textContent = `${d.kind} patch ${d.patch_row >= 0 ? `${d.patch_row},${d.patch_col}` : "CLS"} · layer ${d.layer} head ${d.head}`;
  }

  function outline(ctx, pos, colour, width) {
    const row = decodeOptional(d.row, "int32"), colA = decodeOptional(d.col, "int32");
    if (!row || row[pos] < 0) return;
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    ctx.strokeRect(colA[pos] * geom.pw + 1, row[pos] * geom.ph + 1, geom.pw - 2, geom.ph - 2);
  }

  function arrows(ctx) {
    const row = decodeOptional(d.row, "int32"), colA = decodeOptional(d.col, "int32");
    const arg = decodeOptional(d.argmax, "int32"), w = decodeOptional(d.argmax_weight);
    ctx.strokeStyle = ctx.fillStyle = rgb(hexToRgb(HIGHLIGHT), 0.9); ctx.lineWidth = 1;
    for (let p = 0; p < row.length; p++) {
      if (row[p] < 0 || w[p] < ARROW_MIN) continue;
      const [x0, y0] = center(row[p], colA[p]);
      const t = arg[p];
      if (t === p) { ctx.beginPath(); ctx.arc(x0, y0, geom.pw * 0.25, 0, 2 * Math.PI); ctx.stroke(); continue; }
      if (row[t] < 0) { ctx.fillRect(x0 - 2, y0 - 2, 4, 4); continue; } // attends to CLS most
      const [x1, y1] = center(row[t], colA[t]);
      const a = Math.atan2(y1 - y0, x1 - x0), L = 4;
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - L * Math.cos(a - 0.5), y1 - L * Math.sin(a - 0.5));
      ctx.lineTo(x1 - L * Math.cos(a + 0.5), y1 - L * Math.sin(a + 0.5)); ctx.fill();
    }
  }

  function posAt(ev, canvas) {
    if (!d || !geom) return null;
    const [x, y] = localXY(ev, canvas);
    const c = Math.floor(x / geom.pw), r = Math.floor(y / geom.ph);
    if (r < 0 || r >= geom.R || c < 0 || c >= geom.C) return null;
    const row = decodeOptional(d.row, "int32"), colA = decodeOptional(d.col, "int32");
    for (let p = 0; p < row.length; p++) if (row[p] === r && colA[p] === c) return p;
    return null;
  }
  for (const cv of [base, overlay]) {
    cv.addEventListener("mousemove", (ev) => {
      const p = posAt(ev, cv);
      hooks.onHover(p);
      if (p != null && d) {
        const row = decodeOptional(d.row, "int32"), colA = decodeOptional(d.col, "int32");
        const v = decodeOptional(d.heat)[row[p] * geom.C + colA[p]];
        status.textContent = `patch ${row[p]},${colA[p]}: ${fmt(v)} (${d.kind === "key" ? "its weight on the clicked patch" : "weight from the clicked patch"})`;
      }
    }, { signal });
    cv.addEventListener("mouseleave", () => hooks.onHover(null), { signal });
    cv.addEventListener("click", (ev) => { const p = posAt(ev, cv); if (p != null) hooks.onClick(p); }, { signal });
  }

  return {
    el, base, overlay, render,
    mark(positions) { marked = new Set(positions ?? []); paint(); },
    /** CSS-pixel centre of patch (r, c) on either canvas (tests). */
    patchCenter(r, c) { return geom ? center(r, c) : null; },
  };
}
