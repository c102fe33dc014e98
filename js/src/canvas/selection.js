// The selection: `_selection` (uint32 global point indices, `cell * 2n + point`) is its only home;
// the scatter, the 3-D view and the thumbnails show it, and a lasso or a click replaces it.
import { decode, encode } from "../wire/codec.js";
import { setTrait } from "../sync.js";

export function createSelection(ctx) {
  const { model, per, dom, bus } = ctx;

  /** Global indices of the selected points (Uint32Array). */
  const global = () => /** @type {Uint32Array} */ (decode(model.get("_selection"), "uint32"));

  /** First global index and count of the drawn points: the shown attention's cells on the matrix
   * (every cell for one attention), the focused head in the single view. */
  function drawnRange() {
    return ctx.state.mode === "single" ? [ctx.state.cell * per, per] : [ctx.cellOffset * per, ctx.nCells * per];
  }

  /** The selection in drawn-point indices: global on the matrix (past the attentions before the
   * shown one), within the head in the single view. */
  function local() {
    const sel = global();
    const [lo, count] = drawnRange(), out = [];
    for (const g of sel) if (g >= lo && g < lo + count) out.push(g - lo);
    return out;
  }

  /** Replace the selection by drawn points `points` (a lasso, a click, clear). */
  function send(points) {
    const offset = drawnRange()[0];
    const indices = Uint32Array.from(points, (i) => i + offset).sort();
    setTrait(model, "_selection", encode(indices, "uint32"));
    dom.root.dataset.qkSelected = String(indices.length);
    bus.publish("selection", { points: indices });
    ctx.thumbs.publish();
  }

  /** Show a selection that arrived from Python. */
  function apply() {
    if (!ctx.scatter.ready() || !ctx.state.mode) return;
    dom.root.dataset.qkSelected = String(global().length);
    ctx.scatter.select(local());
    ctx.single3d.paint();
    ctx.thumbs.publish();
  }

  return { global, local, send, apply };
}
