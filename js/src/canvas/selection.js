// The selection: `_selection` (global point indices, `cell * 2n + point`, on the wire as
// wire/selection.js says) is its only home; the scatter, the 3-D view and the thumbnails show it,
// and a lasso or a click replaces it. It always means points of the full data: on the matrix,
// selected points outside the drawn sample are drawn too (view.js adds them).
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

  /** The selected points of the focused head, as indices within it (the single view). */
  const local = () => localOf(global());

  /** Those of global indices `points` that fall in the focused head, as indices within it. */
  function localOf(points) {
    if (ctx.state.mode !== "single") return [];
    const lo = ctx.state.cell * per, out = [];
    for (const g of points) if (g >= lo && g < lo + per) out.push(g - lo);
    return out;
  }

  /** The selection as indices into what is drawn (the scatter's point indices). */
  const drawn = () => ctx.scatter.drawnIndicesOf(global());

  /** Replace the selection by global point indices (a lasso, a click, clear). */
  function send(points) {
    const sorted = Uint32Array.from(points).sort();
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
    ctx.lines.follow(localOf(indices)); // the lines compare indices within the head
    bus.publish("selection", { points: indices });
    ctx.thumbs.publish();
  }

  /** Replace the selection by points of the focused head (indices within it: the 3-D view). */
  const sendLocal = (points) => send(Uint32Array.from(points, (i) => i + ctx.state.cell * per));

  /** Show the selection (from Python or from this view): on the matrix, selected points outside
   * the sample are fetched and drawn first (that redraw marks the selection). */
  function apply() {
    if (!ctx.scatter.ready() || !ctx.state.mode) return;
    dom.root.dataset.qkSelected = String(global().length);
    ctx.lines.follow(local());
    const pending = ctx.ensureSelectionDrawn();
    if (pending) { pending.catch(ctx.fail); return; }
    ctx.scatter.select(drawn());
    ctx.single3d.paint();
    ctx.thumbs.publish();
  }

  return { global, local, drawn, send, sendLocal, apply };
}
