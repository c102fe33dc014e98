// @ts-check
// The anywidget model API with nobody on the other end: the standalone page's model, and the one
// fake model of the JS tests and the browser-test harnesses (lonboard's fake-widget-model).

/**
 * @typedef {object} FakeModel
 * @property {(name: string) => any} get
 * @property {(name: string, value: any) => void} set
 * @property {() => void} save_changes
 * @property {(event: string, handler: (...args: any[]) => void) => void} on
 * @property {(event?: string | null, handler?: ((...args: any[]) => void) | null) => void} off
 * @property {(msg: any, callbacks?: any, buffers?: any[]) => void} send
 * @property {{get_model: () => Promise<never>}} widget_manager
 * @property {Record<string, any>} _state  the trait values
 * @property {string[][]} _saves  the trait names each save_changes() sent (in order of setting)
 * @property {(request: object) => Promise<any>} [fetchDetail]  set by the page or a test
 */

/**
 * @param {Record<string, any>} state  trait values (kept, not copied)
 * @param {{traits?: readonly string[] | null,
 *   answer?: ((name: string, msg: any, buffers: any[]) => Promise<[any, any[]]>) | null}} [options]
 *   `traits`: the only names that get, set and on("change:…") accept; any other throws (the JS
 *   tests pass model.js TRAITS, so the front end provably reads only typed traits). `answer`:
 *   replies to anywidget commands sent with send() (what `experimental.invoke` sends).
 * @returns {FakeModel}
 */
export function createModel(state, { traits = null, answer = null } = {}) {
  const allowed = traits ? new Set(traits) : null;
  const check = (/** @type {string} */ name) => {
    if (allowed && !allowed.has(name)) throw new Error(`qkviz: "${name}" is not a trait of the model (js/src/model.js TRAITS)`);
  };
  /** @type {Map<string, Set<(...args: any[]) => void>>} */
  const handlers = new Map();
  const emit = (/** @type {string} */ ev, /** @type {any[]} */ ...args) => { for (const h of [...(handlers.get(ev) ?? [])]) h(...args); };
  /** @type {string[]} */
  let pending = [];
  /** @type {FakeModel} */
  const model = {
    get(name) {
      check(name);
      return state[name];
    },
    set(name, value) {
      check(name);
      const old = state[name];
      state[name] = value;
      if (!pending.includes(name)) pending.push(name);
      if (old !== value) { emit(`change:${name}`, model, value); emit("change", model); }
    },
    save_changes() {
      model._saves.push(pending);
      pending = [];
    },
    on(ev, h) {
      for (const e of String(ev).split(/\s+/)) {
        if (e.startsWith("change:")) check(e.slice(7));
        if (!handlers.has(e)) handlers.set(e, new Set());
        handlers.get(e)?.add(h);
      }
    },
    off(ev, h) {
      if (ev == null) { if (h == null) handlers.clear(); else for (const s of handlers.values()) s.delete(h); return; }
      for (const e of String(ev).split(/\s+/)) { if (h == null) handlers.delete(e); else handlers.get(e)?.delete(h); }
    },
    send(msg, _callbacks, buffers) {
      if (!msg || msg.kind !== "anywidget-command") return;
      const reply = answer ? answer(msg.name, msg.msg, buffers ?? []) : Promise.reject(new Error(`command ${msg.name} has nobody to answer it`));
      reply.then(
        ([response, bufs]) => emit("msg:custom", { id: msg.id, kind: "anywidget-command-response", response }, bufs ?? []),
        (err) => emit("msg:custom", { id: msg.id, kind: "anywidget-command-response", response: { error: String(err?.message ?? err) } }, []),
      );
    },
    widget_manager: { get_model: async () => { throw new Error("no other widgets in a static page"); } },
    _state: state,
    _saves: [],
  };
  return model;
}

/**
 * anywidget's `experimental.invoke` over a model's send() / "msg:custom" (the command protocol).
 * @param {FakeModel} model
 * @param {string} name
 * @param {any} msg
 * @param {{signal?: AbortSignal, buffers?: any[]}} [options]
 * @returns {Promise<[any, any[]]>}
 */
export function invoke(model, name, msg, options = {}) {
  const id = `${Date.now()}-${Math.random()}`;
  return new Promise((resolve, reject) => {
    /** @param {any} m @param {any[]} bufs */
    function handler(m, bufs) {
      if (m.id !== id) return;
      model.off("msg:custom", handler);
      resolve([m.response, bufs]);
    }
    options.signal?.addEventListener("abort", () => { model.off("msg:custom", handler); reject(options.signal?.reason); });
    model.on("msg:custom", handler);
    model.send({ id, kind: "anywidget-command", name, msg }, undefined, options.buffers ?? []);
  });
}
