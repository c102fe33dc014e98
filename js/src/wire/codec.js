// @ts-check
// Wire codec, the JS half of src/qkviz/_codec.py: every binary value the front end reads (traits,
// replies, embedded page data) goes through `decode`, which returns a typed array over the same
// bytes (no copy unless the offset is misaligned for the element size).

/** The dtypes of the wire (qkviz._codec's whitelist) and their typed arrays. */
export const TYPES = { float32: Float32Array, uint32: Uint32Array, int32: Int32Array, uint8: Uint8Array };

/**
 * @typedef {keyof typeof TYPES} Dtype
 * @typedef {{view: DataView | ArrayBuffer | ArrayBufferView, dtype?: string, shape?: number[]}} Wire
 *   A wire value: bytes (ipywidgets hands a DataView; a static page too) with their dtype.
 * @typedef {Float32Array | Uint32Array | Int32Array | Uint8Array} Typed
 */

/** @param {unknown} v @returns {{buffer: ArrayBufferLike, byteOffset: number, byteLength: number} | null} */
function asBytes(v) {
  if (v instanceof ArrayBuffer) return { buffer: v, byteOffset: 0, byteLength: v.byteLength };
  if (v && ArrayBuffer.isView(v)) return v;
  return null;
}

/**
 * Decode one wire value into a typed array; never throws.
 * @param {Wire | DataView | ArrayBuffer | ArrayBufferView | ArrayLike<number> | null | undefined} value
 *   a wire dict `{view, dtype}`; raw bytes (DataView, ArrayBuffer), read as `dtype`; a typed array,
 *   returned as it is (already decoded); a plain array, copied into `dtype`; null or missing: empty.
 * @param {Dtype} [dtype]  the type when the value does not say (wire dicts carry their own)
 * @returns {Typed}
 */
export function decode(value, dtype = "float32") {
  if (value != null && ArrayBuffer.isView(value) && !(value instanceof DataView)) return /** @type {Typed} */ (value);
  const wire = /** @type {any} */ (value);
  const T = TYPES[/** @type {Dtype} */ (wire?.dtype)] ?? TYPES[dtype] ?? Float32Array;
  if (Array.isArray(value)) return T.from(value.flat(Infinity));
  const bytes = asBytes(wire?.view !== undefined ? wire.view : value);
  if (!bytes || !bytes.byteLength) return new T(0);
  const n = Math.floor(bytes.byteLength / T.BYTES_PER_ELEMENT);
  if (bytes.byteOffset % T.BYTES_PER_ELEMENT === 0) return new T(bytes.buffer, bytes.byteOffset, n);
  // A misaligned view cannot back a typed array: copy once.
  return new T(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * T.BYTES_PER_ELEMENT));
}

/**
 * `decode`, except that a missing value stays null (replies whose fields are optional: value
 * norms, the image's pixels).
 * @param {Parameters<typeof decode>[0]} value
 * @param {Dtype} [dtype]
 * @returns {Typed | null}
 */
export function decodeOptional(value, dtype) {
  return value == null ? null : decode(value, dtype);
}

/**
 * Encode a typed array as a wire dict (JS -> Python). The view always covers its whole buffer:
 * ipywidgets sends a view's `.buffer`, not its range (`remove_buffers` in @jupyter-widgets/base), so
 * a sub-array is copied first.
 * @param {Typed} array
 * @param {Dtype} dtype
 * @returns {Wire}
 */
export function encode(array, dtype) {
  const own = array.byteOffset === 0 && array.byteLength === array.buffer.byteLength ? array : array.slice();
  return { view: new DataView(own.buffer, 0, own.byteLength), dtype, shape: [own.length] };
}

/**
 * Reverse qkviz._codec.pack_buffers: `{"$buffer": i, dtype, shape}` -> typed array from buffers[i].
 * @param {any} value
 * @param {(DataView | ArrayBuffer | ArrayBufferView)[]} buffers
 * @returns {any}
 */
export function unpackBuffers(value, buffers) {
  if (Array.isArray(value)) return value.map((v) => unpackBuffers(v, buffers));
  if (value && typeof value === "object" && !ArrayBuffer.isView(value) && !(value instanceof ArrayBuffer)) {
    if (typeof value.$buffer === "number") {
      return decode({ view: buffers[value.$buffer], dtype: value.dtype, shape: value.shape });
    }
    /** @type {Record<string, any>} */
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = unpackBuffers(v, buffers);
    return out;
  }
  return value;
}
