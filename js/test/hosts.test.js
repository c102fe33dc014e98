// @vitest-environment happy-dom
// What differs between the places the widget runs (docs/environments.md), on the strict fake model
// with anywidget's command protocol (no model.fetchDetail: the notebook path):
//
// * binary buffers arrive as DataView (Jupyter, VS Code: @jupyterlab/services), Uint8Array (Colab's
//   widget manager, in custom messages) or ArrayBuffer (Colab before 2021): every reader takes each,
//   at any byte offset — trait state, command replies, through anywidget's invoke or the
//   msg:custom fallback;
// * what the page sends owns exactly its bytes (ipywidgets sends a view's whole buffer), and a
//   selection larger than one page -> kernel message goes in parts;
// * the view reports status, and shows the display-time picture while no kernel answers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TRAITS, getColumns, getMeta, getTokens } from "../src/model.js";
import { createPointStore } from "../src/points.js";
import { createModel, invoke } from "../src/page/model.js";
import { decode, encode } from "../src/wire/codec.js";
import { packSelection, unpackSelection, uploadSelection, wireBytes } from "../src/wire/selection.js";
import { createTransport } from "../src/wire/transport.js";
import { smallState } from "./fixtures.js";

const scatters = [];
vi.mock("regl-scatterplot", () => ({
  createRenderer: () => ({ isDestroyed: false }),
  default: () => {
    const handlers = {}, props = {};
    const sc = {
      set: (p) => Object.assign(props, p), get: (n) => (n === "spatialIndex" ? {} : props[n]),
      async draw() {}, subscribe: (ev, fn) => { handlers[ev] = fn; }, emit: (ev, p) => handlers[ev]?.(p),
      select() {}, deselect() {}, getScreenPosition: (i) => [i, i], clearAnnotations() {},
      drawAnnotations() {}, reset() {}, destroy() {},
    };
    scatters.push(sc);
    return sc;
  },
}));
const { default: widget } = await import("../src/index.js");

/** The same bytes in each form a host may hand over; `pad` puts them at an offset in a larger buffer. */
const FORMS = {
  DataView: (u8, pad) => new DataView(padded(u8, pad).buffer, pad, u8.length),
  ArrayBuffer: (u8) => u8.slice().buffer,
  Uint8Array: (u8, pad) => new Uint8Array(padded(u8, pad).buffer, pad, u8.length),
  "Uint8Array (own buffer)": (u8) => u8.slice(),
};
function padded(u8, pad) {
  const out = new Uint8Array(u8.length + pad + 3);
  out.set(u8, pad);
  return out;
}
const bytesOf = (typed) => new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength).slice();
/** A wire dict whose view is `typed`'s bytes in `form`, at offset `pad` (a multiple of 4: aligned). */
const wireAs = (form, typed, pad = 8, shape = [typed.length]) => ({
  view: FORMS[form](bytesOf(typed), pad),
  dtype: { Float32Array: "float32", Uint32Array: "uint32", Int32Array: "int32", Uint8Array: "uint8" }[typed.constructor.name],
  shape,
});

/** smallState() with every binary trait value in `form`. */
function stateAs(form) {
  const s = smallState();
  const re = (w) => wireAs(form, decode(w), 8, w.shape);
  s._meta.recall = re(s._meta.recall);
  for (const k of ["seq", "pos", "seq_len", "category"]) s._tokens[k] = re(s._tokens[k]);
  s._columns.freq.values = re(s._columns.freq.values);
  s._selection = re({ view: new DataView(Uint32Array.from([3, 17]).buffer), dtype: "uint32" });
  return s;
}

/** Python's reply to a "points" request, as pack_buffers makes it, buffers in `form`. */
function pointsReply(meta, request, form) {
  // the points [start, stop) of pointChunks' grid (coordinates p, p + 0.1; norm p), in `form`
  const { start, stop } = request, k = stop - start;
  const coords = Float32Array.from({ length: k * meta.dim }, (_, i) => start + Math.floor(i / meta.dim) + (i % meta.dim) / 10);
  const norms = Uint8Array.from({ length: k }, (_, i) => (start + i) % 256);
  return [
    { start, stop, coords: { $buffer: 0, dtype: "float32", shape: [k, meta.dim] },
      norms: { $buffer: 1, dtype: "uint8", shape: [k] } },
    [FORMS[form](bytesOf(coords), 4), FORMS[form](bytesOf(norms), 5)],
  ];
}

