// @ts-check
// The one place where the front end writes traits: set them, then save once, so that Python
// sees one change message per user action (lonboard's state/python-sync.ts). Nothing else in the
// front end calls model.set or model.save_changes.

/**
 * @typedef {import("./model.js").QKVizModel} QKVizModel
 * @typedef {import("./model.js").QKVizTraits} QKVizTraits
 */

/**
 * Set one trait and send it to Python.
 * @template {keyof QKVizTraits} K
 * @param {QKVizModel} model
 * @param {K} name
 * @param {QKVizTraits[K]} value
 */
export function setTrait(model, name, value) {
  model.set(name, value);
  model.save_changes();
}

/**
 * Set several traits and send them to Python in one message (e.g. layer and head together, so
 * Python never sees a half-focused head).
 * @param {QKVizModel} model
 * @param {Partial<QKVizTraits>} values
 */
export function setTraits(model, values) {
  for (const [name, value] of Object.entries(values)) model.set(/** @type {keyof QKVizTraits} */ (name), value);
  model.save_changes();
}
