// Level of detail in the front end, without a browser: drawn sets (canvas/lod.js), the matrix's
// geometry (canvas/matrix.js), the point store (points.js) and the static page's point answers.
import { describe, expect, it } from "vitest";
import {
  cellsBlock, concatDrawn, drawnIndicesOf, fillFromSample, headBlock, idsBlock, maskOf, rankOf, searchPoints,
  selectionExtras, withoutCells,
} from "../src/canvas/lod.js";
import {
  cellAt, cellOfRC, cellRC, cellsInRect, chooseTranspose, fitCanvas, gridGeometry, labelStep, matrixPositions,
} from "../src/canvas/matrix.js";
import { linearScale } from "../src/canvas/scatter.js";
import { pointsInPolygon } from "../src/canvas/scene3d.js";
import { HEAD_CACHE, createPointStore } from "../src/points.js";
import { staticPoints } from "../src/page/points.js";
import { wire } from "./fixtures.js";

// a head of 3 tokens: points 0..2 queries, 3..5 keys; this order interleaves them
const ORDER = Uint32Array.from([4, 0, 2, 5, 1, 3]);

describe("drawn sets", () => {
  it("a cells block holds the same points of every cell, leaving out missing heads and NaN points", () => {
    const points = Uint32Array.from([4, 0]); // the sample: first two of ORDER
    const coords = Float32Array.from([1, 1, 2, 2, /* cell 1 */ 3, 3, NaN, 0, /* cell 2 */ 5, 5, 6, 6]);
    const b = cellsBlock({ coords, norms: Uint8Array.from([1, 2, 3, 4, 5, 6]) }, points, 1, 6, 2, Uint8Array.from([0, 0, 0, 1]));
    expect(Array.from(b.ids)).toEqual([6 + 4, 6 + 0, 12 + 4]); // cell 1: both; cell 2: its NaN point out; cell 3 missing
    expect(Array.from(b.coords)).toEqual([1, 1, 2, 2, 3, 3]);
    expect(Array.from(b.norms)).toEqual([1, 2, 3]);
  });

  it("a whole head is drawn in the draw order: queries and keys interleaved", () => {
    const coords = Float32Array.from({ length: 12 }, (_, i) => i);
    const b = headBlock({ coords, norms: Uint8Array.from([0, 1, 2, 3, 4, 5]) }, ORDER, 2, 2);
    expect(Array.from(b.ids)).toEqual(Array.from(ORDER, (p) => 12 + p));
    expect(Array.from(b.norms)).toEqual(Array.from(ORDER));
    const kinds = Array.from(b.ids, (g) => ((g - 12) < 3 ? "q" : "k"));
    expect(kinds).toEqual(["k", "q", "q", "k", "q", "k"]); // never all of one kind on top
  });

  it("a head a page does not embed whole is filled from the matrix's sample", () => {
    const head = { coords: new Float32Array(12).fill(NaN), norms: new Uint8Array(6) };
    head.coords.set([7, 7], 2 * 2); // point 2 embedded
    const sample = { points: Uint32Array.from([4, 0]), coords: Float32Array.from([0, 0, 0, 0, 1, 1, 2, 2]), norms: Uint8Array.from([0, 0, 9, 8]) };
    const got = fillFromSample(head, sample, 1, 2); // cell 1: point 4 at (1, 1), point 0 at (2, 2)
    expect(got.finite).toBe(3);
    expect(Array.from(got.coords.subarray(0, 2))).toEqual([2, 2]);
    expect(Array.from(got.coords.subarray(8, 10))).toEqual([1, 1]);
    expect(got.norms[4]).toBe(9);
    expect(Number.isNaN(head.coords[0])).toBe(true); // the fetched head is left as it was
    const whole = { coords: new Float32Array(12), norms: new Uint8Array(6) };
    expect(fillFromSample(whole, sample, 1, 2).coords).toBe(whole.coords);
  });

  it("concatenates, drops cells drawn whole, and finds selected points among what is drawn", () => {
    const a = idsBlock(Uint32Array.from([1, 7]), { coords: Float32Array.from([0, 0, 1, 1]), norms: new Uint8Array(2) }, 2);
    const b = idsBlock(Uint32Array.from([13, 8]), { coords: Float32Array.from([2, 2, NaN, NaN]), norms: new Uint8Array(2) }, 2);
    const d = concatDrawn([a, b], 2);
    expect(Array.from(d.ids)).toEqual([1, 7, 13]);
    expect(Array.from(withoutCells(d, Uint8Array.from([0, 1, 0]), 6, 2).ids)).toEqual([1, 13]);
    expect(drawnIndicesOf(d.ids, [13, 99, 1])).toEqual([0, 2]);
  });

  it("searched points: the sample's missing ones, in draw order, at most `limit`", () => {
    const covered = maskOf(ORDER.subarray(0, 2), 6); // 4, 0 drawn already
    const match = Uint8Array.from([1, 1, 0]); // tokens 0 and 1 match: points 0, 1, 3, 4
    expect(Array.from(searchPoints(match, covered, ORDER, 10))).toEqual([1, 3]);
    expect(Array.from(searchPoints(match, covered, ORDER, 1))).toEqual([1]);
  });

  it("selected points not drawn, earliest in draw order first when over the limit", () => {
    const covered = maskOf(ORDER.subarray(0, 2), 6), rank = rankOf(ORDER);
    expect(Array.from(rank)).toEqual([1, 4, 2, 5, 0, 3]);
    const sel = Uint32Array.from([0, 3, 6 + 2, 12 + 5]); // 0 is covered; cell 2 is missing
    expect(Array.from(selectionExtras(sel, covered, rank, 6, Uint8Array.from([0, 0, 1]), 10))).toEqual([3, 8]);
    // over the limit: points 2 (rank 2) and 1 (rank 4) come before point 3 (rank 5)
    expect(Array.from(selectionExtras(Uint32Array.from([3, 8, 1]), covered, rank, 6, null, 2))).toEqual([8, 1]);
  });
});

