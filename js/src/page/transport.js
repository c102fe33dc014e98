// The standalone page's fetchDetail: the widget's requests answered from what the page embeds
// (qkviz.export's snapshot, docs/internals.md "Static pages") instead of a Python kernel: the point
// kinds through points.js, the others through answer.js.
import { decode } from "../wire/codec.js";
import { staticAnswers } from "./answer.js";
import { POINT_KINDS, staticPoints } from "./points.js";

/**
 * @param {object} embedded  the snapshot: `{state: {_meta, _tokens, _columns, ...}, points, topk,
 *   aggregate, images}` (arrays as wire dicts or typed arrays); `meta` and `tokens` may be given
 *   decoded instead of `state._meta` and `state._tokens`.
 * @param {object} [state]  the traits (default `embedded.state`)
 * @returns {(request: object) => Promise<object>}
 */
export function staticTransport(embedded, state = embedded.state ?? {}) {
  const meta = embedded.meta ?? state._meta;
  let tokens = embedded.tokens;
  if (!tokens) {
    tokens = {};
    for (const [k, v] of Object.entries(state._tokens ?? {})) tokens[k] = v?.view !== undefined ? decode(v, "uint32") : v;
  }
  const data = { ...embedded, meta, tokens };
  // the point kinds (the matrix's sample, whole heads, points by index) from points.js; the rest
  // (attention, the side panel's kinds) from answer.js
  const points = staticPoints(data), answers = staticAnswers(data, state);
  return async (request) => (POINT_KINDS.has(request.kind) ? points(request) : answers(request));
}
