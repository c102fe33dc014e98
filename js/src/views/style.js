// The side panel's CSS, injected once per panel (scoped by the qkv- class prefix). Colours follow
// the notebook theme through JupyterLab's variables, with light fallbacks.
export const CSS = `
.qkv-panel [hidden] { display: none !important; }
.qkv-panel { font: 12px/1.3 var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); display: flex; flex-direction: column; gap: 6px; min-width: 300px; }
.qkv-tabs { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.qkv-tabs button { border: 0; background: none; padding: 4px 8px; cursor: pointer; color: inherit; font: inherit; opacity: .65; }
.qkv-tabs button.qkv-active { opacity: 1; border-bottom: 2px solid #ffc300; }
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
.qkv-col-q .qkv-tok-text { color: rgb(60,140,72); }
.qkv-col-k .qkv-tok-text { color: rgb(200,40,120); }
.qkv-tok.qkv-focus, .qkv-tok.qkv-pinned { font-weight: 700; background: rgba(255,195,0,.25); }
.qkv-tok.qkv-marked { outline: 1.5px solid #ffc300; }
.qkv-tok.qkv-hidden .qkv-tok-text { text-decoration: line-through; opacity: .35; }
.qkv-hide { border: 0; background: none; padding: 0 1px; cursor: pointer; opacity: 0; color: inherit; font-size: 11px; }
.qkv-tok:hover .qkv-hide, .qkv-tok.qkv-hidden .qkv-hide { opacity: .7; }
.qkv-w { font-size: 10px; min-width: 0; font-variant-numeric: tabular-nums; }
.qkv-weighted .qkv-w { min-width: 26px; padding: 0 2px; border-radius: 2px;
  background: rgba(255,195,0, calc(var(--w, 0) * 0.9)); }
.qkv-lines { flex: none; }
.qkv-heatmap canvas, .qkv-image canvas, .qkv-offset-bars { display: block; cursor: crosshair; }
.qkv-image-row { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.qkv-image figure { margin: 0; }
.qkv-image figcaption { font-size: 11px; opacity: .7; }
.qkv-cls-box { width: 96px; height: 28px; display: flex; align-items: center; justify-content: center; border: 1px solid #999; margin-bottom: 6px; font-size: 11px; }
.qkv-subtitle { opacity: .7; margin-top: 4px; }
.qkv-scores .qkv-score { font-variant-numeric: tabular-nums; }
`;
