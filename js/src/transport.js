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
 *   as typed arrays or wire dicts ({view, dtype, shape}); top-k tables may be in qkviz.export's
 *   "key-delta" layout. `extra(request)` may answer other kinds (the page passes
 *   staticExtra(data, state) from ./static.js).
 */
export function staticTransport(embedded, extra) {
  const arr = (v, dtype) => (v && v.view !== undefined ? decode(v, dtype) : v);
  const st = embedded.state ?? {};
  const meta = embedded.meta ?? st._meta;
  const tokens = embedded.tokens ?? { seq: arr(st._tokens?.seq, "uint32"), pos: arr(st._tokens?.pos, "uint32") };
  const points = (embedded.points ?? []).map((c) => ({ ...c, coords: arr(c.coords, "float32"), norms: arr(c.norms, "uint8") }));
  const topk = embedded.topk?.map((e) => fromKeyDelta({ ...e, keys: arr(e.keys, "uint32"), weights: arr(e.weights, "float32") }, meta.n_tokens)) ?? null;
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

/**
 * Undo qkviz.export's "key-delta" layout of one head's top-k table (keys sorted by position,
 * [k, token], as gaps; 0 = no key) into [token, k] key positions (0xffffffff = none) and weights.
 * Tables without a layout pass through.
 */
export function fromKeyDelta(entry, nTokens) {
  if (entry.layout !== "key-delta") return entry;
  const k = nTokens ? entry.keys.length / nTokens : 0;
  const keys = new Uint32Array(nTokens * k), weights = new Float32Array(nTokens * k);
  for (let t = 0; t < nTokens; t++) {
    let key = 0;
    for (let j = 0; j < k; j++) {
      const gap = entry.keys[j * nTokens + t];
      if (j > 0 && gap === 0) { keys[t * k + j] = 0xffffffff; continue; }
      key = j === 0 ? gap : key + gap;
      keys[t * k + j] = key;
      weights[t * k + j] = entry.weights[j * nTokens + t];
    }
  }
  return { ...entry, layout: undefined, keys, weights };
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
