// The standalone page's answers (js/src/page/) on the tests' fake model: what the side panel
// and the lines get without a kernel.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { getMeta, getTokens } from "../src/model.js";
import { getPointStore } from "../src/points.js";
import { createModel, invoke } from "../src/page/model.js";
import { fromKeyDelta } from "../src/page/topk.js";
import { staticTransport } from "../src/page/transport.js";
import { fakeModel, pointChunks, smallState, wire } from "./fixtures.js";

const KEY_DELTA = JSON.parse(readFileSync(new URL("./reference.json", import.meta.url), "utf8")).key_delta;
const NONE = 0xffffffff;

/** The page's embedded data for smallState(): top-2 keys of every query of every head. */
function page(state = smallState()) {
  const meta = state._meta, tokens = { seq: Uint32Array.from([0, 0, 0, 1, 1]), pos: Uint32Array.from([0, 1, 2, 0, 1]),
    category: Uint8Array.from([2, 0, 1, 2, 0]), display: state._tokens.display };
  const cells = meta.layers.length * meta.heads.length;
  // cell c: query t's strongest key is position (t + c) % len, weight 0.6; the next one 0.3
  const topk = Array.from({ length: cells }, (_, c) => {
    const keys = new Uint32Array(meta.n_tokens * 2), weights = new Float32Array(meta.n_tokens * 2);
    for (let t = 0; t < meta.n_tokens; t++) {
      const len = tokens.seq[t] === 0 ? 3 : 2;
      keys[2 * t] = (tokens.pos[t] + c) % len; keys[2 * t + 1] = (tokens.pos[t] + c + 1) % len;
      weights[2 * t] = 0.6; weights[2 * t + 1] = 0.3;
    }
    return { layer: meta.layers[Math.floor(c / 2)], head: meta.heads[c % 2], keys: wire(keys, [5, 2]), weights: wire(weights, [5, 2]) };
  });
  const aggregate = {
    count: wire(Int32Array.from([2, 0, 2, 2])), offsets: wire(Int32Array.from([-1, 0, 1])), n_seqs: 2,
    cells: Array.from({ length: cells }, (_, c) => ({ scores: { previous: 0.1 * c, self: 0.5, next: 0.2, first: 0.2 },
      by_position: wire(Float32Array.from([1, 0, 0.5, 0.5])), by_offset: wire(Float32Array.from([0.25, 0.5, 0.25])),
      by_offset_mean: wire(Float32Array.from([0.3, 0.5, 0.3])) })),
  };
  return { points: pointChunks(meta), topk, aggregate, images: null, meta, tokens };
}

describe("fromKeyDelta (undoes qkviz.export's key-delta layout)", () => {
  it("restores the table Python encoded", () => {
    const out = fromKeyDelta({ layout: KEY_DELTA.layout, keys: Uint32Array.from(KEY_DELTA.keys), weights: Float32Array.from(KEY_DELTA.weights) }, KEY_DELTA.n_tokens);
    expect(out.layout).toBeUndefined();
    expect(Array.from(out.keys)).toEqual(KEY_DELTA.expected_keys);
    out.weights.forEach((w, i) => expect(w).toBeCloseTo(KEY_DELTA.expected_weights[i], 6));
    expect(Array.from(out.keys)).toContain(NONE);
  });
  it("passes other tables through", () => {
    const e = { keys: new Uint32Array(2), weights: new Float32Array(2) };
    expect(fromKeyDelta(e, 1)).toBe(e);
  });
});

