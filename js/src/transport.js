// fetchDetail(request) -> Promise<response>: how the front end asks Python for data.
// In a notebook: anywidget's command protocol to QKViz._qk_fetch (qkviz._commands.dispatch).
// In a static page: a model object may carry its own `fetchDetail` (see staticTransport below),
// which answers the same requests from the dict QKViz._static_state() produced.
import { decode, unpackBuffers } from "./codec.js";

const TIMEOUT_MS = 120_000;
const COMMAND = "_qk_fetch";

// Same wire protocol as anywidget's experimental `invoke`, for hosts that do not pass one.
function invokeFallback(model, name, msg, { signal } = {}) {
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
    model.send({ id, kind: "anywidget-command", name, msg }, undefined, []);
  });
}

export function createTransport(model, experimental) {
  if (typeof model.fetchDetail === "function") {
    return async (request) => model.fetchDetail(request);
  }
  const invoke = experimental?.invoke
    ? (name, msg, opts) => experimental.invoke(name, msg, opts)
    : (name, msg, opts) => invokeFallback(model, name, msg, opts);
  return async (request) => {
    const [response, buffers] = await invoke(COMMAND, request, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (response?.error) throw new Error(`qkviz: ${response.error}`);
    return unpackBuffers(response, buffers ?? []);
  };
}

/**
 * Answer requests from embedded data (standalone HTML).
 * @param {object} embedded  QKViz._static_state(): {state: {_meta, _tokens, ...}, points: [{start,
 *   stop, coords, norms}], topk: null | [{layer, head, keys [token*k], weights [token*k]}]}, arrays
 *   as typed arrays or wire dicts ({view, dtype, shape}). `extra(request)` may answer other kinds.
 */
export function staticTransport(embedded, extra) {
  const arr = (v, dtype) => (v && v.view !== undefined ? decode(v, dtype) : v);
  const st = embedded.state ?? {};
  const meta = embedded.meta ?? st._meta;
  const tokens = embedded.tokens ?? { seq: arr(st._tokens?.seq, "uint32"), pos: arr(st._tokens?.pos, "uint32") };
  const points = (embedded.points ?? []).map((c) => ({ ...c, coords: arr(c.coords, "float32"), norms: arr(c.norms, "uint8") }));
  const topk = embedded.topk?.map((e) => ({ ...e, keys: arr(e.keys, "uint32"), weights: arr(e.weights, "float32") })) ?? null;
  const data = { points, topk, meta, tokens };
  return async (request) => {
    if (request.kind === "points") {
      const chunk = data.points.find((c) => c.start === request.start);
      if (!chunk) throw new Error(`qkviz: no embedded points from ${request.start}`);
      return chunk;
    }
    if (request.kind === "attention") return attentionFromTopk(data, request);
    if (extra) return extra(request);
    throw new Error(`qkviz: request kind ${request.kind} is not available in a static page`);
  };
}

// Dense [query_pos, key_pos] matrix holding only the embedded top-k weights (others 0), so the
// lines code is the same with or without a kernel.
function attentionFromTopk({ topk, meta, tokens }, { layer, head, seq }) {
  if (!topk) throw new Error("qkviz: attention was not embedded in this page");
  const cell = meta.layers.indexOf(layer) * meta.heads.length + meta.heads.indexOf(head);
  const entry = topk[cell];
  const k = entry.keys.length / meta.n_tokens;
  const rows = [];
  for (let t = 0; t < meta.n_tokens; t++) if (tokens.seq[t] === seq) rows.push(t);
  const n = rows.length;
  const weights = new Float32Array(n * n);
  for (const t of rows) {
    const qp = tokens.pos[t];
    for (let j = 0; j < k; j++) {
      const kp = entry.keys[t * k + j];
      if (kp < n) weights[qp * n + kp] = entry.weights[t * k + j];
    }
  }
  return { layer, head, seq, weights };
}
