// qkviz standalone page runtime: runs the widget's own ES module with no kernel and no network.
// Bundled by esbuild (as a classic script, IIFE) to src/qkviz/_bundle/page.js; qkviz.export inlines
// it into every page.
//
// The page holds three inert <script> blocks written by qkviz/export.py:
//   #qkviz-esm   JSON string: the bundled widget module (src/qkviz/_bundle/widget.js)
//   #qkviz-meta  JSON: {state: {state, embedded}, buffers: [{offset, length, shuffle, encoding?}],
//                compressed, title}
//   #qkviz-data  one binary blob (gzip when `compressed`) holding every buffer, as raw bytes: the
//                page is windows-1252, one character per byte; NUL, CR, "<" and "=" are written
//                as "=" plus 0, 1, 2 or 3 (export.embed_bytes)
// Buffers come back as DataViews at the places where Python had memoryviews (`{"$qkbuf": i}`),
// exactly what ipywidgets hands to an anywidget in a notebook, so the same module runs unchanged.
// `embedded` (the snapshot minus the traits) answers the widget's requests through `staticTransport`
// (transport.js, answer.js), set as `model.fetchDetail`.
//
// Loaded into a page without those blocks (a test harness), it only publishes its parts as
// `globalThis.qkvizPage`.
import { TRAITS } from "../model.js";
import { createModel, invoke } from "./model.js";
import { fromKeyDelta } from "./topk.js";
import { staticTransport } from "./transport.js";

const $ = (id) => document.getElementById(id);

// windows-1252 as browsers decode it: bytes 0x80-0x9F are these code points, the rest their own.
const HIGH = [0x20AC, 0x81, 0x201A, 0x192, 0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160, 0x2039,
  0x152, 0x8D, 0x17D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x2DC, 0x2122,
  0x161, 0x203A, 0x153, 0x9D, 0x17E, 0x178];
const BYTE_OF = new Map(HIGH.map((cp, i) => [cp, 0x80 + i]));
const UNESCAPE = [0x00, 0x0D, 0x3C, 0x3D]; // "=0" .. "=3"

function fromPage(text) {
  const out = new Uint8Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === 0x3D) { out[n++] = UNESCAPE[text.charCodeAt(++i) - 0x30]; continue; }
    if (c >= 0x80 && c < 0xA0 || c > 0xFF) {
      const b = BYTE_OF.get(c);
      if (b === undefined) throw new Error(`the embedded data is damaged (character U+${c.toString(16)}); was the file re-saved in another encoding?`);
      c = b;
    }
    out[n++] = c;
  }
  return out.subarray(0, n);
}

// Bytes from the page's own file, when the browser did not decode it as windows-1252: a web
// server's `Content-Type: ...; charset=utf-8` header wins over the page's <meta charset>, and
// UTF-8 turns every byte >= 0x80 into U+FFFD. Over http(s) the page can read its raw bytes back.
async function rawDataBlock() {
  const bytes = new Uint8Array(await (await fetch(location.href, { cache: "force-cache" })).arrayBuffer());
  const find = (needle, from) => {
    const pat = Array.from(needle, (c) => c.charCodeAt(0));
    outer: for (let i = from; i <= bytes.length - pat.length; i++) {
      for (let j = 0; j < pat.length; j++) if (bytes[i + j] !== pat[j]) continue outer;
      return i;
    }
    return -1;
  };
  // written escaped: this runtime itself sits inside a <script> block of the page
  const open = '\x3Cscript type="text/plain" id="qkviz-data">';
  const start = find(open, 0);
  const end = start < 0 ? -1 : find("\x3C/script>", start + open.length);
  if (end < 0) throw new Error("could not find the data block in this page's own file");
  const src = bytes.subarray(start + open.length, end);
  const out = new Uint8Array(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) out[n++] = src[i] === 0x3D ? UNESCAPE[src[++i] - 0x30] : src[i];
  return out.subarray(0, n);
}

async function dataBlock(meta) {
  const decodedAs = (document.characterSet || "").toLowerCase();
  let blob = null;
  if (decodedAs !== "windows-1252" && /^https?:$/.test(location.protocol)) {
    try { blob = await rawDataBlock(); } catch (err) { console.warn("[qkviz]", err); }
  }
  blob ??= fromPage($("qkviz-data").textContent);
  if (meta.blob_length !== undefined && blob.length !== meta.blob_length) {
    throw new Error(`the embedded data is damaged (${blob.length} bytes instead of ${meta.blob_length}): ` +
      `the page was read as ${decodedAs || "an unknown encoding"}. Was the file re-saved as text in another ` +
      "encoding? Write it again with viz.save_html() (or qkviz.export.page_bytes() for to_html()'s text).");
  }
  return blob;
}

