// The standalone page's fetchDetail: the widget's requests answered from what the page embeds
// (qkviz.export's snapshot, docs/internals.md "Static pages") instead of a Python kernel.
import { decode } from "../wire/codec.js";
import { staticAnswers } from "./answer.js";

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
  return staticAnswers({ ...embedded, meta, tokens }, state);
}
