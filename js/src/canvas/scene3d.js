// 3-D point cloud for dim=3 embeddings: orbit (drag), zoom (wheel), pick (click/hover), lasso
// (shift-drag or lasso mode), attention lines in 3-D. `project3D` is pure, so the matrix view can
// draw every head from one shared camera and the lasso selects by the same projection.
import createREGL from "regl";
import { h, localXY } from "../ui/dom.js";
import { KEY_RGB, LASSO_RGB, LINE_RGB, QUERY_RGB, rgbUnit } from "../ui/palette.js";
import { decode } from "../wire/codec.js";
import { topPartners } from "./lines.js";
import { atlasCanvas, drawThumbnails, patchCanvas } from "./thumbnails.js";

/** A camera orbiting `target` (yaw `theta`, pitch `phi`, radians) at `distance`, perspective `fov`. */
export function orbitCamera(o = {}) {
  return { theta: 0.6, phi: 0.35, distance: 3.2, target: [0, 0, 0], fov: Math.PI / 4, aspect: 1, ...o };
}

/** Column-major 4×4 view-projection matrix of a camera (Float64Array(16)). */
export function viewProjection(cam) {
  const c = orbitCamera(cam);
  const [tx, ty, tz] = c.target;
  const cp = Math.cos(c.phi);
  const ex = tx + c.distance * cp * Math.sin(c.theta), ey = ty + c.distance * Math.sin(c.phi), ez = tz + c.distance * cp * Math.cos(c.theta);
  // look-at basis: f forward, r right, u up
  let fx = tx - ex, fy = ty - ey, fz = tz - ez;
  const fl = Math.hypot(fx, fy, fz) || 1; fx /= fl; fy /= fl; fz /= fl;
  let rx = fy * 0 - fz * 1, ry = fz * 0 - fx * 0, rz = fx * 1 - fy * 0; // f × (0,1,0)
  const rl = Math.hypot(rx, ry, rz) || 1; rx /= rl; ry /= rl; rz /= rl;
  const ux = ry * fz - rz * fy, uy = rz * fx - rx * fz, uz = rx * fy - ry * fx;
  const view = [rx, ux, -fx, 0, ry, uy, -fy, 0, rz, uz, -fz, 0,
    -(rx * ex + ry * ey + rz * ez), -(ux * ex + uy * ey + uz * ez), fx * ex + fy * ey + fz * ez, 1];
  const near = 0.01, far = 100, t = 1 / Math.tan(c.fov / 2);
  const proj = [t / c.aspect, 0, 0, 0, 0, t, 0, 0, 0, 0, (far + near) / (near - far), -1, 0, 0, (2 * far * near) / (near - far), 0];
  const m = new Float64Array(16);
  for (let col = 0; col < 4; col++) for (let row = 0; row < 4; row++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += proj[k * 4 + row] * view[col * 4 + k];
    m[col * 4 + row] = s;
  }
  return m;
}

/**
 * Project points through a camera to normalised device coordinates.
 * @param {ArrayLike<number>} coords [n*3] (x, y, z per point)
 * @param {object} camera see orbitCamera
 * @param {Float32Array} [out] [n*2]
 * @returns {Float32Array} [n*2] x, y in [-1, 1] when on screen; NaN for points behind the camera
 */
export function project3D(coords, camera, out) {
  const n = Math.floor(coords.length / 3);
  const res = out ?? new Float32Array(n * 2);
  const m = viewProjection(camera);
  for (let i = 0; i < n; i++) {
    const x = coords[3 * i], y = coords[3 * i + 1], z = coords[3 * i + 2];
    const w = m[3] * x + m[7] * y + m[11] * z + m[15];
    if (!(w > 1e-6)) { res[2 * i] = NaN; res[2 * i + 1] = NaN; continue; }
    res[2 * i] = (m[0] * x + m[4] * y + m[8] * z + m[12]) / w;
    res[2 * i + 1] = (m[1] * x + m[5] * y + m[9] * z + m[13]) / w;
  }
  return res;
}

