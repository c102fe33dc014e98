// @vitest-environment happy-dom
// The whole canvas view on the strict fake model, with regl-scatterplot replaced by a recorder
// (no WebGL here): what a person's clicks write to Python, what Python's changes redraw, and
// that the view reads and writes no trait outside model.js TRAITS.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { staticTransport } from "../src/page/transport.js";
import { getMeta } from "../src/model.js";
import { unpackSelection } from "../src/wire/selection.js";
import { fakeModel, pointChunks, smallState } from "./fixtures.js";

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

let el, cleanup, model, requests;
async function mount(state = smallState()) {
  model = fakeModel(state);
  const chunks = pointChunks(getMeta(model));
  // top-1 key of every query: its own position (so lines go from a query to its own key)
  const n = state._meta.n_tokens, cells = 4;
  const topk = Array.from({ length: cells }, () => ({ keys: Uint32Array.from([0, 1, 2, 0, 1]), weights: new Float32Array(n).fill(0.9) }));
  const transport = staticTransport({ points: chunks, topk, meta: state._meta,
    tokens: { seq: Uint32Array.from([0, 0, 0, 1, 1]), pos: Uint32Array.from([0, 1, 2, 0, 1]) } });
  requests = [];
  model.fetchDetail = (r) => { requests.push(r.kind); return transport(r); };
  el = document.createElement("div");
  document.body.append(el);
  cleanup = widget.render({ model, el });
  await vi.waitFor(() => expect(el.querySelector(".qk-root").dataset.qkReady).toBe("1"));
  return el.querySelector(".qk-root");
}
const settle = () => new Promise((r) => setTimeout(r, 0));

beforeEach(() => { scatters.length = 0; });
afterEach(() => { cleanup?.(); el?.remove(); });

describe("the canvas view", () => {
  it("draws the matrix of every head, labelled", async () => {
    const root = await mount();
    expect(root.dataset.qkMode).toBe("matrix");
    expect(root.querySelectorAll(".qk-cell")).toHaveLength(4);
    expect(root.querySelector(".qk-cell-label").textContent).toBe("L0 H0");
    expect(root.querySelector(".qk-status").textContent).toMatch(/2 layers × 2 heads · 5 tokens · 40 points/);
    const sc = scatters[0];
    expect(sc.draws.at(-1).points.x).toHaveLength(40);
    // the matrix's sample (here every point: the grid is small), one cell per message of <= 16 points
    expect(requests.filter((k) => k === "sample")).toHaveLength(4);
    expect(requests.filter((k) => k === "points")).toHaveLength(0);
  });

  it("a toolbar change writes its trait once; back to the matrix writes layer and head together", async () => {
    const root = await mount({ ...smallState(), layer: 2, head: 1 });
    expect(root.dataset.qkMode).toBe("single");
    expect(root.dataset.qkLayer).toBe("2");
    const colour = root.querySelector(".qk-color");
    colour.value = "position";
    colour.dispatchEvent(new Event("change"));
    expect(model.get("color")).toBe("position");
    root.querySelector(".qk-back").click();
    expect(model._saves.slice(-2)).toEqual([["color"], ["layer", "head"]]);
    await vi.waitFor(() => expect(root.dataset.qkMode).toBe("matrix"));
  });

  it("a click on a point selects it (global index), draws its lines and tells the panel", async () => {
    const root = await mount({ ...smallState(), layer: 2, head: 0 }); // cell 2
    const sc = scatters[0];
    sc.emit("select", { points: [1] }); // query of token 1
    expect(Array.from(unpackSelection(model.get("_selection")))).toEqual([2 * 10 + 1]);
    await vi.waitFor(() => expect(root.dataset.qkLines).not.toBe(""));
    expect(JSON.parse(root.dataset.qkLines)).toMatchObject({ from: 21, kind: "query", to: [26] }); // its own key
    expect(sc.annotations).toHaveLength(1);
    expect(requests).toContain("attention");
  });

  it("follows Python: a selection, a search and a theme sent from the kernel", async () => {
    const root = await mount();
    const sc = scatters[0];
    model.set("_selection", { view: new DataView(Uint32Array.from([3, 17]).buffer), dtype: "uint32", shape: [2] });
    expect(sc.selected).toEqual([3, 17]);
    expect(root.dataset.qkSelected).toBe("2");
    model.set("search_query", "CAT");
    expect(root.dataset.qkSearchCount).toBe("1");
    expect(root.querySelector(".qk-search").value).toBe("CAT");
    model.set("theme", "dark");
    expect(root.dataset.qkTheme).toBe("dark");
    await settle();
  });

  it("cleanup removes the view, its scatter and every model listener", async () => {
    await mount();
    cleanup();
    cleanup = null;
    expect(el.querySelector(".qk-root")).toBeNull();
    expect(scatters[0].destroyed).toBe(true);
    const draws = scatters[0].draws.length;
    model.set("color", "sequence");
    model.set("layer", 0);
    await settle();
    expect(scatters[0].draws.length).toBe(draws);
  });
});
