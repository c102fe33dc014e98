// The selection: `_selection` (global point indices, `cell * 2n + point`, on the wire as
// wire/selection.js says) is its only home; the scatter, the 3-D view and the thumbnails show it,
// and a lasso or a click replaces it.
import { packSelection, unpackSelection, uploadSelection, wireBytes } from "../wire/selection.js";
import { setTrait } from "../sync.js";

export function createSelection(ctx) {
  const { model, per, dom, bus } = ctx;
  // a model with its own channel (standalone page, harness) has no kernel and no message limit
  const ownChannel = typeof model.fetchDetail === "function";
  /** @type {object | null} the upload in flight (a newer selection makes an older one moot) */
  let uploading = null;

  /** Global indices of the selected points (Uint32Array). */
  const global = () => unpackSelection(model.get("_selection"));

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
    const sorted = Uint32Array.from(points, (i) => i + offset).sort();
    let k = 0; // drop repeats (packSelection needs a set)
    for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[k++] = sorted[i];
    const indices = sorted.slice(0, k);
    const packed = packSelection(indices);
    if (ownChannel || wireBytes(packed) <= ctx.meta.upload_bytes) {
      uploading = null;
      setTrait(model, "_selection", packed);
    } else {
      // too large for one page -> kernel message: the bytes go ahead in parts
      const mine = (uploading = {});
      uploadSelection(indices, packed, ctx.meta.upload_bytes, ctx.fetchDetail)
        .then((wire) => { if (uploading === mine) setTrait(model, "_selection", wire); })
        .catch((err) => ctx.fail(new Error(`the selection of ${indices.length} points did not reach Python: ${err?.message ?? err}`)));
    }
    dom.root.dataset.qkSelected = String(indices.length);
    ctx.lines.follow(points);
    bus.publish("selection", { points: indices });
    ctx.thumbs.publish();
  }

  /** Show a selection that arrived from Python. */
  function apply() {
    if (!ctx.scatter.ready() || !ctx.state.mode) return;
    dom.root.dataset.qkSelected = String(global().length);
    const points = local();
    ctx.lines.follow(points);
    ctx.scatter.select(points);
    ctx.single3d.paint();
    ctx.thumbs.publish();
  }

  return { global, local, send, apply };
}
