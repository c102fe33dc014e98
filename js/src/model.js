// The model interface: every synced trait of qkviz.widget.QKViz that the front end reads or
// writes (tests/widget/test_widget.py checks this list against QKViz().trait_names(sync=True)).
// Public traits: layer, head (null = matrix), color, color_mod, size_by_norm, search_query,
// search_regex, lines_k, lines_threshold, theme, height. Wire traits: _meta (grid description),
// _tokens (per-token columns + strings), _columns (user columns), _selection (uint32 global point
// indices, written by the front end).
export const TRAITS = [
  "layer", "head", "color", "color_mod", "size_by_norm", "search_query", "search_regex",
  "lines_k", "lines_threshold", "theme", "height", "_meta", "_tokens", "_columns", "_selection",
];
