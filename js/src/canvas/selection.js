// The selection: `_selection` (uint32 global point indices, `cell * 2n + point`) is its only home;
// the scatter, the 3-D view and the thumbnails show it, and a lasso or a click replaces it. It
// always means points of the full data: on the matrix, selected points outside the drawn sample
// are drawn too (view.js adds them).
import { decode, encode } from "../wire/codec.js";
import { setTrait } from "../sync.js";

export function createSelection(ctx) {
  const { model, per, dom, bus } = ctx;

  /** Global indices of the selected points (Uint32Array). */
  const global = () => /** @type {Uint32Array} */ (decode(model.get("_selection"), "uint32"));

  /** The selected points of the focused head, as indices within it (the single view). */
  function local() {
    if (ctx.state.mode !== "single") return [];
    const lo = ctx.state.cell * per, out = [];
    for (const g of global()) if (g >= lo && g < lo + per) out.push(g - lo);
    return out;
  }

  /** The selection as indices into what is drawn (the scatter's point indices). */
  const drawn = () => ctx.scatter.drawnIndicesOf(global());

  /** Replace the selection by global point indices (a lasso, a click, clear). */
  function send(indices) {
    const sorted = Uint32Array.from(indices).sort();
    setTrait(model, "_selection", encode(sorted, "uint32"));
    dom.root.dataset.qkSelected = String(sorted.length);
    bus.publish("selection", { points: sorted });
    ctx.thumbs.publish();
  }

  /** Replace the selection by points of the focused head (indices within it: the 3-D view). */
  const sendLocal = (points) => send(Uint32Array.from(points, (i) => i + ctx.state.cell * per));

  /** Show the selection (from Python or from this view): on the matrix, selected points outside
   * the sample are fetched and drawn first (that redraw marks the selection). */
  function apply() {
    if (!ctx.scatter.ready() || !ctx.state.mode) return;
    dom.root.dataset.qkSelected = String(global().length);
    const pending = ctx.ensureSelectionDrawn();
    if (pending) { pending.catch(ctx.fail); return; }
    ctx.scatter.select(drawn());
    ctx.single3d.paint();
    ctx.thumbs.publish();
  }

  return { global, local, drawn, send, sendLocal, apply };
}
