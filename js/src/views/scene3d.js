// 3-D point cloud for dim=3 embeddings: orbit (drag), zoom (wheel), pick (click/hover), attention
// lines in 3-D. `project3D` is pure, so the matrix view can draw every head from one shared camera.
import createREGL from "regl";
import { topK } from "./attention.js";
import { KEY_RGB, QUERY_RGB, h, localXY, typed } from "./util.js";

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

/** Colour of attention lines: an orange that reads on white and on a dark background alike. */
export const LINE_RGB = [0.91, 0.35, 0.05];

/**
 * Mount the orbitable 3-D view of the focused head.
 * ctx.getPoints() must return {coords3 | coords: Float32Array [point*3] of the focused head, layer,
 * head, tokens?: {seq, pos}}; rows 0..n-1 are the queries of tokens 0..n-1 and n..2n-1 their keys
 * (docs/internals.md).
 * Options: `size` (CSS px), `camera` (see orbitCamera), `external` — when true the caller (the
 * widget) drives colours and lines through `.setColors` / `.setLines` instead of the bus events
 * "highlight:tokens" / "lines:weights" (it then follows the widget's colour encoding, search,
 * selection and line settings).
 * @returns {() => void} cleanup (with .camera(), .setCamera(c), .reload(), .setColors(rgba),
 *   .setLines(segments), .resize(size), .canvas)
 */
