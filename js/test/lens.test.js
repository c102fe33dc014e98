// @vitest-environment happy-dom
// The research lens in the canvas view (strict fake model, regl-scatterplot replaced by a
// recorder): the head atlas (tint, filter, rank, the focused head's scores, the similar-heads map),
// the probe's points and lines, the value-norm colour field, and the linked hover ring.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { rankCells } from "../src/canvas/atlas.js";
import { encodeField, fillColorIndex } from "../src/canvas/colors.js";
import { decodeProbe } from "../src/canvas/probe.js";
import { getMeta, getTokens } from "../src/model.js";
import { staticTransport } from "../src/page/transport.js";
import { fakeModel, pointChunks, smallState, wire } from "./fixtures.js";

const scatters = [];
vi.mock("regl-scatterplot", () => ({
  createRenderer: () => ({ isDestroyed: false }),
  default: (opts) => {
    const handlers = {}, sc = {
      opts, props: {}, draws: [], selected: null, annotations: null, destroyed: false,
      set(p) { Object.assign(sc.props, p); },
      get: (name) => (name === "spatialIndex" ? { built: true } : sc.props[name]),
      async draw(points, o) { sc.draws.push({ points, o }); },
      subscribe(ev, fn) { handlers[ev] = fn; },
      emit: (ev, payload) => handlers[ev]?.(payload),
      select(points) { sc.selected = [...points]; },
      deselect() { sc.selected = []; },
      getScreenPosition: (i) => [i, i],
      clearAnnotations() { sc.annotations = null; },
      drawAnnotations(a) { sc.annotations = a; },
      reset() {},
      destroy() { sc.destroyed = true; },
    };
    scatters.push(sc);
    return sc;
  },
}));
const { default: widget } = await import("../src/index.js");

const NAMES = ["previous_token", "entropy"];
// 4 cells: previous_token 0.9, 0.1, NaN, 0.5; entropy 1, 2, 3, 4
const SCORES = Float32Array.from([0.9, 0.1, NaN, 0.5, 1, 2, 3, 4]);

function lensState(extra = {}) {
  const s = smallState();
  const m = 2; // a probe of one 2-token sentence
  const coords = new Float32Array(4 * 2 * m * 2);
  for (let i = 0; i < coords.length; i++) coords[i] = ((i % 7) - 3) / 10;
  return {
    ...s,
    _meta: {
      ...s._meta, has_values: true, can_probe: true, link_hover: true,
      scores: { names: NAMES, values: wire(SCORES, [2, 4]) },
      similar: {
        xy: wire(Float32Array.from([0, 0, 1, 0, 0, 1, 1, 1]), [4, 2]),
        nearest: wire(Int32Array.from([1, 2, 0, 3, 3, 0, 2, 1]), [4, 2]),
        nearest_js: wire(Float32Array.from([0.1, 0.2, 0.1, 0.3, 0.2, 0.4, 0.2, 0.3]), [4, 2]),
      },
    },
    _probe: {},
    _hover: -1,
    ...extra,
  };
}
function probeWire() {
  const m = 2, coords = new Float32Array(4 * 2 * m * 2);
  for (let i = 0; i < coords.length; i++) coords[i] = ((i % 7) - 3) / 10;
  // one sequence of 2 tokens per cell: query 1 attends 0.8 to key 0
  const att = new Float32Array(4 * 4);
  for (let c = 0; c < 4; c++) att.set([1, 0, 0.8, 0.2], c * 4);
  return {
    n_tokens: m, display: ["hi", "there"], texts: ["hi there"], seq: wire(Uint32Array.from([0, 0])),
    pos: wire(Uint32Array.from([0, 1])), coords: wire(coords, [16, 2]), attention: wire(att, [4, 4]),
    offsets: wire(Uint32Array.from([0])),
  };
}

let el, cleanup, model, requests;
async function mount(state) {
  model = fakeModel(state);
  const meta = getMeta(model);
  const chunks = pointChunks(meta).map((c) => ({ ...c, vnorms: wire(Uint8Array.from({ length: c.stop - c.start }, (_, i) => (c.start + i) * 5)) }));
  const transport = staticTransport({ points: chunks, topk: null, meta: state._meta,
    tokens: { seq: Uint32Array.from([0, 0, 0, 1, 1]), pos: Uint32Array.from([0, 1, 2, 0, 1]) } });
  requests = [];
  model.fetchDetail = (r) => {
    requests.push(r);
    if (r.kind === "probe") { model.set("_probe", r.text ? probeWire() : {}); return Promise.resolve({ n_tokens: r.text ? 2 : 0 }); }
    return transport(r);
  };
  el = document.createElement("div");
  document.body.append(el);
  cleanup = widget.render({ model, el });
  await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
  return el.querySelector(".qk-root");
}
const choose = (root, value, top = null) => {
  const sel = root.querySelector(".qk-atlas-score");
  sel.value = value;
  sel.dispatchEvent(new Event("change"));
  if (top != null) {
    const t = root.querySelector(".qk-atlas-top");
    t.value = String(top);
    t.dispatchEvent(new Event("change"));
  }
};

beforeEach(() => { scatters.length = 0; });
afterEach(() => { cleanup?.(); el?.remove(); });

describe("rankCells", () => {
  it("ranks finite values, best first, and reports their range", () => {
    const r = rankCells(Float32Array.from([0.2, NaN, 0.9, 0.2]));
    expect(r.ranked).toEqual([2, 0, 3]);
    expect([r.lo, r.hi]).toEqual([Math.fround(0.2), Math.fround(0.9)]);
    expect(rankCells([3, 1, 2], "asc").ranked).toEqual([1, 2, 0]);
  });
});

