// Placeholder entry so the bundle builds; the widget issue replaces it.
function render({ el }) {
  el.textContent = "qkviz";
  return () => {};
}
export default { render };