export function mount3D(container, ctx, { size = 480, camera: cam0, external = false, background = null } = {}) {
  const ac = new AbortController();
  const { signal } = ac;
  const canvas = h("canvas", { class: "qkv-3d", width: size, height: size, style: `width:${size}px;height:${size}px;cursor:grab;display:block` });
  const status = h("div", { class: "qkv-status", text: "drag to rotate · wheel to zoom · click a point" });
  const box = h("div", { class: "qkv-3d-box", style: "font: 12px var(--jp-ui-font-family, system-ui, sans-serif)" }, canvas, status);
  container.append(box);
  if (external) status.hidden = true; // the widget's own status line explains the gestures
  let camera = orbitCamera({ aspect: 1, ...cam0 });
  const regl = createREGL({ canvas, attributes: { preserveDrawingBuffer: true, antialias: true } });

  let pts = null, n = 0, pos = null, color = null, sizes = null, lines = null, lastClick = null, highlighted = null;
  function load() {
    pts = ctx.getPoints?.() ?? null;
    const coords = pts && typed(pts.coords3 ?? pts.coords);
    if (!coords || coords.length % 3) { status.textContent = "no 3-D coordinates for this head"; n = 0; return; }
    n = coords.length / 3;
    pos = coords;
    const kind = Uint8Array.from({ length: n }, (_, i) => (i < n / 2 ? 0 : 1));
    color = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      const c = kind[i] ? KEY_RGB : QUERY_RGB;
      color.set([c[0] / 255, c[1] / 255, c[2] / 255, 0.85], 4 * i);
    }
    sizes = new Float32Array(n).fill(4);
    posBuf(pos); colBuf(color); sizeBuf(sizes);
  }
  const posBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const colBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const sizeBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const lineBuf = regl.buffer({ usage: "dynamic", type: "float" });
  const drawPoints = regl({
    vert: `precision mediump float; attribute vec3 p; attribute vec4 c; attribute float s; uniform mat4 vp; uniform float dpr;
      varying vec4 vc; void main() { gl_Position = vp * vec4(p, 1.0); gl_PointSize = s * dpr; vc = c; }`,
    frag: `precision mediump float; varying vec4 vc; void main() { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; gl_FragColor = vc; }`,
    attributes: { p: posBuf, c: colBuf, s: sizeBuf },
    uniforms: { vp: regl.prop("vp"), dpr: () => globalThis.devicePixelRatio || 1 },
    count: regl.prop("count"), primitive: "points",
    depth: { enable: true },
    blend: { enable: true, func: { src: "src alpha", dst: "one minus src alpha" } },
  });
  const drawLines = regl({
    vert: `precision mediump float; attribute vec4 p; uniform mat4 vp; varying float a; void main() { gl_Position = vp * vec4(p.xyz, 1.0); a = p.w; }`,
    frag: `precision mediump float; varying float a; void main() { gl_FragColor = vec4(${LINE_RGB.map((v) => v.toFixed(3)).join(", ")}, a); }`,
    attributes: { p: lineBuf }, uniforms: { vp: regl.prop("vp") },
    count: regl.prop("count"), primitive: "lines", depth: { enable: false },
    blend: { enable: true, func: { src: "src alpha", dst: "one minus src alpha" } },
  });

  function redraw() {
    regl.poll();
    // follow the widget's theme trait, else JupyterLab's body flag
    const dark = ctx.model?.get?.("theme") === "dark" || document.body?.dataset.jpThemeLight === "false";
    regl.clear({ color: background?.() ?? (dark ? [0.12, 0.12, 0.12, 1] : [1, 1, 1, 1]), depth: 1 });
    if (!n) return;
    const vp = Array.from(viewProjection(camera));
    drawPoints({ vp, count: n });
    if (lines && lines.length) drawLines({ vp, count: lines.length / 4 });
  }

  function pick(ev) {
    if (!n) return -1;
    const [x, y] = localXY(ev, canvas);
    const ndc = project3D(pos, camera);
    let best = -1, bestD = 8 * 8; // px²
    for (let i = 0; i < n; i++) {
      const sx = (ndc[2 * i] + 1) / 2 * size, sy = (1 - ndc[2 * i + 1]) / 2 * size;
      const d = (sx - x) ** 2 + (sy - y) ** 2;
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

  // orbit: drag rotates, wheel zooms; a press that barely moves is a click (pick)
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, moved: 0 }; canvas.setPointerCapture?.(ev.pointerId); }, { signal });
  canvas.addEventListener("pointermove", (ev) => {
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
    const click = drag && drag.moved < 4;
    drag = null;
    if (!click) return;
    const i = pick(ev);
    lastClick = i >= 0 ? describe(i) : null;
    ctx.bus?.publish("point:click", lastClick);
    if (lastClick) status.textContent = `point ${i} (${lastClick.kind} of token ${lastClick.token})`;
  }, { signal });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    camera = { ...camera, distance: Math.max(0.5, Math.min(20, camera.distance * Math.exp(ev.deltaY * 0.001))) };
    redraw(); ctx.bus?.publish("camera:change", { camera });
  }, { signal, passive: false });

  // attention lines: the clicked query to its top keys (or the clicked key from its top queries)
  const onLines = (msg) => {
    if (!lastClick || !msg?.tokens || !n) { lines = null; redraw(); return; }
    const toks = typed(msg.tokens, Uint32Array), w = typed(msg.weights), m = toks.length, half = n / 2;
    const at = toks.indexOf(lastClick.token);
    if (at < 0) return;
    const out = [];
    const push = (a, b, wt) => out.push(pos[3 * a], pos[3 * a + 1], pos[3 * a + 2], wt, pos[3 * b], pos[3 * b + 1], pos[3 * b + 2], wt);
    if (lastClick.kind === "query") for (const j of topK(w, m, at, 5, 0.05)) push(toks[at], half + toks[j], w[at * m + j]);
    else {
      const col = new Float32Array(m * m); // transpose so topK reads the key's column as a row
      for (let i = 0; i < m; i++) col[at * m + i] = w[i * m + at];
      for (const i of topK(col, m, at, 5, 0.05)) push(toks[i], half + toks[at], w[i * m + at]);
    }
    lines = new Float32Array(out); lineBuf(lines); redraw();
  };
  const onHighlight = (msg) => {
    if (!n) return;
    highlighted = msg?.tokens ? new Set(typed(msg.tokens, Uint32Array)) : null;
    const half = n / 2;
    for (let i = 0; i < n; i++) {
      const on = !highlighted || highlighted.has(i % half);
      sizes[i] = highlighted && on ? 8 : 4;
      color[4 * i + 3] = on ? 0.85 : 0.2; // others dimmed, not hidden (as in the scatter)
    }
    sizeBuf(sizes); colBuf(color); redraw();
  };
  const subs = ctx.bus && !external ? [ctx.bus.subscribe("lines:weights", onLines), ctx.bus.subscribe("highlight:tokens", onHighlight)] : [];

  load(); redraw();
  signal.addEventListener("abort", () => {
    for (const token of subs) ctx.bus.unsubscribe(token);
    regl.destroy(); box.remove();
  });
  const cleanup = () => ac.abort();
  cleanup.camera = () => camera;
  cleanup.setCamera = (c) => { camera = orbitCamera({ ...camera, ...c }); redraw(); };
  cleanup.reload = () => { load(); lines = null; lastClick = null; redraw(); };
  /** Per-point colours, Float32Array [point*4] RGBA in 0..1 (rows as in getPoints). */
  cleanup.setColors = (rgba) => {
    if (!n || rgba.length !== n * 4) return;
    color = Float32Array.from(rgba); colBuf(color); redraw();
  };
  /** Attention lines: [{a, b, weight}] point indices of the focused head; opacity ∝ weight. */
  cleanup.setLines = (segments) => {
    if (!n || !segments?.length) { lines = null; redraw(); return; }
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
    size = px; canvas.width = px; canvas.height = px;
    canvas.style.width = `${px}px`; canvas.style.height = `${px}px`; redraw();
  };
  cleanup.canvas = canvas;
  return cleanup;
}
