// The legend beside the canvas: the colour field's ramps or categories (from colors.js' `legend`).
import { h } from "../ui/dom.js";

const SHOWN = 12; // categories listed before "+n more"

/** Replace `el`'s children by the legend of an encoding. */
export function renderLegend(el, legend) {
  el.replaceChildren(h("div", { class: "qk-legend-title", text: legend.title }));
  if (legend.type === "ramp") {
    for (const [label, stops] of [["query", legend.query], ["key", legend.key]]) {
      el.append(h("div", { class: "qk-legend-ramp" },
        h("span", { class: "qk-legend-kind", text: label }),
        h("span", { class: "qk-legend-lo", text: legend.lo }),
        h("span", { class: "qk-legend-bar", style: `background: linear-gradient(to right, ${stops.join(",")})` }),
        h("span", { class: "qk-legend-hi", text: legend.hi })));
    }
    return;
  }
  legend.names.slice(0, SHOWN).forEach((name, i) => {
    el.append(h("div", { class: "qk-legend-item" }, h("span", { class: "qk-swatch", style: `background: ${legend.colors[i]}` }), name));
  });
  // `total`: how many categories there are when the legend names fewer (sequences beyond the
  // palette's colours), counted in `unit`
  const total = legend.total ?? legend.names.length;
  if (total > SHOWN) el.append(h("div", { class: "qk-legend-item", text: `+${total - SHOWN} more${legend.unit ? ` ${legend.unit}` : ""}` }));
  if (legend.note) el.append(h("div", { class: "qk-legend-note", text: legend.note }));
}
