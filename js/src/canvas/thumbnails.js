// Patch thumbnails for image captures. regl-scatterplot draws only round points, so the widget
// draws thumbnails of the focused head in a 2-D overlay canvas above the scatter, from one atlas
// texture (the "atlas" reply) — never one image per point. createThumbnailFeed tells the overlay
// what to draw: the focused head's points on screen, dimmed ones, the attention lines.
import { KEY_RGB, LINE_RGB, QUERY_RGB, rgb, rgbUnit } from "../ui/palette.js";
import { decode } from "../wire/codec.js";

const THUMB_SIZE = 14; // CSS px of a patch thumbnail in the single view

/**
 * The atlas payload (uint8 [h, w, 4]) as a canvas usable by drawImage.
 * @param {{atlas: any, atlas_shape?: number[]}} payload  `atlas` flat RGBA bytes; its shape from
 *   `atlas.shape` (wire dict) or `payload.atlas_shape`.
 */
export function atlasCanvas(payload) {
  const bytes = decode(payload.atlas, "uint8");
  const [hgt, wid] = payload.atlas.shape ?? payload.atlas_shape;
  const c = document.createElement("canvas");
  c.width = wid; c.height = hgt;
  c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(bytes.buffer, bytes.byteOffset, wid * hgt * 4), wid, hgt), 0, 0);
  return c;
}

/**
 * Draw point thumbnails.
 * @param {CanvasRenderingContext2D} g  overlay context (CSS-pixel transform)
 * @param {HTMLCanvasElement} atlas  from atlasCanvas
 * @param {Float32Array} uv  [token*4] (u0, v0, u1, v1); u0 < 0 → non-patch token (CLS)
 * @param {ArrayLike<number>} xy  [point*2] screen positions (CSS px) of the points to draw
 * @param {{tokens: ArrayLike<number>, kinds?: ArrayLike<number>, size?: number, border?: number,
 *   dim?: ArrayLike<number>}} o
 *   tokens[i] is point i's token row; kinds[i] 0 = query (green border), 1 = key (pink); dim[i] 1 =
 *   point i is dimmed (search, highlight or selection elsewhere): drawn faint and underneath;
 *   bounds [w, h]: skip points farther than one thumbnail outside that box
 */
export function drawThumbnails(g, atlas, uv, xy, { tokens, kinds = null, size = 16, border = 2, dim = null, bounds = null } = {}) {
  const W = atlas.width, H = atlas.height, s = size, r = s / 2;
  g.imageSmoothingEnabled = true;
  // dimmed points first (faint), then the bright ones on top of them
  for (const pass of dim ? [1, 0] : [0]) {
    g.globalAlpha = pass ? 0.3 : 1;
    for (let i = 0; i < tokens.length; i++) {
      if (dim && (dim[i] ? 1 : 0) !== pass) continue;
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      // off-screen when zoomed in: drawImage costs even where nothing shows
      if (bounds && (x < -s || y < -s || x > bounds[0] + s || y > bounds[1] + s)) continue;
      const t = tokens[i], colour = kinds && kinds[i] ? KEY_RGB : QUERY_RGB;
      if (uv[4 * t] < 0) {
        // CLS (or any non-patch token): a diamond marker in the q/k colour, larger than a patch
        const q = r * 1.25;
        g.fillStyle = rgb(colour); g.strokeStyle = "#fff"; g.lineWidth = 1.5;
        g.beginPath(); g.moveTo(x, y - q); g.lineTo(x + q, y); g.lineTo(x, y + q); g.lineTo(x - q, y); g.closePath(); g.fill(); g.stroke();
        g.strokeStyle = "#000"; g.lineWidth = 0.75; g.stroke();
        continue;
      }
      const sx = uv[4 * t] * W, sy = uv[4 * t + 1] * H, sw = (uv[4 * t + 2] - uv[4 * t]) * W, sh = (uv[4 * t + 3] - uv[4 * t + 1]) * H;
      g.drawImage(atlas, sx, sy, sw, sh, x - r, y - r, s, s);
      if (border > 0) { g.strokeStyle = rgb(colour); g.lineWidth = border; g.strokeRect(x - r, y - r, s, s); }
    }
  }
  g.globalAlpha = 1;
}

/**
 * A `px`-sized canvas showing token `t`'s patch (tooltips); null for a non-patch token (CLS).
 * @param {{canvas: HTMLCanvasElement, uv: Float32Array}} atlas  atlasCanvas(reply) and the reply's uv
 */
export function patchCanvas(atlas, t, px = 64) {
  if (!(atlas.uv[4 * t] >= 0)) return null;
  const c = document.createElement("canvas"), W = atlas.canvas.width, H = atlas.canvas.height, uv = atlas.uv;
  c.width = px; c.height = px;
  const g = c.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.drawImage(atlas.canvas, uv[4 * t] * W, uv[4 * t + 1] * H, (uv[4 * t + 2] - uv[4 * t]) * W, (uv[4 * t + 3] - uv[4 * t + 1]) * H, 0, 0, px, px);
  return c;
}

