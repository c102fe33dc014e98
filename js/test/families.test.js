// Encoder-decoder embeddings (several attentions, two token streams) and score families in the
// front end: which grid the matrix shows, cross-attention lines and panel rows, the family caption.
import { describe, expect, it } from "vitest";
import { topPartners } from "../src/canvas/lines.js";
import { cellOf, getMeta, getTokens, seqRows } from "../src/model.js";
import { sequenceDetail } from "../src/panel/detail.js";
import { familyCaption } from "../src/panel/index.js";
import { fakeModel, smallState, wire } from "./fixtures.js";

/** One pair: 3 encoder tokens then 2 decoder tokens; encoder/decoder/cross with 1 layer x 2 heads. */
function seq2seqState(attn = "") {
  const s = smallState();
  const attns = ["encoder", "decoder", "cross"].map((name, i) => ({
    name, layers: [0], heads: [0, 1], cell_offset: 2 * i,
    query_stream: name === "encoder" ? 0 : 1, key_stream: name === "decoder" ? 1 : 0, causal: name === "decoder",
  }));
  return {
    ...s, attn,
    _meta: { ...s._meta, layers: [0], heads: [0, 1], n_points: 6 * 10, attns, streams: ["encoder", "decoder"],
      recall: wire(Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])) },
    _tokens: { ...s._tokens, seq: wire(Uint32Array.from([0, 0, 0, 0, 0])), pos: wire(Uint32Array.from([0, 1, 2, 0, 1])),
      stream: wire(Uint8Array.from([0, 0, 0, 1, 1])) },
  };
}

describe("an encoder-decoder grid", () => {
  it("shows cross-attention by default, with its own cells and recall", () => {
    const meta = getMeta(fakeModel(seq2seqState()));
    expect(meta.attn).toBe("cross");
    expect(meta.cell_offset).toBe(4);
    expect([meta.query_stream, meta.key_stream]).toEqual([1, 0]);
    expect(Array.from(meta.recall)).toEqual([expect.closeTo(0.5), expect.closeTo(0.6)]);
    expect(cellOf(meta, 0, 1)).toBe(5);
  });

  it("follows the attn trait", () => {
    const meta = getMeta(fakeModel(seq2seqState("decoder")));
    expect([meta.attn, meta.cell_offset, cellOf(meta, 0, 0)]).toEqual(["decoder", 2, 2]);
  });

  it("a single attention keeps the plain grid", () => {
    const meta = getMeta(fakeModel());
    expect([meta.attn, meta.cell_offset, meta.attns]).toEqual(["", 0, []]);
  });

  it("finds each stream's rows of a sequence", () => {
    const tokens = getTokens(fakeModel(seq2seqState()));
    expect(seqRows(tokens, 0, 0)).toEqual([0, 1, 2]);
    expect(seqRows(tokens, 0, 1)).toEqual([3, 4]);
    expect(seqRows(tokens, 0)).toEqual([0, 3, 1, 4, 2]); // every row, by position
  });
});

describe("cross-attention weights (2 decoder queries x 3 encoder keys)", () => {
  const w = Float32Array.from([0.2, 0.5, 0.3, 0.6, 0.1, 0.3]);
  it("lines from a query go to its strongest encoder keys", () => {
    expect(topPartners(w, "query", 1, 2, 0, 3)).toEqual([{ pos: 0, weight: expect.closeTo(0.6) }, { pos: 2, weight: expect.closeTo(0.3) }]);
  });
  it("lines from a key come from the decoder queries that read it", () => {
    expect(topPartners(w, "key", 1, 5, 0, 3).map((p) => p.pos)).toEqual([0, 1]);
  });
  it("the panel's rows are the decoder's tokens and its columns the encoder's", () => {
    const tokens = getTokens(fakeModel(seq2seqState()));
    const d = sequenceDetail({ layer: 0, head: 0, seq: 0, weights: w, family: "plain" }, tokens, "text", { query: 1, key: 0 });
    expect([d.nq, d.nk]).toEqual([2, 3]);
    expect(d.display).toEqual(["[CLS]", "Dog"]);
    expect(d.keyDisplay).toEqual(["[CLS]", "cat", "."]);
    expect(() => sequenceDetail({ layer: 0, head: 0, seq: 0, weights: w.subarray(0, 4) }, tokens, "text", { query: 1, key: 0 })).toThrow(/2 x 3/);
  });
});

describe("the family caption", () => {
  it("names what the head adds", () => {
    expect(familyCaption({ family: "sink", sink: Float32Array.from([0.2, 0.4]) })).toMatch(/mean 0.30/);
    expect(familyCaption({ family: "alibi", alibi: 0.0625, position_effect: Float32Array.from([0.5, 0.1]) })).toMatch(/\+0\.0625·j.*Position effect 0\.30/);
    expect(familyCaption({ family: "plain" })).toBe("");
  });
});
