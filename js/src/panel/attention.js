// Pure attention arithmetic of the side panel: hiding tokens and weighting keys by value norms,
// then renormalising. It mirrors qkviz._detail.renormalize exactly (js/test/attention.test.js and
// a browser test compare the two).

/**
 * Reweight keys, hide keys/queries and renormalise each row.
 * a'[i,j] = a[i,j]·w[j]·m[j] / Σ_j' a[i,j']·w[j']·m[j'];  hidden queries get a zero row.
 * @param {Float32Array} raw  [nq*nk] row-major attention
 * @param {number} nq
 * @param {number} nk
 * @param {{hiddenKeys?: Iterable<number>, hiddenQueries?: Iterable<number>, keyWeights?: ArrayLike<number>|null}} opts
 * @returns {Float32Array} [nq*nk]
 */
export function renormalize(raw, nq, nk, { hiddenKeys = [], hiddenQueries = [], keyWeights = null } = {}) {
  const m = new Float64Array(nk).fill(1);
  for (const j of hiddenKeys) if (j >= 0 && j < nk) m[j] = 0;
  if (keyWeights) for (let j = 0; j < nk; j++) m[j] *= keyWeights[j];
  const out = new Float32Array(nq * nk);
  for (let i = 0; i < nq; i++) {
    let total = 0;
    for (let j = 0; j < nk; j++) total += raw[i * nk + j] * m[j];
    if (total > 0) for (let j = 0; j < nk; j++) out[i * nk + j] = (raw[i * nk + j] * m[j]) / total;
  }
  for (const i of hiddenQueries) if (i >= 0 && i < nq) out.fill(0, i * nk, (i + 1) * nk);
  return out;
}

/** Positions hidden by the toggles plus the explicit sets: {keys: Set, queries: Set}. */
export function hiddenSets(n, special, { hideKeys, hideQueries, hideSpecial, hideFirst }) {
  const keys = new Set(hideKeys), queries = new Set(hideQueries);
  for (let p = 0; p < n; p++) {
    if ((hideSpecial && special?.[p]) || (hideFirst && p === 0)) { keys.add(p); queries.add(p); }
  }
  return { keys, queries };
}
