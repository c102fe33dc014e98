import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TRAITS, cellOf, getColumns, getMeta, getTokens } from "../src/model.js";
import { fakeModel, smallState } from "./fixtures.js";

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
    // a state without a draw order (written before level of detail) is drawn whole, in index order
    expect(Array.from(meta.order)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(meta.sample_points).toBe(10);
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
});
