// Harness entry for the side-panel browser tests: the real views, a real pub-sub bus, and a
// fetchDetail that asks the test's Python server (qkviz._commands.dispatch over HTTP).
import createPubSub from "pub-sub-es";
import { atlasCanvas, drawThumbnails, mountThumbnails } from "../../../js/src/canvas/thumbnails.js";
import { mount3D, orbitCamera, project3D } from "../../../js/src/canvas/scene3d.js";
import { TRAITS } from "../../../js/src/model.js";
import { mountPanel } from "../../../js/src/panel/index.js";
import { createModel } from "../../../js/src/page/model.js";
import { unpackBuffers } from "../../../js/src/wire/codec.js";

const views = { mountPanel, mount3D, orbitCamera, project3D, atlasCanvas, drawThumbnails, mountThumbnails };

function b64(s) {
  const bin = atob(s), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}
async function fetchDetail(request) {
  const r = await fetch("/fetch", { method: "POST", body: JSON.stringify(request) });
  const { msg, buffers } = await r.json();
  if (msg?.error) throw new Error(msg.error);
  return unpackBuffers(msg, buffers.map(b64)); // the widget's own decoder
}

const bus = createPubSub({ async: false });
const events = [];
for (const ev of ["highlight:tokens", "lines:weights", "point:click", "point:hover", "camera:change"]) {
  bus.subscribe(ev, (p) => events.push({ ev, p }));
}
// mountPanelHarness(traits) fills the model: the panel reads _meta and the token table
const model = createModel({}, { traits: TRAITS });
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v && typeof v === "object") {
    if (typeof v.$b64 === "string") return new DataView(b64(v.$b64));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
  }
  return v;
}
let points = null;
window.qkv = { views, bus, events, fetchDetail, model, setPoints(p) { points = p; } };
/** Mount the side panel on a model holding `traits` (wire_json of {_meta, _tokens}). */
window.mountPanelHarness = (traits = {}) => {
  Object.assign(model._state, revive(traits));
  const el = document.getElementById("panel");
  window.panel = views.mountPanel(el, { model, bus, fetchDetail, getPoints: () => points });
  return true;
};
window.mount3DHarness = (coords, tokens) => {
  points = { mode: "single", layer: 0, head: 0, nTokens: coords.length / 6, coords3: Float32Array.from(coords), tokens };
  window.scene = views.mount3D(document.getElementById("scene"), { model, bus, fetchDetail, getPoints: () => points }, { size: 320 });
  return true;
};
window.mountThumbsHarness = () => {
  window.thumbs = views.mountThumbnails(document.getElementById("thumbhost"), { model, bus, fetchDetail });
  return true;
};
window.harnessReady = true;
