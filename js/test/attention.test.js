import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { hiddenSets, renormalize } from "../src/panel/attention.js";

// inputs and Python's own outputs (qkviz renormalize), kept in step by tests/widget/test_js_reference.py
const REF = JSON.parse(readFileSync(new URL("./reference.json", import.meta.url), "utf8")).renormalize;

describe("renormalize (the JS twin of Python's renormalize)", () => {
  const raw = Float32Array.from(REF.attention), n = REF.n;
  for (const c of REF.cases) {
    it(`matches Python: hidden keys ${JSON.stringify(c.hidden_keys)}, queries ${JSON.stringify(c.hidden_queries)}, weighted ${c.key_weights != null}`, () => {
      const out = renormalize(raw, n, n, { hiddenKeys: c.hidden_keys, hiddenQueries: c.hidden_queries, keyWeights: c.key_weights });
      expect(out).toHaveLength(n * n);
      for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(c.expected[i], 6);
    });
  }

  it("keeps every visible row stochastic and never changes the shape", () => {
    const out = renormalize(raw, n, n, { hiddenKeys: [1], hiddenQueries: [3] });
    for (let i = 0; i < n; i++) {
      const row = out.subarray(i * n, (i + 1) * n), total = row.reduce((a, b) => a + b, 0);
      if (i === 3 || raw.subarray(i * n, (i + 1) * n).every((v) => v === 0)) expect(total).toBe(0);
      else expect(total).toBeCloseTo(1, 5);
      expect(row[1]).toBe(0);
    }
  });
});

describe("hiddenSets", () => {
  it("adds special tokens and the first token, as the toggles say, to the explicit sets", () => {
    const special = Uint8Array.from([1, 0, 0, 1]);
    const none = hiddenSets(4, special, { hideKeys: new Set([2]), hideQueries: new Set(), hideSpecial: false, hideFirst: false });
    expect([...none.keys]).toEqual([2]);
    expect([...none.queries]).toEqual([]);
    const both = hiddenSets(4, special, { hideKeys: new Set([2]), hideQueries: new Set([1]), hideSpecial: true, hideFirst: true });
    expect([...both.keys].sort()).toEqual([0, 2, 3]);
    expect([...both.queries].sort()).toEqual([0, 1, 3]);
  });
});
