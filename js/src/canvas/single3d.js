// The single view of a 3-D layout: the orbitable scene (scene3d.js mount3D) over the scatter,
// which stays drawn but hidden so that selection and search keep one code path. The scene takes
// its colours, lines and thumbnails from the scatter (`external`), and its picks and orbit come
// back over the bus (see view.js).
//
// One extra WebGL context per widget view while a 3-D head is open, reused for every head; leaving
// the single view loses it, so many widgets on the matrix stay under the browser's context cap.
import { h } from "../ui/dom.js";
import { BACKGROUND } from "../ui/palette.js";
import { mount3D } from "./scene3d.js";

export function createSingle3D(ctx) {
  const { model, bus, dom, signal } = ctx;
  let scene = null, box = null, atlas = null;

  /** Mount, update or remove the scene for the current mode. */
  function show() {
    if (!ctx.state.is3d) {
      if (scene) {
        signal.removeEventListener("abort", scene);
        scene();
        box.remove();
        scene = null; box = null;
      }
      dom.canvas.style.visibility = "";
      return;
    }
    const size = ctx.canvasSize()[0];
    if (!scene) {
      box = h("div", { class: "qk-3d" });
      dom.stage.insertBefore(box, dom.overlay);
      scene = mount3D(box, { model, bus, getPoints: ctx.getPoints }, {
        size, camera: ctx.orbit.camera(), external: true, background: () => BACKGROUND[ctx.state.theme],
        lasso: () => ctx.toolbar.lassoOn(), onSelect: (points) => ctx.selection.sendLocal(points),
        atlas: () => (atlas ??= ctx.fetchDetail({ kind: "atlas" })),
      });
      signal.addEventListener("abort", scene);
    } else {
      scene.resize(size);
      scene.setCamera(ctx.orbit.camera());
      scene.reload();
    }
    box.hidden = false;
    dom.canvas.style.visibility = "hidden"; // still drawn (selection and search keep one code path)
  }

  /** The scene's colours and selection, from the drawn palette index (as the scatter shows them). */
  function paint() {
    if (!ctx.state.is3d || !scene || !ctx.scatter.drawn()) return;
    scene.setColors(ctx.scatter.pointColors(), { selected: ctx.selection.local(), sizes: ctx.scatter.pointSizes() });
  }

  return {
    show, paint,
    setLines: (segments) => scene?.setLines(segments),
    setThumbnails: (opts) => scene?.setThumbnails(opts),
    resize: (px) => scene?.resize(px),
    thumbnail: (token, px) => (ctx.state.is3d ? scene?.thumbnail(token, px) ?? null : null),
  };
}