describe("the head atlas", () => {
  it("tints every cell by the chosen score, prints its value and dims all but the top N", async () => {
    const root = await mount(lensState());
    const options = [...root.querySelectorAll(".qk-atlas-score option")].map((o) => o.value);
    expect(options).toEqual(["", "recall", "previous_token", "entropy"]);
    choose(root, "previous_token", 2);
    const cells = [...root.querySelectorAll(".qk-cell")];
    expect(cells.map((c) => c.querySelector(".qk-cell-score")?.textContent)).toEqual(["0.900", "0.100", "–", "0.500"]);
    expect(cells.map((c) => c.dataset.out ?? "")).toEqual(["", "true", "true", ""]);
    expect(cells[0].style.background).toMatch(/rgba/);
    expect(root.dataset.qkAtlas).toBe("previous_token:2:desc");
    // the ranking: best first; a click focuses that head
    const rows = [...root.querySelectorAll(".qk-atlas-row")];
    expect(rows.map((r) => r.firstChild.textContent)).toEqual(["L0 H0", "L2 H1", "L0 H1"]);
    rows[1].click();
    expect([model.get("layer"), model.get("head")]).toEqual([2, 1]);
    await vi.waitFor(() => expect(root.dataset.qkMode).toBe("single"));
    // the focused head's scores and its most similar heads
    const kv = Object.fromEntries([...root.querySelectorAll(".qk-atlas-kv")].map((r) => [r.dataset.score, r.lastChild.textContent]));
    expect(kv).toMatchObject({ recall: "1.000", previous_token: "0.500", entropy: "4.000" });
    expect(Object.keys(kv)).toEqual(["recall", "previous_token", "entropy"]); // _vw twins share a row
    expect(root.querySelector(".qk-atlas-near").textContent).toMatch(/L2 H0.*L0 H1/);
  });

  it("the similar-heads map: a dot per head, the focused one ringed, a click opens a head", async () => {
    const root = await mount(lensState({ layer: 0, head: 1 }));
    const dots = root.querySelectorAll(".qk-simmap-dot");
    expect(dots).toHaveLength(4);
    expect(root.querySelector(".qk-simmap-focus").dataset.cell).toBe("1");
    expect(root.querySelectorAll(".qk-simmap-link")).toHaveLength(2); // its two nearest
    dots[3].dispatchEvent(new Event("click"));
    expect([model.get("layer"), model.get("head")]).toEqual([2, 1]);
  });
});

describe("the probe", () => {
  it("the text box asks Python to place the text; its points are drawn in every cell", async () => {
    const root = await mount(lensState());
    const input = root.querySelector(".qk-probe-text");
    input.value = "hi there";
    root.querySelector(".qk-probe-go").click();
    await vi.waitFor(() => expect(root.dataset.qkProbe).toBe("2"));
    expect(requests.find((r) => r.kind === "probe")).toEqual({ kind: "probe", text: "hi there" });
    const sc = scatters[0];
    expect(sc.annotations).toHaveLength(4 * 2 * 2 * 2); // 4 cells x (2 queries + 2 keys) x (halo + diamond), no lines
    root.querySelector(".qk-probe-clear").click();
    await vi.waitFor(() => expect(root.dataset.qkProbe).toBe(""));
    expect(sc.annotations).toBeNull();
  });

  it("in the focused head: the probe's points and its attention lines", async () => {
    const root = await mount(lensState({ layer: 2, head: 0, _probe: probeWire() }));
    await vi.waitFor(() => expect(root.dataset.qkProbeLines).toBe("3")); // q0->k0, q1->k0, q1->k1
    expect(scatters[0].annotations).toHaveLength(3 + 2 * 4);
    expect(decodeProbe(probeWire()).display).toEqual(["hi", "there"]);
    expect(decodeProbe({})).toBeNull();
  });

  it("a standalone page (no _probe trait) shows no probe box", async () => {
    const s = lensState();
    delete s._probe;
    const root = await mount(s);
    expect(root.querySelector(".qk-probe-text")).toBeNull();
  });
});

describe("values and linked hover", () => {
  it("colours by each point's value norm", async () => {
    const root = await mount(lensState());
    const opts = [...root.querySelectorAll(".qk-color option")].map((o) => o.value);
    expect(opts).toContain("value_norm");
    const enc = encodeField("value_norm", getTokens(model), {}, 5, false);
    expect(enc.byValue).toBe(true);
    const ids = Uint32Array.from({ length: 10 }, (_, i) => i); // the drawn points: cell 0 whole
    const z = fillColorIndex(new Float32Array(10), enc, ids, 5, Uint8Array.from([0, 255, 128, 0, 0, 0, 255, 0, 0, 0]), 100, 99, null);
    expect([z[0], z[1], z[5], z[6]]).toEqual([0, 31, 32, 63]); // low/high query, low/high key bins
  });

  it("hovering a point writes _hover; the other widget's hover gets a ring", async () => {
    const root = await mount(lensState({ layer: 0, head: 1 })); // cell 1: global points 10..19
    scatters[0].emit("pointOver", 3);
    await vi.waitFor(() => expect(model.get("_hover")).toBe(13));
    model.set("_hover", 17); // from the linked widget
    expect(root.dataset.qkHoverRing).toBe("7");
    model.set("_hover", -1);
    expect(root.dataset.qkHoverRing).toBe("");
  });
});
