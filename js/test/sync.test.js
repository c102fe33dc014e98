import { describe, expect, it } from "vitest";
import { setTrait, setTraits } from "../src/sync.js";
import { fakeModel } from "./fixtures.js";

describe("sync", () => {
  it("setTrait sets one trait, notifies listeners and saves once", () => {
    const model = fakeModel(), seen = [];
    model.on("change:color", (_m, v) => seen.push(v));
    setTrait(model, "color", "position");
    expect(model.get("color")).toBe("position");
    expect(seen).toEqual(["position"]);
    expect(model._saves).toEqual([["color"]]);
  });

  it("setTraits sends several traits in one save (Python never sees half a focus)", () => {
    const model = fakeModel();
    setTraits(model, { layer: 2, head: 1 });
    expect([model.get("layer"), model.get("head")]).toEqual([2, 1]);
    expect(model._saves).toEqual([["layer", "head"]]);
    setTraits(model, { layer: null, head: null });
    expect(model._saves).toHaveLength(2);
  });

  it("refuses a name that is not a trait", () => {
    const model = fakeModel();
    expect(() => setTrait(model, "colour", "kind")).toThrow(/not a trait/);
    expect(() => model.get("_esm")).toThrow(/not a trait/);
    expect(() => model.on("change:nope", () => {})).toThrow(/not a trait/);
  });
});