describe("the matrix's geometry", () => {
  it("turns the grid when heads as rows give bigger cells", () => {
    expect(chooseTranspose(30, 9, 1000, 600)).toBe(true); // SmolLM2 in a wide widget: 9 rows of 30
    expect(chooseTranspose(6, 12, 1000, 600)).toBe(false); // MiniLM: 6 rows of 12 already
    expect(chooseTranspose(32, 32, 1000, 600)).toBe(false); // square grids keep layers as rows
    const g = gridGeometry(30, 9, 0.84, true);
    const [w, h] = fitCanvas(g, 1000, 600);
    expect(w).toBeLessThanOrEqual(1000);
    expect(h).toBeLessThanOrEqual(600);
    expect(w / 30).toBeCloseTo(h / 9, 0); // square cells
    expect(Math.max(w / 1000, h / 600)).toBeGreaterThan(0.97); // the room is used
  });

  it("maps cells to rows and columns and back, in both orientations", () => {
    for (const t of [false, true]) {
      const g = gridGeometry(3, 4, 0.84, t);
      for (let cell = 0; cell < 12; cell++) {
        const [r, c] = cellRC(g, cell);
        expect(cellOfRC(g, r, c)).toBe(cell);
        const x = -1 + (c + 0.5) * g.cw, y = 1 - (r + 0.5) * g.ch;
        expect(cellAt(g, x, y)).toMatchObject({ cell, layer: Math.floor(cell / 4), head: cell % 4 });
      }
      expect(cellAt(g, 1.01, 0)).toBeNull();
    }
    // transposed: rows are heads, so cell (layer 1, head 2) sits in row 2, column 1
    expect(cellRC(gridGeometry(3, 4, 0.84, true), 1 * 4 + 2)).toEqual([2, 1]);
  });

  it("lists the cells a lasso's box crosses", () => {
    const g = gridGeometry(2, 2, 0.84); // cells of 1 x 1 data units
    expect(cellsInRect(g, -0.9, 0.1, -0.1, 0.9)).toEqual([0]);
    expect(cellsInRect(g, -0.5, -0.5, 0.5, 0.5)).toEqual([0, 1, 2, 3]);
    expect(cellsInRect(g, 0.2, -0.9, 0.9, -0.2)).toEqual([3]);
  });

  it("places each drawn point in its own cell", () => {
    const g = gridGeometry(2, 2, 0.5);
    const { x, y } = matrixPositions(g, Float32Array.from([1, 1, -1, 0]), Uint32Array.from([3, 6 * 3 + 1]), 6, 2);
    expect([x[0], y[0]]).toEqual([-0.5 + 0.25, 0.5 + 0.25]); // cell 0 centre (-0.5, 0.5)
    expect([x[1], y[1]]).toEqual([0.5 - 0.25, -0.5]); // cell 3 centre (0.5, -0.5)
  });

  it("thins axis labels to a nice step", () => {
    expect(labelStep(20, 13)).toBe(1);
    expect(labelStep(9, 13)).toBe(2);
    expect(labelStep(2, 13)).toBe(10);
  });

  it("the lasso's polygon test keeps points inside and drops NaN", () => {
    const square = [0, 0, 1, 0, 1, 1, 0, 1];
    expect(Array.from(pointsInPolygon(Float32Array.from([0.5, 0.5, 2, 0.5, NaN, 0.5, 0.1, 0.9]), square))).toEqual([0, 3]);
  });

  it("the scales regl-scatterplot updates say what part of the data box is in view", () => {
    const s = linearScale([-1, 1]).range([0, 200]);
    expect(s(0)).toBe(100);
    expect(s.invert(50)).toBe(-0.5);
    s.domain([0, 0.5]);
    expect(s(0.25)).toBe(100);
    expect(s.copy().domain()).toEqual([0, 0.5]);
  });
});

