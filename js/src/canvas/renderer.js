// One WebGL context for every qkviz view on the page (browsers cap live contexts at ~16): each
// scatterplot draws through this shared renderer into its own 2-D canvas.
import { createRenderer } from "regl-scatterplot";

let renderer = null;

export function getRenderer() {
  if (!renderer || renderer.isDestroyed) renderer = createRenderer();
  return renderer;
}
