// Entry point of the anywidget ES module (bundled by esbuild to src/qkviz/_bundle/widget.js): the
// notebook widget. The standalone page runs this same module through js/src/page/runtime.js.
import { renderView } from "./canvas/view.js";
import { startLifecycle } from "./lifecycle.js";
import { injectStyle } from "./ui/style.js";
import { createTransport } from "./wire/transport.js";

function render({ model, el, experimental }) {
  // marimo renders each anywidget inside a shadow root, where a <style> in the document's head
  // does not apply: put the styles into that shadow root instead.
  const root = el.getRootNode?.();
  injectStyle(typeof ShadowRoot !== "undefined" && root instanceof ShadowRoot ? root : el.ownerDocument ?? document);
  const fetchDetail = createTransport(model, experimental);
  // the lifecycle lives as long as the render; a view is redrawn (new controller) per attention
  const lifetime = new AbortController();
  let controller = new AbortController();
  // a model with its own channel (standalone page, harness) has its data: no kernel to wait for
  const life = typeof model.fetchDetail === "function" ? null : startLifecycle({ model, el, fetchDetail, signal: lifetime.signal });
  const draw = () => {
    try {
      renderView({ model, el, fetchDetail, signal: controller.signal, onReady: life?.ready, onFail: life?.failed });
    } catch (err) {
      console.error("[qkviz]", err);
      el.textContent = `qkviz failed to render: ${err?.message ?? err}`;
      life?.failed(err);
    }
  };
  // Another attention of an encoder-decoder embedding is another grid (layers x heads): draw the
  // view anew (the grid's points are loaded once per model and kept).
  const onAttn = () => { controller.abort(); controller = new AbortController(); draw(); };
  model.on("change:attn", onAttn);
  draw();
  return () => { model.off("change:attn", onAttn); controller.abort(); lifetime.abort(); };
}

export default { render };