/** Point diameter (CSS px), as the 2-D single view's; the selection grows by SELECTED_GROW. */
const POINT_PX = 5;
const SELECTED_GROW = 2;
// "over" blending that keeps the canvas opaque: the default (alpha blended like colour) leaves
// alpha < 1 where faint points lie, and the page then shows them fainter still (premultiplied).
const BLEND = { enable: true, func: { srcRGB: "src alpha", dstRGB: "one minus src alpha", srcAlpha: "one", dstAlpha: "one minus src alpha" } };
/** A point whose alpha is below this is drawn as dimmed (search, highlight, selection elsewhere). */
const DIM_ALPHA = 0.5;

/**
 * Points inside a polygon (even-odd rule).
 * @param {ArrayLike<number>} xy [n*2] screen positions (NaN: never inside)
 * @param {ArrayLike<number>} poly [m*2] polygon vertices in the same units (closed implicitly)
 * @returns {Uint32Array} indices of the points inside, ascending
 */
export function pointsInPolygon(xy, poly) {
  const n = Math.floor(xy.length / 2), m = Math.floor(poly.length / 2), out = [];
  if (m < 3) return new Uint32Array(0);
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let k = 0; k < m; k++) {
    x0 = Math.min(x0, poly[2 * k]); x1 = Math.max(x1, poly[2 * k]);
    y0 = Math.min(y0, poly[2 * k + 1]); y1 = Math.max(y1, poly[2 * k + 1]);
  }
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (!(x >= x0 && x <= x1 && y >= y0 && y <= y1)) continue; // also drops NaN
    let inside = false;
    for (let a = 0, b = m - 1; a < m; b = a++) {
      const ya = poly[2 * a + 1], yb = poly[2 * b + 1];
      if ((ya > y) !== (yb > y) && x < poly[2 * a] + ((y - ya) / (yb - ya)) * (poly[2 * b] - poly[2 * a])) inside = !inside;
    }
    if (inside) out.push(i);
  }
  return Uint32Array.from(out);
}

/**
 * Mount the orbitable 3-D view of the focused head.
 * ctx.getPoints() must return {coords3 | coords: Float32Array [point*3] of the focused head, layer,
 * head, tokens?: {seq, pos}}; rows 0..n-1 are the queries of tokens 0..n-1 and n..2n-1 their keys
 * (docs/internals.md).
 * Options: `size` (CSS px), `camera` (see orbitCamera), `external` — when true the caller (the
 * widget) drives colours and lines through `.setColors` / `.setLines` instead of the bus events
 * "highlight:tokens" / "lines:weights" (it then follows the widget's colour encoding, search,
 * selection and line settings); `lasso` — `() => boolean`, true while the caller's lasso mode is
 * on (a drag then draws a lasso instead of orbiting; shift-drag always lassos); `onSelect(points:
 * Uint32Array)` — receives the lasso's points (indices within the focused head, ascending); without
 * it the view publishes "selection" `{points}` itself (global indices, `cell * 2n + point`);
 * `atlas` — `() => Promise<reply of {kind: "atlas"}>` for patch thumbnails (`.setThumbnails`; else
 * the view asks `ctx.fetchDetail` itself).
 * The cleanup loses the WebGL context (WEBGL_lose_context) and removes the canvas, so a view that
 * is left frees its context at once instead of waiting for garbage collection.
 * @returns {() => void} cleanup (with .camera(), .setCamera(c), .reload(), .setColors(rgba, o),
 *   .setLines(segments), .setThumbnails(o), .thumbnail(token, px), .resize(size),
 *   .screenPositions(), .depthOrder(), .canvas)
 */
