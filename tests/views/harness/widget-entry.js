// Harness entry for widget.html: the whole front end (js/src/index.js) plus what the page needs to
// play anywidget: the one fake model (strict: only typed traits), the widget's own reply decoder.
export { default } from "../../../js/src/index.js";
export { TRAITS } from "../../../js/src/model.js";
export { createModel } from "../../../js/src/page/model.js";
export { unpackBuffers } from "../../../js/src/wire/codec.js";