// a grid of 4 cells x 6 points (3 tokens), coordinate = global index, chunks of 5 points
function fakeGrid() {
  const meta = { layers: [0, 1], heads: [0, 1], n_tokens: 3, dim: 2, chunk_points: 5, order: ORDER, sample_points: 2 };
  const requests = [];
  const answer = staticPoints({
    meta: { ...meta, order: wire(ORDER) },
    points: Array.from({ length: 5 }, (_, i) => {
      const start = i * 5, stop = Math.min(24, start + 5);
      const coords = Float32Array.from({ length: (stop - start) * 2 }, (_, j) => start + Math.floor(j / 2));
      return { start, stop, coords: wire(coords), norms: wire(Uint8Array.from({ length: stop - start }, (_, j) => start + j)) };
    }),
  });
  const fetchDetail = async (r) => { requests.push(r); return answer(r); };
  return { meta, requests, fetchDetail, answer };
}

describe("the point store", () => {
  it("loads the sample once, a few cells per message under the chunk budget", async () => {
    const { meta, requests, fetchDetail } = fakeGrid();
    const store = createPointStore(meta, fetchDetail);
    const s = await store.loadSample();
    expect(await store.loadSample()).toBe(s);
    // 2 points a cell, 5 per message: 2 cells a message
    expect(requests).toEqual([{ kind: "sample", start: 0, stop: 2 }, { kind: "sample", start: 2, stop: 4 }]);
    expect(Array.from(s.points)).toEqual([4, 0]);
    expect(Array.from(s.coords).filter((_, i) => i % 2 === 0)).toEqual([4, 0, 10, 6, 16, 12, 22, 18]);
  });

  it("loads a head whole in chunks, keeps the last few, and reads selected points from them", async () => {
    const { meta, requests, fetchDetail } = fakeGrid();
    const store = createPointStore(meta, fetchDetail);
    const h = await store.head(2);
    expect(requests).toEqual([{ kind: "points", start: 12, stop: 17 }, { kind: "points", start: 17, stop: 18 }]);
    expect(Array.from(h.norms)).toEqual([12, 13, 14, 15, 16, 17]);
    expect(await store.head(2)).toBe(h);
    requests.length = 0;
    const at = await store.at(Uint32Array.from([13, 20]));
    expect(Array.from(at.coords)).toEqual([13, 13, 20, 20]);
    expect(requests).toEqual([{ kind: "points_at", points: [20] }]); // 13 came from the head here
    for (let c = 0; c < HEAD_CACHE + 2; c++) await store.head(c % 4);
    expect(store.headIfReady(0)).not.toBeNull();
  });

  it("a failed pull lets the next view retry", async () => {
    const { meta, fetchDetail } = fakeGrid();
    let fail = true;
    const store = createPointStore(meta, async (r) => { if (fail) throw new Error("kernel gone"); return fetchDetail(r); });
    await expect(store.loadSample()).rejects.toThrow("kernel gone");
    fail = false;
    expect((await store.loadSample()).m).toBe(2);
  });

  it("a page over its size budget answers a sampled head from its sample, a whole head from its points", () => {
    // 2 cells x 3 tokens (6 points each); the page holds points 4 and 1 of cell 0 (its sample,
    // the first 2 of the order), cell 1 whole; value norms travel along
    const order = Uint32Array.from([4, 1, 0, 2, 3, 5]);
    const whole = Float32Array.from({ length: 12 }, (_, i) => 0.1 * i);
    const attns = [{ name: "self", layers: [0], heads: [0, 1], cell_offset: 0, order: wire(order), sample_points: 2 }];
    const answer = staticPoints({
      meta: { n_tokens: 3, dim: 2, order: wire(order), sample_points: 2, attns },
      points: [{ start: 6, stop: 12, coords: wire(whole), norms: wire(Uint8Array.from([1, 2, 3, 4, 5, 6])),
        vnorms: wire(Uint8Array.from([11, 12, 13, 14, 15, 16])) }],
      sample: [{ start: 0, stop: 2, coords: wire(Float32Array.from([0.5, 0.6, -0.5, -0.6, 9, 9, 9, 9])),
        norms: wire(Uint8Array.from([7, 8, 0, 0])), vnorms: wire(Uint8Array.from([17, 18, 0, 0])) }],
    });
    const head0 = answer({ kind: "points", start: 0, stop: 6 });
    expect([head0.coords[8], head0.coords[9], head0.norms[4], head0.vnorms[4]]).toEqual([Math.fround(0.5), Math.fround(0.6), 7, 17]);
    expect([head0.coords[2], head0.coords[3], head0.norms[1], head0.vnorms[1]]).toEqual([Math.fround(-0.5), Math.fround(-0.6), 8, 18]);
    for (const p of [0, 2, 3, 5]) expect(Number.isNaN(head0.coords[2 * p])).toBe(true); // not held: left out
    const head1 = answer({ kind: "points", start: 6, stop: 12 });
    expect(Array.from(head1.coords)).toEqual(Array.from(whole)); // the whole head, not the sample's 9s
    expect(Array.from(head1.vnorms)).toEqual([11, 12, 13, 14, 15, 16]);
    // selected or searched points: held ones from the sample, the others NaN
    const at = answer({ kind: "points_at", points: [1, 2, 7] });
    expect([at.coords[0], at.norms[0], at.norms[2]]).toEqual([Math.fround(-0.5), 8, 2]);
    expect(Number.isNaN(at.coords[2])).toBe(true);
    const s = answer({ kind: "sample", start: 0, stop: 2 });
    expect(Array.from(s.norms)).toEqual([7, 8, 0, 0]); // the embedded chunk as it is
  });

  it("the static page answers explicit points of every cell, and NaN for what it lacks", async () => {
    const { answer } = fakeGrid();
    const r = answer({ kind: "sample", start: 3, stop: 4, points: [1, 5] });
    expect(Array.from(r.coords)).toEqual([19, 19, 23, 23]);
    const none = staticPoints({ meta: { n_tokens: 3, dim: 2 }, points: [] })({ kind: "points_at", points: [2] });
    expect(Number.isNaN(none.coords[0])).toBe(true);
  });
});
