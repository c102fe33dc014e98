// Styles, injected once per document (no separate CSS file to ship or fetch).
const CSS = `
.qk-root{--qk-bg:#fff;--qk-fg:#1d1f21;--qk-muted:#6b7280;--qk-border:#d5d8dc;--qk-accent:#2563eb;
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
.qk-body{display:flex;gap:8px;align-items:flex-start}
.qk-stage{position:relative;flex:none}
.qk-canvas{display:block;border:0;margin:0;padding:0}
.qk-grid,.qk-overlay{position:absolute;inset:0;pointer-events:none}
.qk-3d{position:absolute;left:0;top:0}
.qk-group{display:inline-flex;gap:inherit;align-items:center;white-space:nowrap}
.qk-cell{position:absolute;box-sizing:border-box;border:1px solid var(--qk-border);border-radius:3px}
.qk-cell-label{position:absolute;left:2px;top:0;font-size:9px;color:var(--qk-muted);white-space:nowrap}
.qk-cell-score{position:absolute;right:2px;bottom:0;font-size:9px;color:var(--qk-muted)}
.qk-cell[data-hover=true]{border-color:var(--qk-accent)}
.qk-axis{position:absolute;font-size:10px;color:var(--qk-muted)}
.qk-side{display:flex;flex-direction:column;gap:8px;min-width:180px;max-width:340px;flex:1 1 220px}
.qk-legend-title{font-weight:600;margin-bottom:2px}
.qk-legend-item{display:flex;gap:5px;align-items:center}
.qk-swatch{width:10px;height:10px;border-radius:50%;display:inline-block}
.qk-legend-ramp{display:grid;grid-template-columns:3.5em auto 1fr auto;gap:4px;align-items:center}
.qk-legend-bar{height:8px;border-radius:4px}.qk-legend-note{color:var(--qk-muted)}
.qk-status{color:var(--qk-muted)}
.qk-tooltip{position:absolute;pointer-events:none;z-index:10;max-width:320px;background:var(--qk-bg);
  border:1px solid var(--qk-border);border-radius:4px;padding:4px 6px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.qk-tooltip b.qk-q{color:#2a9d5c}.qk-tooltip b.qk-k{color:#d6457a}
.qk-tooltip .qk-sentence{margin-top:3px;color:var(--qk-muted)}
.qk-tooltip mark{background:#fde68a;color:#111;border-radius:2px}
.qk-error{color:#b91c1c}
`;

export function injectStyle(root = document) {
  // root: a Document, or a ShadowRoot (both have getElementById)
  if (root.getElementById("qkviz-style")) return;
  const s = (root.ownerDocument ?? root).createElement("style");
  s.id = "qkviz-style";
  s.textContent = CSS;
  (root.head ?? root).append(s);
}
