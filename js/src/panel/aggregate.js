// Aggregate view: the head's attention averaged over every sequence, by (query_pos, key_pos) as a
// heatmap and by relative offset (key_pos − query_pos) as bars, so positional heads stand out.
import { createHeatmap } from "./heatmap.js";
import { fitCanvas, fmtWeight as fmt, h, localXY } from "../ui/dom.js";
import { QUERY_RGB, rgb } from "../ui/palette.js";
import { decodeOptional } from "../wire/codec.js";

const SPAN = 16; // offsets shown either side of 0 (positional heads live near the diagonal)

export function createAggregateView(root, { signal }) {
  const scores = h("div", { class: "qkv-scores" });
  const title = h("div", { class: "qkv-subtitle", text: "by position (query_pos × key_pos), row-normalised" });
  const box = h("div", { class: "qkv-aggregate" }, scores, title);
  root.append(box);
  const heat = createHeatmap(box, { signal, size: 300, cls: "qkv-agg-heat" });
  const bars = h("canvas", { class: "qkv-offset-bars" });
  const barStatus = h("div", { class: "qkv-status", text: " " });
  box.append(h("div", { class: "qkv-subtitle", text: "by offset (key_pos − query_pos): share of all attention" }), bars, barStatus);

  let d = null, span = SPAN, barGeom = null;

  function render(detail) {
    d = detail;
    if (!d) return;
    const bp = decodeOptional(d.by_position);
    const n = Math.round(Math.sqrt(bp.length));
    const labels = Array.from({ length: n }, (_, i) => String(i));
    heat.render(bp, n, n, { qLabels: n <= 48 ? labels : null });
    const s = d.scores ?? {};
    scores.replaceChildren(
      h("b", { text: `layer ${d.layer} head ${d.head}` }), ` · ${d.n_seqs} sequences · `,
      ...["previous", "self", "next", "first"].map((k) => h("span", { class: "qkv-score", "data-score": k, text: `${k} ${fmt(s[k] ?? 0)} ` })));
    paintBars();
  }

  function paintBars() {
    const offsets = decodeOptional(d.offsets, "int32"), share = decodeOptional(d.by_offset);
    const zero = offsets.indexOf(0);
    span = Math.min(SPAN, zero);
    const W = 300, H = 110, n = 2 * span + 1, pad = 12, bw = (W - 2 * pad) / n;
    const ctx = fitCanvas(bars, W, H + 14);
    ctx.translate(pad, 0); // room for the end labels
    let top = 0;
    for (let k = -span; k <= span; k++) top = Math.max(top, share[zero + k]);
    top = top || 1;
    barGeom = { zero, bw, n, pad };
    ctx.fillStyle = getComputedStyle(box).color || "#333";
    ctx.font = "10px sans-serif"; ctx.textAlign = "center";
    for (let k = -span; k <= span; k++) {
      const v = share[zero + k], x = (k + span) * bw, bh = (H - 4) * (v / top);
      ctx.fillStyle = k === 0 ? "#888" : rgb(QUERY_RGB);
      ctx.fillRect(x + 1, H - bh, Math.max(1, bw - 2), bh);
      if (k % 4 === 0) { ctx.fillStyle = getComputedStyle(box).color || "#333"; ctx.fillText(String(k), x + bw / 2, H + 11); }
    }
  }

  bars.addEventListener("mousemove", (ev) => {
    if (!d || !barGeom) return;
    const [x] = localXY(ev, bars);
    const k = Math.floor((x - barGeom.pad) / barGeom.bw) - span;
    if (k < -span || k > span) return;
    const share = decodeOptional(d.by_offset), mean = decodeOptional(d.by_offset_mean);
    barStatus.textContent = `offset ${k}: ${fmt(share[barGeom.zero + k])} of all attention; mean weight where it exists ${fmt(mean[barGeom.zero + k])}`;
  }, { signal });

  return { el: box, render, heat };
}
