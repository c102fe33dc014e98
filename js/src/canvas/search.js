// Token search; the same rule as QKViz._match_tokens in Python: case-insensitive substring of the
// display text, or a regular expression (RegExp with the "i" flag).

/** @returns {Uint8Array | null} 1 for matching tokens; null when the query is empty. Never throws. */
export function matchTokens(display, query, regex) {
  if (!query) return null;
  const out = new Uint8Array(display.length);
  if (regex) {
    let rx;
    try {
      rx = new RegExp(query, "i");
    } catch {
      return out; // an unfinished pattern while typing matches nothing
    }
    for (let t = 0; t < display.length; t++) out[t] = rx.test(display[t]) ? 1 : 0;
  } else {
    const q = query.toLowerCase();
    for (let t = 0; t < display.length; t++) out[t] = display[t].toLowerCase().includes(q) ? 1 : 0;
  }
  return out;
}
