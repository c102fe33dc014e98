// Decoding the traits and pulling the grid points, once per model (shared by every view of it).
import { decode } from "./codec.js";

const TOKENS = new WeakMap();
const GRID = new WeakMap();

export function getTokens(model) {
  if (!TOKENS.has(model)) {
    const t = model.get("_tokens") ?? {};
    const seq = decode(t.seq, "uint32");
    TOKENS.set(model, {
      seq,
      pos: decode(t.pos, "uint32"),
      seqLen: decode(t.seq_len, "uint32"),
      category: decode(t.category, "uint8"),
      token: t.token ?? [],
      display: t.display ?? t.token ?? [],
      n: seq.length,
    });
  }
  return TOKENS.get(model);
}

export function getColumns(model) {
  const out = {};
  for (const [name, c] of Object.entries(model.get("_columns") ?? {})) {
    out[name] = { type: c.type, categories: c.categories ?? [], values: decode(c.values) };
  }
  return out;
}

export function getMeta(model) {
  const m = model.get("_meta") ?? {};
  return {
    layers: m.layers ?? [],
    heads: m.heads ?? [],
    n_tokens: m.n_tokens ?? 0,
    n_points: m.n_points ?? 0,
    chunk_points: m.chunk_points ?? 1 << 20,
    has_attention: Boolean(m.has_attention),
    has_faithfulness: Boolean(m.has_faithfulness),
    has_images: Boolean(m.has_images),
    recall: decode(m.recall),
    dim: m.dim === 3 ? 3 : 2,
    single_scale: m.single_scale ?? 0.9,
    cell_fill: m.cell_fill ?? 0.84,
  };
}

/** Promise of {coords: Float32Array [point*dim], norms: Uint8Array [point]} for the whole grid. */
export function loadGrid(model, fetchDetail) {
  if (!GRID.has(model)) {
    const meta = getMeta(model);
    const p = (async () => {
      const coords = new Float32Array(meta.n_points * meta.dim);
      const norms = new Uint8Array(meta.n_points);
      // Sequential requests keep each message under the size budget and the kernel responsive.
      for (let start = 0; start < meta.n_points; start += meta.chunk_points) {
        const stop = Math.min(meta.n_points, start + meta.chunk_points);
        const r = await fetchDetail({ kind: "points", start, stop });
        const c = r.coords.view ? decode(r.coords) : r.coords;
        const nm = r.norms.view ? decode(r.norms) : r.norms;
        coords.set(c, start * meta.dim);
        norms.set(nm, start);
      }
      return { coords, norms };
    })();
    p.catch(() => GRID.delete(model)); // allow a retry from the next view
    GRID.set(model, p);
  }
  return GRID.get(model);
}