/**
 * Keep a thumbnail overlay over the scatter of an image capture.
 *
 * The overlay is a 2-D canvas (pointer-events: none) stacked on `container` (which must be
 * positioned). It redraws on the bus event "view:points" {xy: Float32Array [point*2] CSS px
 * relative to `container`, size?: number} that the widget publishes for the focused head after every
 * camera change (null clears, e.g. on the matrix view); optional `dim: Uint8Array [point]` (1 =
 * dimmed) and `lines: [{a, b, weight}]` (point indices, weight relative to the strongest, 0..1) drawn
 * over the thumbnails in `lineColor`. Rows 0..n-1 are queries, n..2n-1 keys.
 * The atlas is fetched once ({kind: "atlas"}).
 * @returns {() => void} cleanup
 */
export function mountThumbnails(container, ctx) {
  const ac = new AbortController();
  const canvas = document.createElement("canvas");
  canvas.className = "qkv-thumbs";
  canvas.style.cssText = "position:absolute;left:0;top:0;pointer-events:none";
  container.append(canvas);
  let atlas = null, loading = null, last = null;

  async function ensureAtlas() {
    loading ??= ctx.fetchDetail({ kind: "atlas" }).then((d) => {
      atlas = { canvas: atlasCanvas(d), uv: decode(d.uv, "float32") };
    });
    return loading;
  }
  function paint() {
    const w = container.clientWidth, hgt = container.clientHeight, dpr = globalThis.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(w * dpr)); canvas.height = Math.max(1, Math.round(hgt * dpr));
    canvas.style.width = `${w}px`; canvas.style.height = `${hgt}px`;
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    if (!last || !atlas) return;
    const xy = decode(last.xy, "float32"), count = xy.length / 2, n = count / 2;
    const tokens = new Uint32Array(count), kinds = new Uint8Array(count);
    for (let i = 0; i < count; i++) { tokens[i] = i % n; kinds[i] = i < n ? 0 : 1; }
    drawThumbnails(g, atlas.canvas, atlas.uv, xy, { tokens, kinds, size: last.size ?? 14, dim: last.dim ?? null, bounds: [w, hgt] });
    // attention lines again on top, or the thumbnails would hide them
    for (const { a, b, weight } of last.lines ?? []) {
      g.strokeStyle = last.lineColor ?? rgbUnit(LINE_RGB);
      g.globalAlpha = 0.25 + 0.75 * weight; g.lineWidth = 1 + 3 * weight;
      g.beginPath(); g.moveTo(xy[2 * a], xy[2 * a + 1]); g.lineTo(xy[2 * b], xy[2 * b + 1]); g.stroke();
    }
    g.globalAlpha = 1;
    canvas.dataset.drawn = String(count);
  }
  const token = ctx.bus.subscribe("view:points", async (msg) => {
    last = msg?.xy ? msg : null;
    if (last && !atlas) {
      try { await ensureAtlas(); } catch (err) { console.error("[qkviz] thumbnails:", err); return; }
    }
    if (!ac.signal.aborted) paint();
  });
  ac.signal.addEventListener("abort", () => { ctx.bus.unsubscribe(token); canvas.remove(); });
  const cleanup = () => ac.abort();
  /** A `px`-sized canvas showing token `t`'s patch (e.g. for a tooltip); null before the atlas is
   * loaded or for a non-patch token. */
  cleanup.thumbnail = (t, px = 64) => (atlas ? patchCanvas(atlas, t, px) : null);
  return cleanup;
}

/**
 * What the thumbnail overlay of an image capture shows: after every draw, camera move, selection
 * or line change, `publish()` sends "view:points" with the focused head's screen positions (2-D
 * single view, thumbnails on), or null (matrix, thumbnails off, 3-D: the scene draws its own
 * thumbnails, in depth order, and gets them here too).
 */
export function createThumbnailFeed(ctx) {
  const { meta, bus } = ctx;
  function publish() {
    if (!meta.has_images) return;
    const { state, scatter } = ctx, on = ctx.toolbar.thumbnailsOn();
    if (state.mode !== "single" || state.is3d || !scatter.drawn() || !on) {
      bus.publish("view:points", null);
      if (state.is3d) ctx.single3d.setThumbnails(scatter.drawn() && on ? { size: THUMB_SIZE, dim: scatter.thumbDim() } : null);
      return;
    }
    bus.publish("view:points", { xy: scatter.screenPositions(), size: THUMB_SIZE, dim: scatter.thumbDim(),
      lines: ctx.lines.segments() ?? [], lineColor: rgbUnit(LINE_RGB) });
  }
  return { publish };
}
