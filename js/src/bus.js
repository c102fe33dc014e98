// The event bus between the canvas (js/src/canvas/, which owns it) and the side panel
// (js/src/panel/, mounted through `mountPanel(container, ctx)` from js/src/panel/index.js): the one
// contract between the two, written out in docs/internals.md ("Front-end panel contract").
//
// ctx passed to mountPanel(container, ctx) — mountPanel returns a cleanup function:
//   ctx.model          the anywidget model (traits: js/src/model.js QKVizTraits; read with model.get)
//   ctx.bus            this bus: bus.publish(event, payload), bus.subscribe(event, handler) -> token,
//                      bus.unsubscribe(token)
//   ctx.fetchDetail(request) -> Promise<response>: request {kind, ...} answered by Python
//                      (qkviz._commands handlers) or, in a standalone page, from embedded data
//                      (js/src/page/). Arrays in the response are typed arrays.
//   ctx.getPoints()    the current drawing: {mode: "matrix" | "single", layer, head, cell, nTokens,
//                      dim (2 | 3), coords: Float32Array [point*dim] of the focused head (layout
//                      units, [-1, 1]) or null on the matrix, coords3 (= coords when dim is 3, else
//                      null), tokens: {seq, pos, seqLen, category, token, display}}
//   ctx.screenPositions() -> Float32Array [point*2]: CSS pixels (from the canvas' top-left) of the
//                      drawn points (the focused head's 2n points, or every point on the matrix)
//   ctx.overlay        a div exactly over the canvas (pointer-events: none) for the panel's drawings
//   ctx.signal         AbortSignal aborted when the view is torn down
//
// Events published by the canvas:
//   "point:click"  {point, token, kind: "query" | "key", seq, layer, head}   (point: local index)
//   "point:hover"  same payload, or null when the pointer leaves a point
//   "selection"    {points: Uint32Array}  (global point indices, as in QKViz.selection)
//   "view"         {mode, layer, head}    (after every navigation)
//   "camera"       {mode}                 (pan/zoom; at most once per frame: re-read screenPositions)
// Events the canvas honours:
//   "highlight:tokens" {tokens: Uint32Array | null}  highlight those tokens' points in the focused
//                      head (others dimmed); null clears
//   "lines:weights"    {seq, weights: Float32Array [query_pos * key_pos]} replace the attention used
//                      for lines of that seq (e.g. renormalised without special tokens)
import createPubSub from "pub-sub-es";

export function createBus() {
  return createPubSub({ async: false });
}
