// fetchDetail(request, {buffers}?) -> Promise<response>: how the front end asks Python for data, in
// a notebook: anywidget's command protocol to QKViz._qk_fetch (qkviz._commands.dispatch). A model
// that carries its own `fetchDetail` (the standalone page's, js/src/page/; test harnesses) is
// asked instead. `buffers` go with the request (the selection's parts, wire/selection.js); reply
// buffers may arrive as DataView (Jupyter, VS Code), Uint8Array (Colab) or ArrayBuffer: unpackBuffers
// reads them all.
import { unpackBuffers } from "./codec.js";

const TIMEOUT_MS = 120_000;
const COMMAND = "_qk_fetch";

// Same wire protocol as anywidget's experimental `invoke`, for hosts that do not pass one.
function invokeFallback(model, name, msg, { signal, buffers = [] } = {}) {
  const id = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const handler = (reply, buffers) => {
      if (reply?.id !== id) return;
      model.off("msg:custom", handler);
      resolve([reply.response, buffers]);
    };
    signal?.addEventListener("abort", () => {
      model.off("msg:custom", handler);
      reject(signal.reason);
    });
    model.on("msg:custom", handler);
    model.send({ id, kind: "anywidget-command", name, msg }, undefined, buffers);
  });
}

export function createTransport(model, experimental) {
  if (typeof model.fetchDetail === "function") {
    return async (request, options) => model.fetchDetail(request, options);
  }
  // marimo (0.25) passes an `experimental.invoke` that always throws "anywidget.invoke not
  // supported in marimo", yet relays custom messages both ways: fall back to the same protocol
  // over model.send / "msg:custom" once that happens, and remember it.
  let native = typeof experimental?.invoke === "function";
  const invoke = async (name, msg, opts) => {
    if (native) {
      try {
        return await experimental.invoke(name, msg, opts);
      } catch (err) {
        if (!/invoke not supported/i.test(String(err?.message ?? err))) throw err;
        native = false;
      }
    }
    return invokeFallback(model, name, msg, opts);
  };
  return async (request, { buffers = [] } = {}) => {
    const [response, replyBuffers] = await invoke(COMMAND, request, { signal: AbortSignal.timeout(TIMEOUT_MS), buffers });
    if (response?.error) throw new Error(`qkviz: ${response.error}`);
    return unpackBuffers(response, replyBuffers ?? []);
  };
}
