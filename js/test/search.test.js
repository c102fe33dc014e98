import { describe, expect, it } from "vitest";
import { matchTokens } from "../src/canvas/search.js";

const display = ["The", "cat", "sat", "Cathedral", ".", "[CLS]"];

describe("matchTokens (the rule of QKViz._match_tokens)", () => {
  it("is a case-insensitive substring match", () => {
    expect(Array.from(matchTokens(display, "CAT", false))).toEqual([0, 1, 0, 1, 0, 0]);
  });
  it("takes a regular expression, case-insensitive", () => {
    expect(Array.from(matchTokens(display, "^[ct]", true))).toEqual([1, 1, 0, 1, 0, 0]);
    expect(Array.from(matchTokens(display, "\\[cls\\]", true))).toEqual([0, 0, 0, 0, 0, 1]);
  });
  it("matches nothing while a pattern is unfinished, and returns null for an empty query", () => {
    expect(Array.from(matchTokens(display, "(ca", true))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(matchTokens(display, "", false)).toBeNull();
    // a substring search treats regex characters literally
    expect(Array.from(matchTokens(display, "[", false))).toEqual([0, 0, 0, 0, 0, 1]);
  });
});
