// Wire codec, the JS half of src/qkviz/_codec.py: {view, dtype, shape} -> typed array over the
// same buffer (no copy unless the offset is misaligned for the element size).

const TYPES = { float32: Float32Array, uint32: Uint32Array, int32: Int32Array, uint8: Uint8Array };

function asBytes(view) {
  if (view instanceof ArrayBuffer) return { buffer: view, byteOffset: 0, byteLength: view.byteLength };
  if (view && ArrayBuffer.isView(view)) return view;
  return null;
}

/** Decode one wire value; returns an empty typed array for null/missing input (never throws). */
export function decode(wire, fallback = "float32") {
  const T = TYPES[wire?.dtype] ?? TYPES[fallback];
  const bytes = asBytes(wire?.view);
  if (!bytes || !bytes.byteLength) return new T(0);
  const n = Math.floor(bytes.byteLength / T.BYTES_PER_ELEMENT);
  if (bytes.byteOffset % T.BYTES_PER_ELEMENT === 0) return new T(bytes.buffer, bytes.byteOffset, n);
  // A misaligned view cannot back a typed array: copy once.
  return new T(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * T.BYTES_PER_ELEMENT));
}

/** Encode a typed array as a wire dict (JS -> Python). */
export function encode(array, dtype) {
  return { view: new DataView(array.buffer, array.byteOffset, array.byteLength), dtype, shape: [array.length] };
}

/** Reverse qkviz._codec.pack_buffers: {"$buffer": i, dtype, shape} -> typed array from buffers[i]. */
export function unpackBuffers(value, buffers) {
  if (Array.isArray(value)) return value.map((v) => unpackBuffers(v, buffers));
  if (value && typeof value === "object" && !ArrayBuffer.isView(value)) {
    if (typeof value.$buffer === "number") {
      return decode({ view: buffers[value.$buffer], dtype: value.dtype, shape: value.shape });
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = unpackBuffers(v, buffers);
    return out;
  }
  return value;
}
