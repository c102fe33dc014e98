// The one camera of a 3-D layout, shared by the single view (orbiting its head) and the matrix
// (every head seen from it). Dragging on the 3-D matrix turns it, so every head turns together; a
// click still picks a cell. The single 3-D view orbits the same camera ("camera:change").
import { orbitCamera } from "./scene3d.js";

const DRAG_PX = 4; // a press that moves less is a click

export function createOrbit(ctx) {
  const { meta, dom, on, signal } = ctx;
  let camera = orbitCamera();
  let drag = null, queued = false, suppressClick = false;

  on(dom.stage, "pointerdown", (e) => {
    suppressClick = false; // a drag released outside the stage never got its click
    // shift-drag or lasso mode: the scatter's lasso, not an orbit
    const lassoing = e.shiftKey || ctx.toolbar.lassoOn();
    if (ctx.state.mode === "matrix" && meta.dim === 3 && !lassoing) drag = { x: e.clientX, y: e.clientY, moved: 0 };
  });
  on(globalThis, "pointermove", (e) => {
    if (!drag || ctx.state.mode !== "matrix") return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.moved += Math.abs(dx) + Math.abs(dy); drag.x = e.clientX; drag.y = e.clientY;
    if (drag.moved < DRAG_PX) return;
    turn({ theta: camera.theta - dx * 0.01, phi: Math.max(-1.5, Math.min(1.5, camera.phi + dy * 0.01)) });
  });
  on(globalThis, "pointerup", () => {
    if (drag && drag.moved >= DRAG_PX) suppressClick = true;
    drag = null;
  });

  /** Set the shared camera; the matrix re-projects every head once per frame at most. */
  function turn(change) {
    camera = { ...camera, ...change };
    dom.root.dataset.qkCamera = JSON.stringify({ theta: camera.theta, phi: camera.phi, distance: camera.distance });
    if (ctx.state.mode !== "matrix" || queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      if (ctx.state.mode !== "matrix" || signal.aborted) return;
      ctx.matrixLayout();
      ctx.scatter.draw().then(() => ctx.bus.publish("camera", { mode: ctx.state.mode })).catch(ctx.fail);
    });
  }

  /** True once after an orbit drag: the click that ends it must not pick a cell. */
  function takeClick() {
    const was = suppressClick;
    suppressClick = false;
    return was;
  }

  return { camera: () => camera, turn, takeClick };
}