describe.each(Object.keys(FORMS))("buffers as %s", (form) => {
  it("trait state decodes: meta, tokens, columns, selection", () => {
    const model = createModel(stateAs(form), { traits: TRAITS });
    const ref = createModel(smallState(), { traits: TRAITS });
    expect(Array.from(getMeta(model).recall)).toEqual(Array.from(getMeta(ref).recall));
    const t = getTokens(model), r = getTokens(ref);
    for (const k of ["seq", "pos", "seqLen", "category"]) expect(Array.from(t[k])).toEqual(Array.from(r[k]));
    expect(Array.from(getColumns(model).freq.values)).toEqual([1, 2, 3, 4, 5]);
    expect(Array.from(unpackSelection(model.get("_selection")))).toEqual([3, 17]);
  });

  it.each([["anywidget invoke"], ["msg:custom fallback"]])("the grid arrives through %s", async (path) => {
    const model = createModel(smallState(), {
      traits: TRAITS, answer: async (name, msg) => pointsReply(getMeta(model), msg, form),
    });
    const experimental = path === "anywidget invoke"
      ? { invoke: (name, msg, opts) => invoke(model, name, msg, opts) }
      : { invoke: async () => { throw new Error("anywidget.invoke not supported in marimo"); } };
    // whole heads, as the single view pulls them ("points" in chunks of chunk_points)
    const store = createPointStore(getMeta(model), createTransport(model, experimental));
    for (const p of [0, 15, 16, 39]) {
      const head = await store.head(Math.floor(p / 10)), i = p % 10;
      expect(head.coords[2 * i]).toBeCloseTo(p);
      expect(head.coords[2 * i + 1]).toBeCloseTo(p + 0.1);
      expect(head.norms[i]).toBe(p);
    }
  });

  it("a selection wire decodes from any form, indices or bitmask", () => {
    const idx = Uint32Array.from([5, 6, 9, 40, 41, 47]);
    const bits = packSelection(idx);
    expect(bits.encoding).toBe("bitmask");
    const asForm = { ...bits, view: FORMS[form](bytesOf(new Uint8Array(bits.view.buffer)), 3) };
    expect(Array.from(unpackSelection(asForm))).toEqual(Array.from(idx));
    // the same bytes as qkviz.wire.pack_selection (tests/widget/test_environments.py checks this literal)
    const lit = packSelection([3, 4, 5, 9]);
    expect([Array.from(new Uint8Array(lit.view.buffer)), lit.start, lit.count]).toEqual([[0x47], 3, 4]);
    const list = packSelection(Uint32Array.from([2, 100000]));
    expect(list.dtype).toBe("uint32");
    expect(Array.from(unpackSelection({ ...list, view: FORMS[form](bytesOf(new Uint8Array(list.view.buffer)), 8) }))).toEqual([2, 100000]);
  });
});

describe("what the page sends", () => {
  it("encode gives a view over exactly the array's bytes (a sub-array is copied)", () => {
    const big = Uint32Array.from([9, 1, 2, 3, 9]);
    const w = encode(big.subarray(1, 4), "uint32");
    expect(w.view.byteOffset).toBe(0);
    expect(w.view.buffer.byteLength).toBe(12); // ipywidgets sends view.buffer: it must be these bytes
    expect(Array.from(decode(w))).toEqual([1, 2, 3]);
    const whole = Uint32Array.from([4, 5]);
    expect(encode(whole, "uint32").view.buffer).toBe(whole.buffer); // no copy when not needed
  });

  it("a selection travels as the smaller of indices and bitmask, and reads back exactly", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const [n, density] of [[10, 0.5], [50000, 0.3], [50000, 0.001], [1, 1]]) {
      const set = new Set();
      for (let i = 0; i < n; i++) if (rand() < density) set.add(1000 + i);
      const idx = Uint32Array.from([...set]).sort();
      const w = packSelection(idx);
      expect(wireBytes(w)).toBeLessThanOrEqual(Math.max(4 * idx.length, 1));
      expect(w.view.byteOffset === 0 && w.view.byteLength === w.view.buffer.byteLength).toBe(true);
      expect(Array.from(unpackSelection(w))).toEqual(Array.from(idx));
    }
    expect(Array.from(unpackSelection(packSelection([])))).toEqual([]);
  });

  it("a selection over the budget goes ahead in parts, each its own buffer under the budget", async () => {
    const idx = Uint32Array.from({ length: 30000 }, (_, i) => i * 3); // bitmask of 11250 bytes
    const packed = packSelection(idx);
    const sent = [];
    const wire = await uploadSelection(idx, packed, 4096, async (request, { buffers }) => {
      sent.push({ request, bytes: new Uint8Array(buffers[0].buffer, buffers[0].byteOffset, buffers[0].byteLength).slice(), whole: buffers[0].byteLength === buffers[0].buffer.byteLength });
      return { ok: true };
    });
    expect(sent.length).toBe(wire.parts);
    expect(sent.length).toBeGreaterThan(2);
    for (const s of sent) {
      expect(s.bytes.length).toBeLessThanOrEqual(4096);
      expect(s.whole).toBe(true);
      expect(s.request).toMatchObject({ kind: "selection_part", id: wire.id, parts: wire.parts });
    }
    const joined = new Uint8Array(sent.reduce((a, s) => a + s.bytes.length, 0));
    let o = 0;
    for (const s of sent) { joined.set(s.bytes, o); o += s.bytes.length; }
    expect(Array.from(unpackSelection({ ...wire.inner, view: new DataView(joined.buffer) }))).toEqual(Array.from(idx));
    expect(wire).toMatchObject({ encoding: "parts", count: idx.length, inner: { encoding: "bitmask", start: 0 } });
    expect(Array.from(unpackSelection(wire))).toEqual(Array.from(idx)); // this page reads its own parts
  });
});