describe("staticTransport", () => {
  it("serves the embedded point chunks to the point store: the sample, whole heads, points by index", async () => {
    const model = fakeModel(), transport = staticTransport(page());
    const store = getPointStore(model, transport);
    const sample = await store.loadSample();
    expect(sample.coords[2 * 21]).toBe(21); // every point is in the sample of this small grid
    const head = await store.head(2);
    expect(head.coords[2 * 3]).toBe(23);
    // a range across two embedded chunks, and points the page lacks (NaN: not drawn)
    const r = await transport({ kind: "points", start: 14, stop: 18 });
    expect(Array.from(r.coords).filter((_, i) => i % 2 === 0)).toEqual([14, 15, 16, 17]);
    const far = await transport({ kind: "points_at", points: [39, 40] });
    expect(far.coords[0]).toBe(39);
    expect(Number.isNaN(far.coords[2])).toBe(true);
  });

  it("answers attention with the embedded top-k weights in a dense matrix", async () => {
    const transport = staticTransport(page());
    const r = await transport({ kind: "attention", layer: 2, head: 1, seq: 0 }); // cell 3
    expect(r.weights).toHaveLength(9);
    // query pos 1: keys (1 + 3) % 3 = 1 (0.6) and 2 (0.3)
    expect(Array.from(r.weights.subarray(3, 6)).map((v) => +v.toFixed(2))).toEqual([0, 0.6, 0.3]);
    expect(r.note).toBeUndefined(); // the lines ask without detail
    await expect(transport({ kind: "attention", layer: 1, head: 0, seq: 0 })).rejects.toThrow(/no head/);
    await expect(transport({ kind: "attention", layer: 0, head: 0, seq: 9 })).rejects.toThrow(/no tokens/);
    await expect(staticTransport({ ...page(), topk: null })({ kind: "attention", layer: 0, head: 0, seq: 0 })).rejects.toThrow(/not embedded/);
  });

  it("with detail, says plainly when the weights are a top-k cut (and nothing when whole)", async () => {
    const transport = staticTransport(page());
    const cut = await transport({ kind: "attention", layer: 0, head: 1, seq: 0, detail: true });
    expect(cut.note).toMatch(/top 2 of 3 keys/);
    expect(cut.value_norms).toBeNull();
    expect(cut.row).toBeUndefined(); // a text page: no patch grid
    // cell 1: query pos p keeps keys (p + 1) % 3 (0.6) and (p + 2) % 3 (0.3); others show as 0
    expect(Array.from(cut.weights).map((v) => +v.toFixed(2))).toEqual([0, 0.6, 0.3, 0.3, 0, 0.6, 0.6, 0.3, 0]);
    const whole = await transport({ kind: "attention", layer: 0, head: 0, seq: 1, detail: true }); // 2 tokens, 2 keys each
    expect(whole.note).toBe("");
  });

  it("with detail on an image page, adds the patch grid and the exact CLS row", async () => {
    const data = page();
    data.tokens.row = Int32Array.from([-1, 0, 0, -1, 0]);
    data.tokens.col = Int32Array.from([-1, 0, 1, -1, 0]);
    data.images = { cls: [0, 1, 2, 3].map((c) => wire(Float32Array.from([0.1, 0.2, 0.7, 0.5, 0.5].map((v) => v + c)))) };
    const r = await staticTransport(data)({ kind: "attention", layer: 2, head: 0, seq: 0, detail: true }); // cell 2
    expect(Array.from(r.row)).toEqual([-1, 0, 0]);
    expect(Array.from(r.col)).toEqual([-1, 0, 1]);
    expect(Array.from(r.cls).map((v) => +v.toFixed(2))).toEqual([2.1, 2.2, 2.7]);
    expect(r.image).toBeUndefined(); // no atlas embedded
  });

  it("answers aggregate from the embedded exact aggregates", async () => {
    const r = await staticTransport(page())({ kind: "aggregate", layer: 2, head: 0 }); // cell 2
    expect(r.scores.previous).toBeCloseTo(0.2);
    expect(Array.from(r.offsets)).toEqual([-1, 0, 1]);
    expect(r.by_offset).toBeInstanceOf(Float32Array);
    expect(r.note).toBe("");
  });

  it("refuses kinds the page does not answer, saying why", async () => {
    for (const kind of ["sequence", "image", "nope"]) {
      await expect(staticTransport(page())({ kind, layer: 0, head: 0, seq: 0 })).rejects.toThrow(/not available in a static page/);
    }
  });

  it("reads the token table from the traits when not given decoded", async () => {
    const state = smallState(), data = { ...page(state), tokens: undefined, meta: undefined };
    const r = await staticTransport(data, state)({ kind: "attention", layer: 0, head: 0, seq: 1 });
    expect(r.weights).toHaveLength(4);
    const model = fakeModel(state);
    expect(getMeta(model).layers).toEqual([0, 2]);
    expect(getTokens(model).n).toBe(5);
  });
});

describe("the page model", () => {
  it("answers anywidget commands through send() and msg:custom, errors as {error}", async () => {
    const model = createModel({}, { answer: async (name, msg) => [{ name, twice: msg.x * 2 }, []] });
    expect((await invoke(model, "_qk_fetch", { x: 21 }))[0]).toEqual({ name: "_qk_fetch", twice: 42 });
    const none = createModel({});
    expect((await invoke(none, "_qk_fetch", {}))[0].error).toMatch(/nobody to answer/);
  });

  it("emits change events only for real changes, and off() removes a handler", () => {
    const model = createModel({ a: 1 }), seen = [];
    const h = (_m, v) => seen.push(v);
    model.on("change:a", h);
    model.set("a", 1);
    model.set("a", 2);
    model.off("change:a", h);
    model.set("a", 3);
    expect(seen).toEqual([2]);
  });
});