// The side panel shows what the page embeds; where it is less than the notebook would show
// (top-k attention, a cut aggregate), the answer carries a `note` that goes right under the
// panel's title: the latest note of each request kind, one line each.
const notes = new Map();
function showNote(root, kind, note) {
  notes.set(kind, note);
  note = [...notes.values()].filter(Boolean).join("\n");
  const panel = root.querySelector(".qkv-panel");
  if (!panel) return;
  let box = panel.querySelector(".qk-static-note");
  if (!box) {
    box = document.createElement("div");
    box.className = "qk-static-note";
    const title = panel.querySelector(".qkv-title");
    if (title) title.after(box); else panel.prepend(box);
  }
  box.textContent = note || "";
  box.hidden = !note;
}

async function gunzip(bytes) {
  if (typeof DecompressionStream !== "function") {
    throw new Error("this browser cannot decompress the embedded data (no DecompressionStream); " +
      "use a current Chrome, Edge, Firefox or Safari, or export with compress=False");
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// Undo the byte shuffle (all first bytes of each item, then all second bytes, ...) that makes
// float arrays compress better.
function unshuffle(src, size) {
  const n = src.length / size;
  const out = new Uint8Array(src.length);
  for (let b = 0; b < size; b++) {
    const plane = src.subarray(b * n, (b + 1) * n);
    for (let i = 0; i < n; i++) out[i * size + b] = plane[i];
  }
  return out;
}

// Expand a buffer that export.py narrowed (compact=True) back to its declared dtype.
function expand(bytes, enc) {
  const src = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = enc.as === "uint8" ? 1 : 2;
  const n = bytes.byteLength / width;
  const read = width === 1 ? (i) => src.getUint8(i) : (i) => src.getUint16(2 * i, true);
  if (enc.to === "uint8") { // fewer levels over 0..255
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.round((read(i) * 255) / enc.levels);
    return out;
  }
  if (enc.to === "float32") {
    const out = new Float32Array(n);
    const step = (enc.max - enc.min) / enc.levels;
    // a value kept exact (a parked point) has the code above the quantised ones
    const top = enc.exact === undefined ? -1 : enc.levels + 1;
    for (let i = 0; i < n; i++) { const q = read(i); out[i] = q === top ? enc.exact : enc.min + q * step; }
    return new Uint8Array(out.buffer);
  }
  const out = enc.to === "int32" ? new Int32Array(n) : new Uint32Array(n);
  const cap = width === 1 ? 255 : 65535;
  for (let i = 0; i < n; i++) {
    const q = read(i);
    out[i] = enc.none && q === cap ? 0xffffffff : q + enc.add;
  }
  return new Uint8Array(out.buffer);
}

function revive(value, views) {
  if (Array.isArray(value)) return value.map((v) => revive(v, views));
  if (value && typeof value === "object") {
    if (Object.keys(value).length === 1 && typeof value.$qkbuf === "number") return views[value.$qkbuf];
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v, views);
    return out;
  }
  return value;
}

function fail(root, err) {
  console.error("[qkviz]", err);
  root.dataset.qkError = String(err?.message ?? err);
  const box = document.createElement("pre");
  box.className = "qkviz-static-error";
  box.textContent = `qkviz: this page could not start.\n${err?.stack ?? err}`;
  root.append(box);
}

async function main() {
  const root = $("qkviz-root");
  try {
    const meta = JSON.parse($("qkviz-meta").textContent);
    let blob = await dataBlock(meta);
    if (meta.compressed) blob = await gunzip(blob);
    const views = meta.buffers.map(({ offset, length, shuffle, encoding }) => {
      let bytes = blob.subarray(offset, offset + length);
      if (shuffle > 1) bytes = unshuffle(bytes, shuffle);
      if (encoding) bytes = expand(bytes, encoding);
      return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    });
    const { state, embedded } = revive(meta.state, views);
    // anywidget commands (experimental.invoke) go to a hook the bundle may register on
    // globalThis.qkvizStatic; the widget's own requests go to model.fetchDetail below.
    const model = createModel(state, { answer: commandHook });
    const experimental = { invoke: (name, msg, options) => invoke(model, name, msg, options) };
    globalThis.qkvizStatic = { ...(globalThis.qkvizStatic ?? {}), model, static: true };
    const code = JSON.parse($("qkviz-esm").textContent);
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    const mod = await import(url);
    const widget = typeof mod.default === "function" ? await mod.default() : mod.default;
    if (embedded && state._meta) {
      const transport = staticTransport(embedded, state);
      model.fetchDetail = async (request) => {
        const reply = await transport(request);
        if (reply && typeof reply === "object" && "note" in reply) showNote(root, request.kind, reply.note);
        return reply;
      };
    }
    await widget.initialize?.({ model, experimental });
    const el = document.createElement("div");
    el.className = "qkviz-static-view";
    root.append(el);
    await widget.render({ model, el, experimental });
    root.dataset.qkStatic = "ready";
  } catch (err) {
    fail(root, err);
  }
}

async function commandHook(name, msg, buffers) {
  const hook = globalThis.qkvizStatic?.answer;
  if (typeof hook !== "function") throw new Error(`command ${name} needs a Python kernel (static page)`);
  return hook(name, msg, buffers);
}

// for test harnesses and bench/widget.py (not an API)
globalThis.qkvizPage = { createModel, staticTransport, fromKeyDelta, TRAITS };
if ($("qkviz-meta")) main();
