// The one style sheet of the front end (the canvas: qk-, the side panel: qkv-), injected once per
// document or shadow root (no separate CSS file to ship or fetch). Colours come from ui/palette.js.
import { HIGHLIGHT, KEY_COLOR, QUERY_COLOR, hexToRgb } from "./palette.js";

/** Room the matrix's axes take beside its canvas (CSS px): row labels on the left, columns on top. */
export const AXIS_PX = { left: 34, top: 16 };

const HIGHLIGHT_RGB = hexToRgb(HIGHLIGHT).join(",");

const CSS = `
.qk-root{--qk-query:${QUERY_COLOR};--qk-key:${KEY_COLOR};--qk-bg:#fff;--qk-fg:#1d1f21;--qk-muted:#6b7280;--qk-border:#d5d8dc;--qk-accent:#2563eb;
  font:12px/1.35 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--qk-fg);background:var(--qk-bg);
  display:flex;flex-direction:column;gap:6px;padding:6px;box-sizing:border-box;position:relative;outline:none}
.qk-root[data-qk-theme=dark]{--qk-bg:#15181d;--qk-fg:#e6e6e6;--qk-muted:#9aa3ad;--qk-border:#3a3f47;--qk-accent:#60a5fa}
.qk-root[data-qk-theme] .qk-panel{--jp-layout-color0:var(--qk-bg);--jp-ui-font-color1:var(--qk-fg);--jp-border-color2:var(--qk-border);--jp-brand-color1:var(--qk-accent)}
.qk-tip-thumb{display:block;margin-top:4px;image-rendering:pixelated;border:2px solid var(--qk-border)}
.qk-toolbar{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.qk-toolbar button,.qk-toolbar select,.qk-toolbar input{font:inherit;color:var(--qk-fg);background:var(--qk-bg);
  border:1px solid var(--qk-border);border-radius:4px;padding:2px 6px}
.qk-toolbar input[type=number]{width:4.2em}.qk-toolbar input[type=search]{width:10em}
.qk-toolbar button[aria-pressed=true]{background:var(--qk-accent);color:#fff}
.qk-toolbar label{display:inline-flex;gap:3px;align-items:center;color:var(--qk-muted)}
.qk-sep{width:1px;height:18px;background:var(--qk-border)}
.qk-count{display:inline-block;min-width:15ch;white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--qk-muted)}
.qk-body{display:flex;gap:8px;align-items:flex-start}
.qk-stage{position:relative;flex:none}
.qk-canvas{display:block;border:0;margin:0;padding:0}
.qk-grid,.qk-overlay{position:absolute;inset:0;pointer-events:none}
.qk-grid{overflow:hidden}
.qk-cells{position:absolute;left:0;top:0;transform-origin:0 0;--qk-zoom:1}
.qk-3d{position:absolute;left:0;top:0}
.qk-group{display:inline-flex;gap:inherit;align-items:center;white-space:nowrap}
.qk-cell{position:absolute;box-sizing:border-box;border-radius:calc(3px / var(--qk-zoom));
  --qk-line:calc(1px / var(--qk-zoom));box-shadow:inset 0 0 0 var(--qk-line) var(--qk-border)}
.qk-cell-label{position:absolute;left:2px;top:0;font-size:9px;color:var(--qk-muted);white-space:nowrap}
.qk-cell-score{position:absolute;right:2px;bottom:0;font-size:9px;color:var(--qk-muted)}
.qk-cell-label,.qk-cell-score{transform:scale(calc(1 / var(--qk-zoom)))}
.qk-cell-label{transform-origin:0 0}.qk-cell-score{transform-origin:100% 100%}
.qk-root[data-qk-labels=axes] .qk-cell-label,.qk-root[data-qk-labels=axes] .qk-cell-score{display:none}
.qk-cell[data-hover=true]{box-shadow:inset 0 0 0 calc(2 * var(--qk-line)) var(--qk-accent)}
.qk-cell[data-missing=true]{background:repeating-linear-gradient(45deg,transparent 0 6px,var(--qk-border) 6px 7px)}
.qk-axis{position:absolute;font-size:10px;line-height:1;color:var(--qk-muted);pointer-events:none;display:none;overflow:hidden}
.qk-root[data-qk-labels=axes] .qk-axis{display:block}
.qk-axis-rows{right:100%;top:0;bottom:0;width:${AXIS_PX.left}px}
.qk-axis-cols{bottom:100%;left:0;right:0;height:${AXIS_PX.top}px}
.qk-axis-label{position:absolute;white-space:nowrap}
.qk-axis-rows .qk-axis-label{right:4px;transform:translateY(-50%)}
.qk-axis-cols .qk-axis-label{bottom:3px;transform:translateX(-50%)}
.qk-root[data-qk-mode=matrix] .qk-stage{margin:${AXIS_PX.top}px 0 0 ${AXIS_PX.left}px}
.qk-side{display:flex;flex-direction:column;gap:8px;min-width:180px;max-width:340px;flex:1 1 220px;overflow-y:auto}
.qk-side>*{flex:none}
.qk-legend-title,.qk-atlas-title{font-weight:600;margin-bottom:2px}
.qk-legend-item{display:flex;gap:5px;align-items:center}
.qk-swatch{width:10px;height:10px;border-radius:50%;display:inline-block}
.qk-legend-ramp{display:grid;grid-template-columns:3.5em auto 1fr auto;gap:4px;align-items:center}
.qk-legend-bar{height:8px;border-radius:4px}.qk-legend-note{color:var(--qk-muted)}
.qk-status{color:var(--qk-muted)}
.qk-tooltip{position:absolute;pointer-events:none;z-index:10;max-width:320px;background:var(--qk-bg);
  border:1px solid var(--qk-border);border-radius:4px;padding:4px 6px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.qk-tooltip b.qk-q{color:var(--qk-query)}.qk-tooltip b.qk-k{color:var(--qk-key)}
.qk-tooltip .qk-sentence{margin-top:3px;color:var(--qk-muted)}
.qk-tooltip mark{background:#fde68a;color:#111;border-radius:2px}
.qk-error{color:#b91c1c}
.qk-fallback{font:12px/1.35 system-ui,-apple-system,"Segoe UI",sans-serif;color:#6b7280;padding:4px 6px}
.qk-fallback-note{margin:0 0 4px}
.qk-fallback-picture{display:block;max-width:100%;height:auto}
.qk-toolbar2{gap:10px}
.qk-probe-text{width:18em}.qk-probe-note{color:var(--qk-muted)}
.qk-cell[data-out=true]{background:color-mix(in srgb,var(--qk-bg) 72%,transparent) !important}
.qk-cell[data-out=true] .qk-cell-label,.qk-cell[data-out=true] .qk-cell-score{opacity:.45}
.qk-cell[data-score] .qk-cell-score{color:var(--qk-fg);font-weight:600}
.qk-atlas{display:flex;flex-direction:column;gap:6px;flex:none}.qk-atlas>summary{cursor:pointer}
.qk-atlas[open]>*:not(summary){margin-top:4px}
.qk-atlas-row{display:grid;grid-template-columns:4.5em 64px auto;gap:6px;align-items:center;border:0;background:none;
  color:inherit;font:inherit;padding:1px 2px;cursor:pointer;text-align:left;border-radius:3px}
.qk-atlas-row:hover{background:color-mix(in srgb,var(--qk-accent) 15%,transparent)}
.qk-atlas-bar{display:inline-block;height:7px;border-radius:3px;background:var(--qk-accent)}
.qk-atlas-val{font-variant-numeric:tabular-nums}
.qk-atlas-kv{display:flex;justify-content:space-between;gap:8px}
.qk-atlas-near{color:var(--qk-muted)}
.qk-simmap{display:block;border:1px solid var(--qk-border);border-radius:4px;background:var(--qk-bg)}
.qk-simmap-dot{cursor:pointer;stroke:var(--qk-bg);stroke-width:.8}
.qk-simmap-focus{stroke:var(--qk-fg);stroke-width:2}
.qk-simmap-link{stroke:var(--qk-muted);stroke-width:1.2}
.qk-atlas-caption{color:var(--qk-muted);min-height:1.3em}
.qkv-heat-pair{display:flex;gap:6px;align-items:flex-start}
.qkv-heat-pair figure{margin:0}.qkv-heat-pair figcaption{font-size:11px;opacity:.7}
.qk-static-note{font-size:12px;opacity:.8;margin:2px 0 4px;white-space:pre-line}
.qkv-panel [hidden] { display: none !important; }
.qkv-panel { font: 12px/1.3 var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); display: flex; flex-direction: column; gap: 6px; min-width: 300px; }
.qkv-tabs { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.qkv-tabs button { border: 0; background: none; padding: 4px 8px; cursor: pointer; color: inherit; font: inherit; opacity: .65; }
.qkv-tabs button.qkv-active { opacity: 1; border-bottom: 2px solid ${HIGHLIGHT}; }
.qkv-tabs button[hidden] { display: none; }
.qkv-toolbar { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
.qkv-check { white-space: nowrap; cursor: pointer; }
.qkv-check input[disabled] + * , .qkv-check:has(input[disabled]) { opacity: .5; }
.qkv-link { color: var(--jp-brand-color1, #1976d2); cursor: pointer; text-decoration: underline; border: 0; background: none; font: inherit; padding: 0; }
.qkv-empty { opacity: .6; padding: 12px 4px; }
.qkv-title { font-weight: 600; }
.qkv-title.qkv-muted { font-weight: 400; opacity: .65; }
.qkv-status { min-height: 1.3em; font-variant-numeric: tabular-nums; opacity: .85; }
.qkv-view[hidden] { display: none; }
.qkv-sentence { overflow: auto; max-height: 520px; }
.qkv-colhead { display: flex; justify-content: space-between; width: 320px; opacity: .6; }
.qkv-sentence-body { display: flex; align-items: flex-start; }
.qkv-col { width: 100px; flex: none; display: flex; flex-direction: column; }
.qkv-col-q .qkv-tok { justify-content: flex-end; }
.qkv-tok { display: flex; align-items: center; gap: 3px; cursor: pointer; white-space: nowrap; overflow: hidden; border-radius: 3px; padding: 0 2px; }
.qkv-tok-text { overflow: hidden; text-overflow: ellipsis; }
.qkv-col-q .qkv-tok-text { color: ${QUERY_COLOR}; }
.qkv-col-k .qkv-tok-text { color: ${KEY_COLOR}; }
.qkv-tok.qkv-focus, .qkv-tok.qkv-pinned { font-weight: 700; background: rgba(${HIGHLIGHT_RGB},.25); }
.qkv-tok.qkv-marked { outline: 1.5px solid ${HIGHLIGHT}; }
.qkv-tok.qkv-hidden .qkv-tok-text { text-decoration: line-through; opacity: .35; }
.qkv-hide { border: 0; background: none; padding: 0 1px; cursor: pointer; opacity: 0; color: inherit; font-size: 11px; }
.qkv-tok:hover .qkv-hide, .qkv-tok.qkv-hidden .qkv-hide { opacity: .7; }
.qkv-w { font-size: 10px; min-width: 0; font-variant-numeric: tabular-nums; }
.qkv-weighted .qkv-w { min-width: 26px; padding: 0 2px; border-radius: 2px;
  background: rgba(${HIGHLIGHT_RGB}, calc(var(--w, 0) * 0.9)); }
.qkv-lines { flex: none; }
.qkv-heatmap canvas, .qkv-image canvas, .qkv-offset-bars { display: block; cursor: crosshair; }
.qkv-image-row { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.qkv-image figure { margin: 0; }
.qkv-image figcaption { font-size: 11px; opacity: .7; }
.qkv-cls-box { width: 96px; height: 28px; display: flex; align-items: center; justify-content: center; border: 1px solid #999; margin-bottom: 6px; font-size: 11px; }
.qkv-subtitle { opacity: .7; margin-top: 4px; }
.qkv-scores .qkv-score { font-variant-numeric: tabular-nums; }
`;

/**
 * Put the style sheet into `root` unless it is there already.
 * @param {Document | ShadowRoot} root  marimo renders each widget in a shadow root, where a
 *   <style> in the document's head does not apply.
 */
export function injectStyle(root = document) {
  if (root.getElementById?.("qkviz-style")) return;
  const s = (root.ownerDocument ?? root).createElement("style");
  s.id = "qkviz-style";
  s.textContent = CSS;
  (root.head ?? root).append(s);
}
