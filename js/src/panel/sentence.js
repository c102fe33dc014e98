// Sentence view (BertViz head view style): queries left, keys right, one line per pair with
// opacity ∝ attention. Hovering a token shows only its lines and the weights on the other side.
import { fitCanvas, fmtWeight as fmt, h } from "../ui/dom.js";
import { KEY_RGB, QUERY_RGB, rgb } from "../ui/palette.js";

const ROW = 20;        // px per token row
const GAP = 120;       // px between the two token columns (the line canvas)
const MIN_LINE = 0.01; // weights below this draw nothing when no token is hovered

/**
 * @param {HTMLElement} root
 * @param {{signal: AbortSignal, onHover(side: "q"|"k"|null, pos: number|null): void,
 *          onClick(side, pos): void, onToggleHide(side, pos): void}} hooks
 */
export function createSentenceView(root, hooks) {
  const { signal } = hooks;
  const left = h("div", { class: "qkv-col qkv-col-q" });
  const right = h("div", { class: "qkv-col qkv-col-k" });
  const canvas = h("canvas", { class: "qkv-lines" });
  const body = h("div", { class: "qkv-sentence" },
    h("div", { class: "qkv-colhead" }, h("span", { text: "queries" }), h("span", { text: "keys" })),
    h("div", { class: "qkv-sentence-body" }, left, canvas, right));
  root.append(body);

  // nq queries (left), nk keys (right): the same tokens in self-attention, the decoder's and the
  // encoder's in cross-attention
  let detail = null, weights = null, nq = 0, nk = 0, hidden = { keys: new Set(), queries: new Set() };
  let hover = null;      // {side, pos}
  let pinned = null;     // {side, pos}
  let marked = new Set(); // positions highlighted from outside (scatter hover/selection)

  function tokenEl(side, pos, text) {
    const hide = h("button", { class: "qkv-hide", title: "hide / show this token", text: "⊘", "data-pos": pos });
    const w = h("span", { class: "qkv-w" });
    const label = h("span", { class: "qkv-tok-text", text });
    const e = side === "q"
      ? h("div", { class: "qkv-tok", "data-side": side, "data-pos": pos }, hide, label, w)
      : h("div", { class: "qkv-tok", "data-side": side, "data-pos": pos }, w, label, hide);
    e.style.height = `${ROW}px`;
    hide.addEventListener("click", (ev) => { ev.stopPropagation(); hooks.onToggleHide(side, pos); }, { signal });
    e.addEventListener("mouseenter", () => { hover = { side, pos }; paint(); hooks.onHover(side, pos); }, { signal });
    e.addEventListener("mouseleave", () => { hover = null; paint(); hooks.onHover(null, null); }, { signal });
    e.addEventListener("click", () => {
      pinned = pinned && pinned.side === side && pinned.pos === pos ? null : { side, pos };
      paint();
      hooks.onClick(side, pinned ? pos : null);
    }, { signal });
    return e;
  }

  function render(d, w, hid) {
    const keys = d ? d.keyDisplay ?? d.display : [];
    const same = detail && d && detail.seq === d.seq && detail.display.length === d.display.length
      && (detail.keyDisplay ?? detail.display).length === keys.length;
    detail = d; weights = w; hidden = hid;
    if (!same) {
      nq = d ? d.display.length : 0;
      nk = keys.length;
      pinned = null; hover = null;
      left.replaceChildren(...(d ? d.display.map((t, p) => tokenEl("q", p, t)) : []));
      right.replaceChildren(...keys.map((t, p) => tokenEl("k", p, t)));
    }
    // a sink head: each query's share that went to the sink ("attend to nothing")
    const sink = d?.sink ?? null;
    for (const e of left.children) {
      const p = +e.dataset.pos;
      e.dataset.sink = sink ? sink[p].toFixed(3) : "";
      e.title = sink ? `sink ${sink[p].toFixed(3)}: the share of this query's attention that went to nothing` : "";
    }
    paint();
  }

  function focusOf() { return hover ?? pinned; }

  function paint() {
    const ctx = fitCanvas(canvas, GAP, Math.max(1, Math.max(nq, nk) * ROW));
    if (!detail || !weights) return;
    const f = focusOf();
    // token classes: hidden, focused, marked, and the weights on the other side of the focus
    for (const [side, col] of [["q", left], ["k", right]]) {
      const hid = side === "q" ? hidden.queries : hidden.keys;
      for (const e of col.children) {
        const p = +e.dataset.pos;
        e.classList.toggle("qkv-hidden", hid.has(p));
        e.classList.toggle("qkv-focus", !!f && f.side === side && f.pos === p);
        e.classList.toggle("qkv-pinned", !!pinned && pinned.side === side && pinned.pos === p);
        e.classList.toggle("qkv-marked", marked.has(p));
        const wEl = e.querySelector(".qkv-w");
        if (f && f.side !== side) {
          const wt = side === "k" ? weights[f.pos * nk + p] : weights[p * nk + f.pos];
          wEl.textContent = wt > 0 ? fmt(wt) : "";
          wEl.style.setProperty("--w", String(wt));
          e.classList.add("qkv-weighted");
        } else {
          wEl.textContent = "";
          e.classList.remove("qkv-weighted");
        }
      }
    }
    const grad = ctx.createLinearGradient(0, 0, GAP, 0);
    grad.addColorStop(0, rgb(QUERY_RGB));
    grad.addColorStop(1, rgb(KEY_RGB));
    ctx.strokeStyle = grad;
    ctx.lineWidth = f ? 2 : 1.5;
    const y = (p) => p * ROW + ROW / 2;
    const line = (i, j, wt) => {
      ctx.globalAlpha = Math.min(1, wt);
      ctx.beginPath(); ctx.moveTo(2, y(i)); ctx.lineTo(GAP - 2, y(j)); ctx.stroke();
    };
    if (f && f.side === "q") for (let j = 0; j < nk; j++) { const wt = weights[f.pos * nk + j]; if (wt > 0) line(f.pos, j, wt); }
    else if (f) for (let i = 0; i < nq; i++) { const wt = weights[i * nk + f.pos]; if (wt > 0) line(i, f.pos, wt); }
    else for (let i = 0; i < nq; i++) for (let j = 0; j < nk; j++) { const wt = weights[i * nk + j]; if (wt >= MIN_LINE) line(i, j, wt); }
    ctx.globalAlpha = 1;
  }

  return {
    el: body,
    render,
    /** Highlight positions from outside (scatter hover/selection); null clears. */
    mark(positions) { marked = new Set(positions ?? []); if (detail) paint(); },
    clearPin() { pinned = null; if (detail) paint(); },
    get pinned() { return pinned; },
  };
}
