// qkviz standalone page runtime: runs the widget's own ES module with no kernel and no network.
//
// The page holds three inert <script> blocks written by qkviz/export.py:
//   #qkviz-esm   JSON string: the bundled widget module (src/qkviz/static/widget.js)
//   #qkviz-meta  JSON: {state: {state, embedded}, buffers: [{offset, length, shuffle, encoding?}],
//                compressed, title}
//   #qkviz-data  base64 of one binary blob (gzip when `compressed`) holding every buffer
// Buffers come back as DataViews at the places where Python had memoryviews (`{"$qkbuf": i}`),
// exactly what ipywidgets hands to an anywidget in a notebook, so the same module runs unchanged.
// `embedded` (QKViz._static_state minus the traits) answers the widget's detail requests through
// the bundle's `staticTransport` export, set as `model.fetchDetail`.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);

  function fromBase64(text) {
    const clean = text.replace(/\s+/g, "");
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(clean);
    const bin = atob(clean);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function gunzip(bytes) {
    if (typeof DecompressionStream !== "function") {
      throw new Error("this browser cannot decompress the embedded data (no DecompressionStream); " +
        "use a current Chrome, Edge, Firefox or Safari, or export with compress=False");
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // Undo the byte shuffle (all first bytes of each item, then all second bytes, ...) that makes
  // float arrays compress better.
  function unshuffle(src, size) {
    const n = src.length / size;
    const out = new Uint8Array(src.length);
    for (let b = 0; b < size; b++) {
      const plane = src.subarray(b * n, (b + 1) * n);
      for (let i = 0; i < n; i++) out[i * size + b] = plane[i];
    }
    return out;
  }

  // Expand a buffer that export.py narrowed (compact=True) back to its declared dtype.
  function expand(bytes, enc) {
    const src = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const width = enc.as === "uint8" ? 1 : 2;
    const n = bytes.byteLength / width;
    const read = width === 1 ? (i) => src.getUint8(i) : (i) => src.getUint16(2 * i, true);
    if (enc.to === "float32") {
      const out = new Float32Array(n);
      const step = (enc.max - enc.min) / enc.levels;
      for (let i = 0; i < n; i++) out[i] = enc.min + read(i) * step;
      return new Uint8Array(out.buffer);
    }
    const out = enc.to === "int32" ? new Int32Array(n) : new Uint32Array(n);
    const cap = width === 1 ? 255 : 65535;
    for (let i = 0; i < n; i++) {
      const q = read(i);
      out[i] = enc.none && q === cap ? 0xffffffff : q + enc.add;
    }
    return new Uint8Array(out.buffer);
  }

  const TYPED = { float32: Float32Array, uint32: Uint32Array, int32: Int32Array, uint8: Uint8Array };
  // Wire dict -> typed array (for the token table the static transport indexes directly).
  function typed(wire) {
    const T = TYPED[wire?.dtype];
    if (!T || !(wire.view instanceof DataView)) return wire;
    return new T(wire.view.buffer, wire.view.byteOffset, wire.view.byteLength / T.BYTES_PER_ELEMENT);
  }

  function revive(value, views) {
    if (Array.isArray(value)) return value.map((v) => revive(v, views));
    if (value && typeof value === "object") {
      if (Object.keys(value).length === 1 && typeof value.$qkbuf === "number") return views[value.$qkbuf];
      const out = {};
      for (const [k, v] of Object.entries(value)) out[k] = revive(v, views);
      return out;
    }
    return value;
  }

  // The subset of the anywidget/Backbone model API a widget may use, with nobody on the other end.
  // send() of an anywidget command is answered by `answer` (the widget's static transport, when it
  // registered one on globalThis.qkvizStatic) so `experimental.invoke` works too.
  function fakeModel(state) {
    const handlers = new Map();
    const emit = (ev, ...args) => { for (const h of [...(handlers.get(ev) ?? [])]) h(...args); };
    const model = {
      get: (k) => state[k],
      set(k, v) {
        const old = state[k];
        state[k] = v;
        if (old !== v) { emit(`change:${k}`, model, v); emit("change", model); }
      },
      on(ev, h) {
        for (const e of String(ev).split(/\s+/)) {
          if (!handlers.has(e)) handlers.set(e, new Set());
          handlers.get(e).add(h);
        }
      },
      off(ev, h) {
        if (ev == null) { if (h == null) handlers.clear(); else for (const s of handlers.values()) s.delete(h); return; }
        for (const e of String(ev).split(/\s+/)) { if (h == null) handlers.delete(e); else handlers.get(e)?.delete(h); }
      },
      save_changes() {},
      send(msg, _callbacks, buffers) {
        if (!msg || msg.kind !== "anywidget-command") return;
        answer(msg.name, msg.msg, buffers ?? []).then(
          ([response, bufs]) => emit("msg:custom", { id: msg.id, kind: "anywidget-command-response", response }, bufs ?? []),
          (err) => emit("msg:custom", { id: msg.id, kind: "anywidget-command-response", response: { error: String(err?.message ?? err) } }, []),
        );
      },
      widget_manager: { get_model: async () => { throw new Error("no other widgets in a static page"); } },
      _state: state,
    };
    return model;
  }

  async function answer(name, msg, buffers) {
    const hook = globalThis.qkvizStatic?.answer;
    if (typeof hook !== "function") throw new Error(`command ${name} needs a Python kernel (static page)`);
    return hook(name, msg, buffers);
  }

  async function invoke(model, name, msg, options = {}) {
    const id = `${Date.now()}-${Math.random()}`;
    return new Promise((resolve, reject) => {
      function handler(m, bufs) {
        if (m.id !== id) return;
        model.off("msg:custom", handler);
        resolve([m.response, bufs]);
      }
      options.signal?.addEventListener("abort", () => { model.off("msg:custom", handler); reject(options.signal.reason); });
      model.on("msg:custom", handler);
      model.send({ id, kind: "anywidget-command", name, msg }, undefined, options.buffers ?? []);
    });
  }

  // Side-panel requests the bundle cannot answer itself in a static page (used only when the
  // bundle exports no `staticExtra`): the sentence and heatmap views of one sequence, from the
  // dense matrix of its embedded top-k weights (weights outside the top-k read as 0).
  async function answerFromTopk(request, { tokens, meta }, transport) {
    if (request.kind !== "sequence") {
      throw new Error(`the ${request.kind} view is not embedded in this static page; open the notebook for it`);
    }
    const { layer, head, seq } = request;
    const rows = [];
    for (let t = 0; t < tokens.seq.length; t++) if (tokens.seq[t] === seq) rows.push(t);
    rows.sort((a, b) => tokens.pos[a] - tokens.pos[b]);
    const { weights } = await transport({ kind: "attention", layer, head, seq });
    const special = Uint8Array.from(rows, (t) => (tokens.category?.[t] === 2 ? 1 : 0));
    return {
      layer, head, seq, modality: meta.modality ?? "text", causal: Boolean(meta.causal),
      token: Uint32Array.from(rows), display: rows.map((t) => tokens.display[t]), special,
      raw: weights, attention: weights, value_norms: null,
      hidden_keys: new Uint8Array(rows.length), hidden_queries: new Uint8Array(rows.length),
    };
  }

  function fail(root, err) {
    console.error("[qkviz]", err);
    root.dataset.qkError = String(err?.message ?? err);
    const box = document.createElement("pre");
    box.className = "qkviz-static-error";
    box.textContent = `qkviz: this page could not start.\n${err?.stack ?? err}`;
    root.append(box);
  }

  async function main() {
    const root = $("qkviz-root");
    try {
      const meta = JSON.parse($("qkviz-meta").textContent);
      let blob = fromBase64($("qkviz-data").textContent);
      if (meta.compressed) blob = await gunzip(blob);
      const views = meta.buffers.map(({ offset, length, shuffle, encoding }) => {
        let bytes = blob.subarray(offset, offset + length);
        if (shuffle > 1) bytes = unshuffle(bytes, shuffle);
        if (encoding) bytes = expand(bytes, encoding);
        return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      });
      const { state, embedded } = revive(meta.state, views);
      const model = fakeModel(state);
      const experimental = { invoke: (name, msg, options) => invoke(model, name, msg, options) };
      globalThis.qkvizStatic = { ...(globalThis.qkvizStatic ?? {}), model, static: true };
      const code = JSON.parse($("qkviz-esm").textContent);
      const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
      const mod = await import(url);
      const widget = typeof mod.default === "function" ? await mod.default() : mod.default;
      if (typeof mod.staticTransport === "function" && embedded) {
        const tokens = {};
        for (const [k, v] of Object.entries(state._tokens ?? {})) tokens[k] = typed(v);
        const data = { ...embedded, meta: state._meta, tokens };
        let transport = null;
        const extra = typeof mod.staticExtra === "function"
          ? mod.staticExtra(data, state)
          : (request) => answerFromTopk(request, data, (r) => transport(r));
        transport = mod.staticTransport(data, extra);
        model.fetchDetail = transport;
      }
      await widget.initialize?.({ model, experimental });
      const el = document.createElement("div");
      el.className = "qkviz-static-view";
      root.append(el);
      await widget.render({ model, el, experimental });
      root.dataset.qkStatic = "ready";
    } catch (err) {
      fail(root, err);
    }
  }

  main();
})();
