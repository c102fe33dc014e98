import { describe, expect, it } from "vitest";
import { PARKED, denseFromSample } from "../src/static/sample.js";

const wire = (a, dtype, shape) => ({ view: new DataView(a.buffer), dtype, shape });

describe("denseFromSample (a page that holds a sample of most heads)", () => {
  // 2 cells x 3 tokens (6 points each); the page holds points 4 and 1 of cell 0, cell 1 whole
  const meta = { n_tokens: 3, n_points: 12, chunk_points: 5, dim: 2, sample_points: 2,
    order: wire(Uint32Array.from([4, 1, 0, 2, 3, 5]), "uint32", [6]) };
  const whole = Float32Array.from({ length: 12 }, (_, i) => 0.1 * i);
  const embedded = {
    lod: { full: wire(Uint8Array.from([0, 1]), "uint8", [2]) },
    points: [{ start: 6, stop: 12, coords: wire(whole, "float32", [6, 2]), norms: wire(Uint8Array.from([1, 2, 3, 4, 5, 6]), "uint8", [6]) }],
    sample: [{ start: 0, stop: 2, coords: wire(Float32Array.from([0.5, 0.6, -0.5, -0.6, 9, 9, 9, 9]), "float32", [2, 2, 2]),
      norms: wire(Uint8Array.from([7, 8, 0, 0]), "uint8", [2, 2]) }],
  };

  it("places the sample at its points, the whole heads as they are, the rest parked", () => {
    expect(denseFromSample(embedded, meta)).toBe(true);
    const chunks = embedded.points;
    expect(chunks.map((c) => [c.start, c.stop])).toEqual([[0, 5], [5, 10], [10, 12]]);
    const xy = new Float32Array(24), nm = new Uint8Array(12);
    for (const c of chunks) {
      xy.set(new Float32Array(c.coords.view.buffer, c.coords.view.byteOffset, c.coords.view.byteLength / 4), c.start * 2);
      nm.set(new Uint8Array(c.norms.view.buffer, c.norms.view.byteOffset, c.norms.view.byteLength), c.start);
    }
    expect([xy[8], xy[9], nm[4]]).toEqual([Math.fround(0.5), Math.fround(0.6), 7]); // cell 0, point 4
    expect([xy[2], xy[3], nm[1]]).toEqual([Math.fround(-0.5), Math.fround(-0.6), 8]); // cell 0, point 1
    for (const p of [0, 2, 3, 5]) expect([xy[2 * p], xy[2 * p + 1], nm[p]]).toEqual([PARKED, PARKED, 0]);
    expect(Array.from(xy.subarray(12))).toEqual(Array.from(whole)); // cell 1 whole, not the sample's 9s
    expect(Array.from(nm.subarray(6))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("leaves a page that holds everything alone", () => {
    const page = { points: [{ start: 0, stop: 12 }] };
    expect(denseFromSample(page, meta)).toBe(false);
    expect(page.points).toHaveLength(1);
  });
});
