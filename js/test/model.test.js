import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TRAITS, cellOf, getColumns, getMeta, getTokens, loadGrid } from "../src/model.js";
import { fakeModel, pointChunks, smallState, wire } from "./fixtures.js";

const SRC = new URL("../src/", import.meta.url).pathname;

function sources(dir = SRC) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : name.endsWith(".js") ? [[path.slice(SRC.length), readFileSync(path, "utf8")]] : [];
  });
}

describe("the model interface", () => {
  it("TRAITS lists exactly the keys of the QKVizTraits typedef, in order", () => {
    const text = readFileSync(join(SRC, "model.js"), "utf8");
    const block = text.match(/@typedef \{object\} QKVizTraits\n([\s\S]*?)\*\//)[1];
    const typed = [...block.matchAll(/@property \{[^}]*\} (\w+)/g)].map((m) => m[1]);
    expect(typed).toEqual([...TRAITS]);
  });

  it("the front end names no trait outside TRAITS (get, set, change events)", () => {
    const used = new Set();
    for (const [, text] of sources()) {
      for (const m of text.matchAll(/\bmodel(?:\?\.)?\.(?:get|set)(?:\?\.)?\(\s*["'](\w+)["']/g)) used.add(m[1]);
      for (const m of text.matchAll(/["']change:(\w+)["']/g)) used.add(m[1]);
      for (const m of text.matchAll(/\bsetTrait\(\s*model,\s*["'](\w+)["']/g)) used.add(m[1]);
      for (const m of text.matchAll(/\bsetTraits\(\s*model,\s*\{([^}]*)\}/g)) {
        for (const k of m[1].matchAll(/(\w+)\s*(?=[:,]|$)/g)) used.add(k[1]);
      }
    }
    // the scan sees the traits it must (else it would pass by finding nothing)
    for (const name of ["layer", "head", "color", "_selection", "_meta", "search_query", "lines_k"]) expect(used).toContain(name);
    expect([...used].filter((name) => !TRAITS.includes(name))).toEqual([]);
  });

  it("only sync.js writes traits and saves", () => {
    const writers = sources().filter(([, text]) => /\.save_changes\(|\bmodel\.set\(/.test(text)).map(([path]) => path);
    expect(writers).toEqual(["sync.js"]);
  });
});

describe("cellOf", () => {
  const meta = { layers: [0, 2, 5], heads: [1, 3] };
  it("is layer-major over the grid's layers and heads", () => {
    expect(cellOf(meta, 0, 1)).toBe(0);
    expect(cellOf(meta, 0, 3)).toBe(1);
    expect(cellOf(meta, 2, 1)).toBe(2);
    expect(cellOf(meta, 5, 3)).toBe(5);
  });
  it("is -1 for a layer or head not in the grid (never a wrong cell)", () => {
    expect(cellOf(meta, 1, 1)).toBe(-1);
    expect(cellOf(meta, 0, 2)).toBe(-1);
    expect(cellOf(meta, 2, 0)).toBe(-1); // the bare formula gives 1 * 2 + (-1) = 1: a wrong head
    expect(cellOf(meta, 1, 3)).toBe(-1); // and -1 * 2 + 1 = -1 only by luck
    expect(cellOf(meta, null, null)).toBe(-1);
  });
});

describe("decoding the wire traits", () => {
  it("getMeta fills defaults and decodes recall", () => {
    const meta = getMeta(fakeModel());
    expect(meta).toMatchObject({ layers: [0, 2], heads: [0, 1], n_tokens: 5, n_points: 40, dim: 2, has_images: false });
    expect(Array.from(meta.recall)).toEqual([0.5, 0.25, -1, 1]);
    const empty = getMeta(fakeModel({ ...smallState(), _meta: {} }));
    expect(empty).toMatchObject({ layers: [], n_points: 0, dim: 2, chunk_points: 1 << 20, single_scale: 0.9 });
  });

  it("getTokens decodes the token table once per model", () => {
    const model = fakeModel();
    const t = getTokens(model);
    expect(Array.from(t.seq)).toEqual([0, 0, 0, 1, 1]);
    expect(t.seqLen).toBeInstanceOf(Uint32Array);
    expect(t.category).toBeInstanceOf(Uint8Array);
    expect(t.display[4]).toBe("Dog");
    expect(getTokens(model)).toBe(t);
  });

  it("getColumns decodes user columns", () => {
    const cols = getColumns(fakeModel());
    expect(cols.freq.type).toBe("numeric");
    expect(Array.from(cols.freq.values)).toEqual([1, 2, 3, 4, 5]);
  });

  it("loadGrid pulls every chunk once and assembles coords and norms", async () => {
    const model = fakeModel(), requests = [];
    const chunks = pointChunks(getMeta(model));
    const fetchDetail = async (r) => { requests.push(r); return chunks.find((c) => c.start === r.start); };
    const grid = await loadGrid(model, fetchDetail);
    expect(requests).toEqual([{ kind: "points", start: 0, stop: 16 }, { kind: "points", start: 16, stop: 32 }, { kind: "points", start: 32, stop: 40 }]);
    expect(grid.coords.length).toBe(80);
    expect(grid.coords[2 * 37]).toBe(37);
    expect(grid.coords[2 * 37 + 1]).toBeCloseTo(37.1, 5);
    expect(grid.norms[39]).toBe(39);
    expect(await loadGrid(model, fetchDetail)).toBe(grid); // shared by every view of the model
    expect(requests).toHaveLength(3);
  });

  it("loadGrid lets a later view retry after a failed pull", async () => {
    const model = fakeModel();
    await expect(loadGrid(model, async () => { throw new Error("kernel gone"); })).rejects.toThrow("kernel gone");
    const chunks = pointChunks(getMeta(model));
    const grid = await loadGrid(model, async (r) => chunks.find((c) => c.start === r.start));
    expect(grid.norms[5]).toBe(5);
  });

  it("wire values may arrive as typed arrays already (a static page's decoded chunks)", async () => {
    const model = fakeModel({ ...smallState(), _meta: { ...smallState()._meta, chunk_points: 64 } });
    const [c] = pointChunks(getMeta(model));
    const grid = await loadGrid(model, async () => ({ ...c, coords: new Float32Array(c.coords.view.buffer), norms: wire(new Uint8Array(40).fill(9)) }));
    expect(grid.norms[0]).toBe(9);
  });
});
