// Search and highlight dimming (issue 15 item 16): faded points stay faint however many stack.
import { describe, expect, it } from "vitest";
import { brightOnTop, encodeField, withDimmed } from "../src/canvas/colors.js";
import { BACKGROUND, QUERY_COLOR, hexToRgb } from "../src/ui/palette.js";

/** `count` points of RGBA `c` composited over `bg` ("over", as the scatter blends). */
const stack = (c, bg, count) => {
  let out = bg.slice(0, 3);
  for (let i = 0; i < count; i++) out = out.map((v, j) => c[j] * c[3] + v * (1 - c[3]));
  return out;
};
const distance = (a, b) => a.reduce((s, v, j) => s + Math.abs(v - b[j]), 0);

describe("dimmed colours", () => {
  for (const theme of ["light", "dark"]) {
    it(`a stack of dimmed points stays fainter than half a match (${theme})`, () => {
      const bg = BACKGROUND[theme];
      const { colors, opacity, half } = withDimmed([QUERY_COLOR], theme === "dark");
      const match = stack([...colors[0].slice(0, 3), opacity[0]], bg, 1);
      for (const count of [1, 2, 5, 27, 200]) {
        const faded = stack([...colors[half].slice(0, 3), opacity[half]], bg, count);
        expect(distance(faded, bg)).toBeLessThan(0.5 * distance(match, bg));
      }
      // still drawn (not hidden), and read as dimmed by the 3-D view (alpha < 0.5)
      expect(distance(stack([...colors[half].slice(0, 3), opacity[half]], bg, 1), bg)).toBeGreaterThan(0);
      expect(opacity[half]).toBeLessThan(0.5);
      expect(hexToRgb(QUERY_COLOR).map((v) => v / 255)).toEqual(colors[0].slice(0, 3));
    });
  }

  it("draws dimmed points first and bright ones on top; none dimmed: the scatter's own order", () => {
    const half = 3, z = [0, 4, 1, 5, 5, 2];
    const order = brightOnTop(z, half);
    expect([...order].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(order.slice(0, 3).every((i) => z[i] >= half)).toBe(true);
    expect(order.slice(3).every((i) => z[i] < half)).toBe(true);
    expect(brightOnTop([0, 1, 2], half)).toBeNull();
    expect(brightOnTop([3, 4], half)).toBeNull();
  });
});

describe("the sequence legend", () => {
  it("counts sequences, not colours", () => {
    const n = 30;
    const tokens = { seq: Uint32Array.from({ length: n }, (_, i) => i), pos: new Uint32Array(n), seqLen: new Uint32Array(n).fill(1) };
    const { legend, query } = encodeField("sequence", tokens, {});
    expect(legend.total).toBe(30);
    expect(legend.unit).toBe("sequences");
    expect(legend.names.length).toBe(20);
    expect(query[25]).toBe(query[5]); // colours repeat every 20 sequences
    expect(encodeField("sequence", { ...tokens, seq: tokens.seq.subarray(0, 5) }, {}).legend.total).toBeUndefined();
  });
});
