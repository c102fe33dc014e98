// @ts-check
// A view's life as Python and the reader see it (docs/environments.md):
//
// * the view reports `status` through the request channel: "started" as its first act, then
//   "ready" (the grid is drawn) or "failed" (with the error). In Colab, Python shows the standalone
//   page under the cell when no report arrives in time (qkviz.widget._fallback);
// * while no kernel answers — a notebook reopened from saved widget state, an nbconvert page of an
//   executed notebook, a kernel busy with another cell — the view shows the picture that Python put
//   in the `_picture` trait at display time, with a note, instead of an empty box; it goes away as
//   soon as the kernel answers or the grid is drawn. A failed view shows it too, under its error.
import { decode } from "./wire/codec.js";

/** How long a view waits for the kernel's first answer before it shows the picture. */
export const NO_KERNEL_MS = 6000;

/**
 * @param {{model: import("./model.js").QKVizModel, el: HTMLElement,
 *   fetchDetail: (request: object) => Promise<any>, signal: AbortSignal, timeoutMs?: number}} props
 * @returns {{ready: () => void, failed: (err: any) => void}}
 */
export function startLifecycle({ model, el, fetchDetail, signal, timeoutMs = NO_KERNEL_MS }) {
  let answered = false, ready = false;
  /** @type {HTMLElement | null} */
  let shown = null;
  /** @type {string | null} */
  let url = null;
  const report = (/** @type {object} */ body) => fetchDetail({ kind: "status", ...body });

  function show(/** @type {string} */ note) {
    hide();
    const doc = el.ownerDocument ?? document;
    const box = doc.createElement("div");
    box.className = "qk-fallback";
    const p = doc.createElement("p");
    p.className = "qk-fallback-note";
    p.textContent = note;
    const png = model.get("_picture");
    if (png?.view) {
      const bytes = decode(png, "uint8");
      url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
      const img = doc.createElement("img");
      img.className = "qk-fallback-picture";
      img.alt = "static picture of the layout";
      img.src = url;
      box.append(p, img);
    } else {
      box.append(p);
    }
    el.append(box);
    shown = box;
  }
  function hide() {
    shown?.remove();
    shown = null;
    if (url) URL.revokeObjectURL(url);
    url = null;
  }
  signal.addEventListener("abort", hide);

  report({ stage: "started" }).then(() => {
    answered = true;
    if (!ready && shown?.dataset.reason === "no-kernel") hide();
  }, () => {});
  const timer = setTimeout(() => {
    if (answered || ready || signal.aborted) return;
    show("No answer from the Python kernel yet: this is a static picture of the layout. "
      + "Run the cell (with its kernel) for the interactive view.");
    if (shown) shown.dataset.reason = "no-kernel";
  }, timeoutMs);
  signal.addEventListener("abort", () => clearTimeout(timer));

  return {
    ready() {
      ready = true;
      hide();
      report({ stage: "ready" }).catch(() => {});
    },
    failed(err) {
      const message = String(err?.message ?? err);
      show(`qkviz could not start here (${message}); this is a static picture of the layout.`);
      report({ stage: "failed", error: message }).catch(() => {});
    },
  };
}
