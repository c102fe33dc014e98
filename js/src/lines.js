// Attention lines: from a clicked query to its top-k keys (same seq), or from a clicked key to
// the k queries that attend to it most; only weights >= threshold.

/**
 * @param {Float32Array} weights  [query_pos * key_pos] of the point's seq (row-major, n x n)
 * @param {"query" | "key"} kind  kind of the clicked point
 * @param {number} pos            its position in the seq
 * @returns {{pos: number, weight: number}[]}  partner positions (keys for a query, queries for a
 *   key), strongest first; ties keep the lower position first (like a stable argsort).
 */
export function topPartners(weights, kind, pos, k, threshold) {
  const n = Math.round(Math.sqrt(weights.length));
  if (!n || pos < 0 || pos >= n) return [];
  const items = [];
  for (let j = 0; j < n; j++) {
    const w = kind === "query" ? weights[pos * n + j] : weights[j * n + pos];
    if (w > 0 && w >= threshold) items.push({ pos: j, weight: w });
  }
  items.sort((a, b) => b.weight - a.weight || a.pos - b.pos);
  return items.slice(0, Math.max(0, k));
}

/** Annotation objects for regl-scatterplot (a 2-vertex polygon is a segment). */
export function lineAnnotations(segments, rgb) {
  const wmax = Math.max(1e-9, ...segments.map((s) => s.weight));
  return segments.map((s) => {
    const f = s.weight / wmax;
    return {
      vertices: [[s.x0, s.y0], [s.x1, s.y1]],
      lineColor: [...rgb, 0.25 + 0.75 * f],
      lineWidth: 1 + 3 * f,
    };
  });
}
