import { describe, expect, it } from "vitest";
import { decode, decodeOptional, encode, unpackBuffers } from "../src/wire/codec.js";

const f32 = Float32Array.from([1.5, -2, 3.25, 1e-7]);

describe("decode", () => {
  it("reads a wire dict over a DataView without copying", () => {
    const bytes = new Uint8Array(32);
    bytes.set(new Uint8Array(f32.buffer), 8);
    const view = new DataView(bytes.buffer, 8, 16);
    const out = decode({ view, dtype: "float32", shape: [4] });
    expect(out).toBeInstanceOf(Float32Array);
    expect(Array.from(out)).toEqual(Array.from(f32));
    expect(out.buffer).toBe(bytes.buffer); // a view, not a copy
    expect(out.byteOffset).toBe(8);
  });

  it("reads an ArrayBuffer, a DataView or a wire dict over any typed array as the dtype", () => {
    const u = Uint32Array.from([7, 0, 2 ** 32 - 1]);
    expect(Array.from(decode(u.buffer, "uint32"))).toEqual([7, 0, 2 ** 32 - 1]);
    expect(Array.from(decode(new DataView(u.buffer), "uint32"))).toEqual([7, 0, 2 ** 32 - 1]);
    expect(Array.from(decode({ view: new Uint8Array(u.buffer), dtype: "uint32" }))).toEqual([7, 0, 2 ** 32 - 1]);
    // the wire's own dtype wins over the caller's guess
    expect(decode({ view: u.buffer, dtype: "uint32" }, "float32")).toBeInstanceOf(Uint32Array);
  });

  it("copies once when the offset is misaligned for the element size", () => {
    const bytes = new Uint8Array(21);
    bytes.set(new Uint8Array(f32.buffer), 3);
    const out = decode({ view: new DataView(bytes.buffer, 3, 16), dtype: "float32" });
    expect(Array.from(out)).toEqual(Array.from(f32));
    expect(out.byteOffset).toBe(0);
    const ints = new Uint8Array(10);
    new DataView(ints.buffer).setInt32(1, -5, true);
    expect(Array.from(decode({ view: new DataView(ints.buffer, 1, 4), dtype: "int32" }))).toEqual([-5]);
  });

  it("drops a trailing partial element instead of throwing", () => {
    expect(decode({ view: new ArrayBuffer(10), dtype: "float32" }).length).toBe(2);
  });

  it("passes decoded typed arrays through and copies plain arrays", () => {
    expect(decode(f32)).toBe(f32);
    const out = decode([[1, 2], [3, 4]], "int32");
    expect(out).toBeInstanceOf(Int32Array);
    expect(Array.from(out)).toEqual([1, 2, 3, 4]);
  });

  it("returns an empty array of the type for missing values; decodeOptional keeps null", () => {
    expect(decode(null, "uint8")).toEqual(new Uint8Array(0));
    expect(decode(undefined, "uint32")).toEqual(new Uint32Array(0));
    expect(decode({ view: null, dtype: "int32" })).toEqual(new Int32Array(0));
    expect(decodeOptional(null)).toBeNull();
    expect(decodeOptional(undefined, "uint8")).toBeNull();
    expect(decodeOptional({ view: f32.buffer, dtype: "float32" })).toEqual(f32);
  });
});

describe("encode", () => {
  it("round-trips through decode", () => {
    const u = Uint32Array.from([3, 1, 4, 1, 5]).subarray(1, 4);
    const w = encode(u, "uint32");
    expect(w.view).toBeInstanceOf(DataView);
    expect(w).toMatchObject({ dtype: "uint32", shape: [3] });
    expect(Array.from(decode(w))).toEqual([1, 4, 1]);
  });
});

describe("unpackBuffers", () => {
  it("replaces every {$buffer} reference by a typed array, nested in objects and lists", () => {
    const b0 = new Uint8Array([1, 2, 3]), b1 = new DataView(Float32Array.from([0.5, 1]).buffer);
    const msg = { a: [{ $buffer: 0, dtype: "uint8", shape: [3] }, { b: { $buffer: 1, dtype: "float32", shape: [1, 2] } }], k: 3, s: "x" };
    const out = unpackBuffers(msg, [b0, b1]);
    expect(Array.from(out.a[0])).toEqual([1, 2, 3]);
    expect(out.a[1].b).toBeInstanceOf(Float32Array);
    expect(Array.from(out.a[1].b)).toEqual([0.5, 1]);
    expect(out.k).toBe(3);
    expect(out.s).toBe("x");
  });
});
