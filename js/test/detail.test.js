// The side panel's per-sequence views, computed in the browser from one sequence's attention,
// against Python's own numbers (qkviz.analysis.image_detail, qkviz.attention.overlay_strength),
// which tests/widget/test_js_reference.py keeps in js/test/reference.json.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { imageDetail, overlayStrength, sequenceDetail } from "../src/panel/detail.js";

const REF = JSON.parse(readFileSync(new URL("./reference.json", import.meta.url), "utf8"));
const close = (got, want, digits = 6) => {
  expect(got).toHaveLength(want.length);
  want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, digits));
};

describe("overlayStrength (AttentionViz's darkening, as Python's overlay_strength)", () => {
  for (const { heat, expected } of REF.overlay_strength) {
    it(`matches Python for [${heat}]`, () => close(overlayStrength(Float32Array.from(heat)), expected));
  }
});

describe("imageDetail (as Python's image_detail)", () => {
  const { attention, row, col, views } = REF.image;
  const n = row.length;
  const tokens = { seq: new Uint32Array(n), pos: Uint32Array.from(row, (_, i) => i), category: Uint8Array.from(row, (r) => (r < 0 ? 2 : 0)),
    display: row.map((r, i) => (r < 0 ? "[CLS]" : `patch ${i}`)) };
  const d = sequenceDetail({ layer: 0, head: 0, seq: 0, weights: Float32Array.from(attention), row: Int32Array.from(row), col: Int32Array.from(col) }, tokens, "image");

  for (const v of views) {
    it(`matches Python for patch ${v.patch} as a ${v.kind}`, () => {
      const js = imageDetail(d, v.patch, v.kind);
      expect(js.grid).toEqual(v.grid);
      expect([js.patch_row, js.patch_col]).toEqual([v.patch_row, v.patch_col]);
      for (const k of ["heat", "strength", "to_special", "cls_heat", "argmax_weight"]) close(Array.from(js[k]), v[k]);
      expect(Array.from(js.argmax)).toEqual(v.argmax); // ties go to the first position, as numpy's argmax
    });
  }

  it("takes the CLS map from an exact CLS row when the reply carries one (a page's top-k cut)", () => {
    const cls = Float32Array.from({ length: n }, (_, i) => i / 10);
    const js = imageDetail({ ...d, cls }, 3, "query");
    expect(Array.from(js.cls_heat).map((v) => +v.toFixed(2))).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
  });

  it("refuses a patch outside the image and a sequence without a patch grid", () => {
    expect(() => imageDetail(d, n, "query")).toThrow(/out of range/);
    expect(() => imageDetail({ ...d, row: null }, 1, "query")).toThrow(/patch grid/);
  });
});

describe("sequenceDetail", () => {
  const tokens = { seq: Uint32Array.from([1, 0, 1, 1]), pos: Uint32Array.from([2, 0, 0, 1]), category: Uint8Array.from([0, 2, 2, 1]),
    display: ["c", "x", "[CLS]", "b"] };
  it("orders the seq's tokens by position and marks special ones", () => {
    const d = sequenceDetail({ layer: 3, head: 1, seq: 1, weights: new Float32Array(9).fill(1 / 3), value_norms: null }, tokens, "text");
    expect(Array.from(d.token)).toEqual([2, 3, 0]);
    expect(d.display).toEqual(["[CLS]", "b", "c"]);
    expect(Array.from(d.special)).toEqual([1, 0, 0]);
    expect(d.value_norms).toBeNull();
    expect(d.note).toBe("");
  });
  it("refuses attention whose size is not the sequence's", () => {
    expect(() => sequenceDetail({ seq: 1, weights: new Float32Array(4) }, tokens, "text")).toThrow(/3 tokens/);
  });
});