// ---- the view in a notebook: status reports, the picture without a kernel, a big lasso ----------
let el, cleanup, requests;
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 1, 2, 3]);

function mountNotebook({ state = smallState(), answer } = {}) {
  requests = [];
  state._picture = { view: new DataView(PNG.slice().buffer), dtype: "uint8", shape: [PNG.length] };
  const model = createModel(state, {
    traits: TRAITS,
    answer: (name, msg, buffers) => { requests.push({ ...msg, nbuf: buffers.length }); return answer(msg, model, buffers); },
  });
  el = document.createElement("div");
  document.body.append(el);
  cleanup = widget.render({ model, el, experimental: { invoke: (name, msg, opts) => invoke(model, name, msg, opts) } });
  return model;
}
const kernel = (msg, model) => {
  if (msg.kind === "points") return Promise.resolve(pointsReply(getMeta(model), msg, "DataView"));
  if (msg.kind === "sample") { // this small grid's sample is every point: cells [start, stop) whole
    const per = 2 * getMeta(model).n_tokens;
    const [reply, buffers] = pointsReply(getMeta(model), { start: msg.start * per, stop: msg.stop * per }, "DataView");
    return Promise.resolve([{ ...reply, start: msg.start, stop: msg.stop }, buffers]);
  }
  return Promise.resolve([{ ok: true }, []]);
};
const picture = () => el.querySelector(".qk-fallback-picture");

beforeEach(() => { globalThis.URL.createObjectURL ??= () => "blob:fake"; globalThis.URL.revokeObjectURL ??= () => {}; });
afterEach(() => { cleanup?.(); el?.remove(); vi.useRealTimers(); });

describe("the view in a notebook", () => {
  it("reports started then ready, and shows no picture", async () => {
    mountNotebook({ answer: kernel });
    await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
    await vi.waitFor(() => expect(requests.filter((r) => r.kind === "status").map((r) => r.stage)).toEqual(["started", "ready"]));
    expect(requests[0]).toMatchObject({ kind: "status", stage: "started" }); // its very first message
    expect(picture()).toBeNull();
  });

  it("shows the display-time picture while no kernel answers, and drops it when one does", async () => {
    vi.useFakeTimers();
    let release;
    const gate = new Promise((r) => { release = r; });
    mountNotebook({ answer: (msg, model) => gate.then(() => kernel(msg, model)) });
    await vi.advanceTimersByTimeAsync(7000);
    expect(picture()).not.toBeNull();
    expect(el.querySelector(".qk-fallback-note").textContent).toMatch(/No answer from the Python kernel/);
    release();
    vi.useRealTimers();
    await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
    expect(picture()).toBeNull();
  });

  it("a grid that cannot load reports failed and shows the picture under the error", async () => {
    mountNotebook({ answer: (msg) => (msg.kind === "sample" ? Promise.resolve([{ error: "MemoryError: no" }, []]) : Promise.resolve([{ ok: true }, []])) });
    await vi.waitFor(() => expect(requests.some((r) => r.kind === "status" && r.stage === "failed")).toBe(true));
    expect(requests.find((r) => r.stage === "failed").error).toMatch(/MemoryError/);
    expect(picture()).not.toBeNull();
    expect(el.querySelector(".qk-error").textContent).toMatch(/MemoryError/);
  });

  it("a lasso larger than one upload message goes in parts, then the trait says which", async () => {
    const state = smallState();
    state._meta.upload_bytes = 1; // every selection is over the budget here
    const parts = [];
    const model = mountNotebook({
      state,
      answer: (msg, m, buffers) => {
        if (msg.kind === "selection_part") parts.push(new Uint8Array(buffers[0].buffer).slice());
        return kernel(msg, m);
      },
    });
    await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
    scatters.at(-1).emit("select", { points: [3, 4, 30, 38] }); // on the matrix: global indices
    await vi.waitFor(() => expect(model.get("_selection")?.encoding).toBe("parts"));
    const wire = model.get("_selection");
    expect(parts).toHaveLength(wire.parts);
    expect(requests.filter((r) => r.kind === "selection_part").every((r) => r.nbuf === 1)).toBe(true);
    // what Python assembles is the selection
    const joined = Uint8Array.from(parts.flatMap((p) => Array.from(p)));
    expect(Array.from(unpackSelection({ ...wire.inner, view: new DataView(joined.buffer) }))).toEqual([3, 4, 30, 38]);
    expect(el.querySelector(".qk-root").dataset.qkSelected).toBe("4");
  });

  it("a small lasso is one trait message, no parts", async () => {
    const model = mountNotebook({ answer: kernel });
    await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
    scatters.at(-1).emit("select", { points: [3, 4, 30, 38] });
    expect(model.get("_selection").encoding).not.toBe("parts");
    expect(Array.from(unpackSelection(model.get("_selection")))).toEqual([3, 4, 30, 38]);
    expect(requests.some((r) => r.kind === "selection_part")).toBe(false);
  });
});