export function mount3D(container, ctx, { size = 480, camera: cam0, external = false, background = null, lasso = null, onSelect = null, atlas: getAtlas = null } = {}) {
  const ac = new AbortController();
  const { signal } = ac;
  const canvas = h("canvas", { class: "qkv-3d", width: size, height: size, style: `width:${size}px;height:${size}px;cursor:grab;display:block` });
  const status = h("div", { class: "qkv-status", text: "drag to rotate · wheel to zoom · click a point" });
  // the lasso is drawn in a 2-D canvas over the WebGL one (never takes the mouse)
  const lassoCanvas = h("canvas", { class: "qkv-3d-lasso", width: size, height: size, style: `position:absolute;left:0;top:0;width:${size}px;height:${size}px;pointer-events:none` });
  // patch thumbnails of image captures: a 2-D canvas between the points and the lasso
  const thumbCanvas = h("canvas", { class: "qkv-3d-thumbs", width: size, height: size, style: `position:absolute;left:0;top:0;width:${size}px;height:${size}px;pointer-events:none` });
  const box = h("div", { class: "qkv-3d-box", style: "position:relative;font: 12px var(--jp-ui-font-family, system-ui, sans-serif)" }, canvas, thumbCanvas, lassoCanvas, status);
  container.append(box);
  if (external) status.hidden = true; // the widget's own status line explains the gestures
  let camera = orbitCamera({ aspect: 1, ...cam0 });
  const regl = createREGL({ canvas, attributes: { preserveDrawingBuffer: true, antialias: true }, extensions: ["OES_element_index_uint"] });

  let pts = null, n = 0, pos = null, color = null, sizes = null, lines = null, lastClick = null, highlighted = null;
  let selected = new Uint32Array(0), segments = null, thumbs = null, atlas = null, atlasLoading = null;
  function load() {
    pts = ctx.getPoints?.() ?? null;
    const coords = pts && (pts.coords3 ?? pts.coords) ? decode(pts.coords3 ?? pts.coords, "float32") : null;
    if (!coords || coords.length % 3) { status.textContent = "no 3-D coordinates for this head"; n = 0; return; }
    n = coords.length / 3;
    pos = coords;
    const kind = Uint8Array.from({ length: n }, (_, i) => (i < n / 2 ? 0 : 1));
    color = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      const c = kind[i] ? KEY_RGB : QUERY_RGB;
      color.set([c[0] / 255, c[1] / 255, c[2] / 255, 0.85], 4 * i);
    }
    sizes = new Float32Array(n).fill(POINT_PX);
    selected = new Uint32Array(0);
    posBuf(pos); colBuf(color); sizeBuf(sizes); layers();
  }
  // Draw order as in the 2-D scatter: dimmed points first (they never hide a bright one: no depth
  // writes), then the bright ones, then the selected ones bigger and opaque on top of everything.
  const dimEl = regl.elements({ type: "uint32", primitive: "points", usage: "dynamic", data: new Uint32Array(0) });
  const brightEl = regl.elements({ type: "uint32", primitive: "points", usage: "dynamic", data: new Uint32Array(0) });
  const selEl = regl.elements({ type: "uint32", primitive: "points", usage: "dynamic", data: new Uint32Array(0) });
  const counts = { dim: 0, bright: 0, sel: 0 };
  function layers() {
    const chosen = new Uint8Array(n), dim = [], bright = [];
    for (const i of selected) if (i < n) chosen[i] = 1;
    for (let i = 0; i < n; i++) if (!chosen[i]) (color[4 * i + 3] < DIM_ALPHA ? dim : bright).push(i);
    const sel = selected.filter((i) => i < n);
    dimEl({ type: "uint32", primitive: "points", data: Uint32Array.from(dim) });
    brightEl({ type: "uint32", primitive: "points", data: Uint32Array.from(bright) });
    selEl({ type: "uint32", primitive: "points", data: Uint32Array.from(sel) });
    Object.assign(counts, { dim: dim.length, bright: bright.length, sel: sel.length });
  }
  const posBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const colBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const sizeBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const lineBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const drawPoints = regl({
    vert: `precision mediump float; attribute vec3 p; attribute vec4 c; attribute float s; uniform mat4 vp; uniform float dpr, grow, solid;
      varying vec4 vc; void main() { gl_Position = vp * vec4(p, 1.0); gl_PointSize = (s + grow) * dpr; vc = vec4(c.rgb, solid > 0.5 ? 1.0 : c.a); }`,
    frag: `precision mediump float; varying vec4 vc; void main() { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; gl_FragColor = vc; }`,
    attributes: { p: posBuf, c: colBuf, s: sizeBuf },
    uniforms: { vp: regl.prop("vp"), dpr: () => globalThis.devicePixelRatio || 1, grow: regl.prop("grow"), solid: regl.prop("solid") },
    elements: regl.prop("elements"), count: regl.prop("count"),
    depth: { enable: true, mask: regl.prop("mask") },
    blend: BLEND,
  });
  const drawLines = regl({
    vert: `precision mediump float; attribute vec4 p; uniform mat4 vp; varying float a; void main() { gl_Position = vp * vec4(p.xyz, 1.0); a = p.w; }`,
    frag: `precision mediump float; varying float a; void main() { gl_FragColor = vec4(${LINE_RGB.map((v) => v.toFixed(3)).join(", ")}, a); }`,
    attributes: { p: lineBuf }, uniforms: { vp: regl.prop("vp") },
    count: regl.prop("count"), primitive: "lines", depth: { enable: false },
    blend: BLEND,
  });

  /** Canvases in device pixels (sharp on HiDPI screens; point sizes are CSS px times dpr). */
  function fitCanvases() {
    const dpr = globalThis.devicePixelRatio || 1, px = Math.round(size * dpr);
    for (const c of [canvas, lassoCanvas, thumbCanvas]) {
      if (c.width !== px) { c.width = px; c.height = px; }
      c.style.width = `${size}px`; c.style.height = `${size}px`;
    }
  }
  function redraw() {
    fitCanvases();
    regl.poll();
    // follow the widget's theme trait, else JupyterLab's body flag
    const dark = ctx.model?.get?.("theme") === "dark" || document.body?.dataset.jpThemeLight === "false";
    regl.clear({ color: background?.() ?? (dark ? [0.12, 0.12, 0.12, 1] : [1, 1, 1, 1]), depth: 1 });
    if (!n) { paintThumbnails(); return; }
    const vp = Array.from(viewProjection(camera));
    if (counts.dim) drawPoints({ vp, elements: dimEl, count: counts.dim, grow: 0, solid: 0, mask: false });
    if (counts.bright) drawPoints({ vp, elements: brightEl, count: counts.bright, grow: 0, solid: 0, mask: true });
    if (counts.sel) {
      regl.clear({ depth: 1 }); // the selection sits on top, in depth order among itself
      drawPoints({ vp, elements: selEl, count: counts.sel, grow: SELECTED_GROW, solid: 1, mask: true });
    }
    // the widget's lines (`segments`) go on the 2-D overlay: WebGL draws GL_LINES 1 px wide only
    if (lines && lines.length && !segments) drawLines({ vp, count: lines.length / 4 });
    paintThumbnails();
  }

  /**
   * Thumbnails far to near (a nearer patch covers a farther one), dimmed ones first and faint, then
   * the attention lines again on top (the thumbnails would hide the WebGL lines).
   */
  function paintThumbnails() {
    const dpr = globalThis.devicePixelRatio || 1;
    const g = thumbCanvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, size, size);
    if (!thumbs || !atlas || !n) {
      delete thumbCanvas.dataset.drawn;
      if (n) paintLines(g, screenPositions());
      return;
    }
    const xy = screenPositions(), order = depthOrder(), half = n / 2;
    const sxy = new Float32Array(2 * n), tokens = new Uint32Array(n), kinds = new Uint8Array(n);
    const dim = thumbs.dim ? new Uint8Array(n) : null;
    order.forEach((i, k) => {
      sxy[2 * k] = xy[2 * i]; sxy[2 * k + 1] = xy[2 * i + 1];
      tokens[k] = i % half; kinds[k] = i < half ? 0 : 1;
      if (dim) dim[k] = thumbs.dim[i] ? 1 : 0;
    });
    drawThumbnails(g, atlas.canvas, atlas.uv, sxy, { tokens, kinds, size: thumbs.size ?? 14, dim, bounds: [size, size] });
    paintLines(g, xy);
    thumbCanvas.dataset.drawn = String(n);
  }
  /** The widget's attention lines, width and opacity by weight, as the 2-D view draws them. */
  function paintLines(g, xy) {
    if (!segments) return;
    const wmax = Math.max(1e-9, ...segments.map((sg) => sg.weight));
    g.strokeStyle = rgbUnit(LINE_RGB);
    g.lineCap = "round";
    for (const { a, b, weight } of segments) {
      const w = weight / wmax;
      g.globalAlpha = 0.25 + 0.75 * w; g.lineWidth = 1 + 3 * w;
      g.beginPath(); g.moveTo(xy[2 * a], xy[2 * a + 1]); g.lineTo(xy[2 * b], xy[2 * b + 1]); g.stroke();
    }
    g.globalAlpha = 1;
  }
  /** Point indices from the farthest to the nearest through the current camera. */
  function depthOrder() {
    const m = viewProjection(camera), w = new Float64Array(n);
    for (let i = 0; i < n; i++) w[i] = m[3] * pos[3 * i] + m[7] * pos[3 * i + 1] + m[11] * pos[3 * i + 2] + m[15];
    return Uint32Array.from({ length: n }, (_, i) => i).sort((a, b) => w[b] - w[a]);
  }

  /** CSS px (from the canvas' top-left) of every point through the current camera: [n*2], NaN behind it. */
  function screenPositions() {
    const xy = project3D(pos ?? [], camera);
    for (let i = 0; i < xy.length; i += 2) { xy[i] = (xy[i] + 1) / 2 * size; xy[i + 1] = (1 - xy[i + 1]) / 2 * size; }
    return xy;
  }
  function pick(ev) {
    if (!n) return -1;
    const [x, y] = localXY(ev, canvas);
    const xy = screenPositions();
    let best = -1, bestD = 8 * 8; // px²
    for (let i = 0; i < n; i++) {
      const d = (xy[2 * i] - x) ** 2 + (xy[2 * i + 1] - y) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }
  function describe(i) {
    // rows 0..n-1 are the queries of tokens 0..n-1, then the keys (docs/internals.md)
    const half = n / 2, token = i % half, table = pts.tokens ?? {};
    return { point: i, token, kind: i < half ? "query" : "key", seq: table.seq?.[token], pos: table.pos?.[token],
      layer: pts.layer, head: pts.head };
  }

  // lasso: shift-drag, or any drag while the caller's lasso mode is on (as the 2-D scatter)
  let poly = null;
  const g2 = lassoCanvas.getContext("2d");
  function drawLasso() {
    const dpr = globalThis.devicePixelRatio || 1;
    g2.setTransform(dpr, 0, 0, dpr, 0, 0);
    g2.clearRect(0, 0, size, size);
    if (!poly || poly.length < 4) return;
    g2.beginPath();
    g2.moveTo(poly[0], poly[1]);
    for (let k = 2; k < poly.length; k += 2) g2.lineTo(poly[k], poly[k + 1]);
    g2.closePath();
    g2.fillStyle = `rgba(${LASSO_RGB.join(",")},0.08)`; g2.fill();
    g2.strokeStyle = `rgb(${LASSO_RGB.join(",")})`; g2.lineWidth = 2; g2.stroke();
  }
  function endLasso() {
    const polygon = poly;
    poly = null; drawLasso();
    if (!polygon || polygon.length < 6 || !n) return;
    const inside = pointsInPolygon(screenPositions(), polygon);
    lastClick = null;
    if (onSelect) onSelect(inside);
    else {
      const off = (pts?.cell ?? 0) * n;
      ctx.bus?.publish("selection", { points: Uint32Array.from(inside, (i) => i + off) });
    }
    if (!external) { selected = inside; layers(); redraw(); }
    status.textContent = `${inside.length} point${inside.length === 1 ? "" : "s"} selected`;
  }

  // orbit: drag rotates, wheel zooms; a press that barely moves is a click (pick)
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    canvas.setPointerCapture?.(ev.pointerId);
    if (ev.shiftKey || lasso?.()) {
      poly = [...localXY(ev, canvas)]; drag = null;
      ctx.bus?.publish("point:hover", null); // no tooltip over the lasso
      return;
    }
    drag = { x: ev.clientX, y: ev.clientY, moved: 0 };
  }, { signal });
  canvas.addEventListener("pointermove", (ev) => {
    if (poly) {
      const [x, y] = localXY(ev, canvas), k = poly.length;
      if (Math.hypot(x - poly[k - 2], y - poly[k - 1]) >= 2) { poly.push(x, y); drawLasso(); }
      return;
    }
    if (drag) {
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      drag.moved += Math.abs(dx) + Math.abs(dy); drag.x = ev.clientX; drag.y = ev.clientY;
      camera = { ...camera, theta: camera.theta - dx * 0.01, phi: Math.max(-1.5, Math.min(1.5, camera.phi + dy * 0.01)) };
      redraw(); ctx.bus?.publish("camera:change", { camera });
      return;
    }
    const i = pick(ev);
    ctx.bus?.publish("point:hover", i >= 0 ? describe(i) : null);
  }, { signal });
  canvas.addEventListener("pointerup", (ev) => {
    if (poly) {
      const [x, y] = localXY(ev, canvas);
      poly.push(x, y);
      let far = 0;
      for (let k = 2; k < poly.length; k += 2) far = Math.max(far, Math.hypot(poly[k] - poly[0], poly[k + 1] - poly[1]));
      if (far >= 4) { endLasso(); return; }
      // a press that barely moved is a click (it picks), as in the 2-D scatter's lasso mode
      poly = null; drawLasso(); drag = { moved: 0 };
    }
    const click = drag && drag.moved < 4;
    drag = null;
    if (!click) return;
    const i = pick(ev);
    lastClick = i >= 0 ? describe(i) : null;
    ctx.bus?.publish("point:click", lastClick);
    if (lastClick) status.textContent = `point ${i} (${lastClick.kind} of token ${lastClick.token})`;
  }, { signal });
  canvas.addEventListener("pointercancel", () => { poly = null; drag = null; drawLasso(); }, { signal });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    camera = { ...camera, distance: Math.max(0.5, Math.min(20, camera.distance * Math.exp(ev.deltaY * 0.001))) };
    redraw(); ctx.bus?.publish("camera:change", { camera });
  }, { signal, passive: false });

  // attention lines: the clicked query to its top keys (or the clicked key from its top queries)
  const onLines = (msg) => {
    if (!lastClick || !msg?.tokens || !n) { lines = null; redraw(); return; }
    const toks = decode(msg.tokens, "uint32"), w = decode(msg.weights, "float32"), half = n / 2;
    const at = toks.indexOf(lastClick.token);
    if (at < 0) return;
    const out = [];
    const push = (a, b, wt) => out.push(pos[3 * a], pos[3 * a + 1], pos[3 * a + 2], wt, pos[3 * b], pos[3 * b + 1], pos[3 * b + 2], wt);
    for (const { pos: p, weight } of topPartners(w, lastClick.kind, at, 5, 0.05)) {
      if (lastClick.kind === "query") push(toks[at], half + toks[p], weight);
      else push(toks[p], half + toks[at], weight);
    }
    lines = new Float32Array(out); lineBuf(lines); redraw();
  };
  const onHighlight = (msg) => {
    if (!n) return;
    highlighted = msg?.tokens ? new Set(decode(msg.tokens, "uint32")) : null;
    const half = n / 2;
    for (let i = 0; i < n; i++) {
      const on = !highlighted || highlighted.has(i % half);
      sizes[i] = highlighted && on ? 2 * POINT_PX : POINT_PX;
      color[4 * i + 3] = on ? 0.85 : 0.2; // others dimmed, not hidden (as in the scatter)
    }
    sizeBuf(sizes); colBuf(color); layers(); redraw();
  };
  const subs = ctx.bus && !external ? [ctx.bus.subscribe("lines:weights", onLines), ctx.bus.subscribe("highlight:tokens", onHighlight)] : [];

  load(); redraw();
  signal.addEventListener("abort", () => {
    for (const token of subs) ctx.bus.unsubscribe(token);
    // regl.destroy frees buffers but keeps the context; lose it so that the browser's limit on live
    // WebGL contexts (about 16) counts this one out now, not at garbage collection
    const lose = regl._gl.getExtension("WEBGL_lose_context");
    regl.destroy(); lose?.loseContext(); box.remove();
  });
  const cleanup = () => ac.abort();
  cleanup.camera = () => camera;
  cleanup.setCamera = (c) => { camera = orbitCamera({ ...camera, ...c }); redraw(); };
  cleanup.reload = () => { load(); lines = null; segments = null; lastClick = null; redraw(); };
  /**
   * Per-point colours, Float32Array [point*4] RGBA in 0..1 (rows as in getPoints); alpha < 0.5 draws
   * a point as dimmed (underneath). `selected` (point indices) are drawn bigger and opaque on top,
   * as the 2-D scatter draws its selection; `sizes` Float32Array [point] diameters in CSS px (size
   * by norm), else all POINT_PX.
   */
  cleanup.setColors = (rgba, { selected: sel = null, sizes: px = undefined } = {}) => {
    if (!n || rgba.length !== n * 4) return;
    color = Float32Array.from(rgba); colBuf(color);
    if (sel) selected = Uint32Array.from(sel);
    if (px !== undefined) { sizes = px && px.length === n ? Float32Array.from(px) : new Float32Array(n).fill(POINT_PX); sizeBuf(sizes); }
    layers(); redraw();
  };
  /** Attention lines: [{a, b, weight}] point indices of the focused head; opacity ∝ weight. */
  cleanup.setLines = (segs) => {
    segments = n && segs?.length ? segs : null;
    if (!segments) { lines = null; redraw(); return; }
    const wmax = Math.max(1e-9, ...segments.map((sg) => sg.weight)), out = [];
    for (const { a, b, weight } of segments) {
      const al = 0.35 + 0.65 * (weight / wmax);
      out.push(pos[3 * a], pos[3 * a + 1], pos[3 * a + 2], al, pos[3 * b], pos[3 * b + 1], pos[3 * b + 2], al);
    }
    lines = new Float32Array(out); lineBuf(lines); redraw();
  };
  /** Resize the square canvas (CSS px). */
  cleanup.resize = (px) => {
    if (px === size) return;
    size = px;
    redraw();
  };
  /** CSS px of the focused head's points through the current camera, Float32Array [point*2]. */
  cleanup.screenPositions = screenPositions;
  /** A `px`-sized canvas of token `t`'s patch (tooltips); null before the atlas or for CLS. */
  cleanup.thumbnail = (t, px = 64) => (atlas ? patchCanvas(atlas, t, px) : null);
  /** Point indices from the farthest to the nearest (for drawings over the canvas). */
  cleanup.depthOrder = depthOrder;
  /**
   * Patch thumbnails over the points (image captures), or none (null): `{size: CSS px, dim?:
   * Uint8Array [point] (1 = faint, underneath)}`. The atlas is fetched on first use.
   */
  cleanup.setThumbnails = (opts) => {
    thumbs = opts ?? null;
    if (thumbs && !atlas) {
      atlasLoading ??= Promise.resolve(getAtlas ? getAtlas() : ctx.fetchDetail({ kind: "atlas" }))
        .then((reply) => { atlas = { canvas: atlasCanvas(reply), uv: decode(reply.uv, "float32") }; })
        .catch((err) => console.error("[qkviz] 3-D thumbnails:", err));
      atlasLoading.then(() => { if (!signal.aborted) paintThumbnails(); });
    }
    paintThumbnails();
  };
  cleanup.canvas = canvas;
  return cleanup;
}
