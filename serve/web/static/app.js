// The translation page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every text from the server goes into the page through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "seq2seq-api-key";
const SVG = "http://www.w3.org/2000/svg";
const EOS = "</s>";
const STATUS_WORDS = {
  400: "The server could not read the request",
  403: "The server refused the request",
  413: "The request is too large for this server",
  415: "The server could not read the request",
  422: "The server refused the request",
  429: "Too many requests: wait a moment and try again",
  500: "The server failed on this request",
  503: "The server is not ready yet: try again in a few seconds",
  504: "The server is too busy: the request timed out in its queue",
};

const state = { limits: null, languages: null, frontend: null, explicitPair: false, results: [], picked: -1 };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// -- talking to the API ------------------------------------------------------------------
function describe(status, body, sentKey) {
  if (status === 401) {
    return sentKey
      ? "The server refused this API key. Check the key and try again."
      : "This server needs an API key: enter it in the API key field.";
  }
  let detail = body && (body.message || body.detail || body.error);
  if (Array.isArray(detail)) {
    detail = detail.map((p) => {
      const where = (p.loc || []).filter((part) => part !== "body").join(".");
      return (where ? where + ": " : "") + p.msg;
    }).join("; ");
  }
  const words = STATUS_WORDS[status] || `The server answered with status ${status}`;
  return detail ? `${words} (${status}): ${detail}` : `${words} (${status}).`;
}

async function api(path, payload) {
  // payload: undefined (GET), a FormData (multipart, as LibreTranslate's file upload), or JSON
  const key = $("api-key").value.trim();
  const headers = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
  const form = payload instanceof FormData;
  if (payload !== undefined && !form) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method: payload === undefined ? "GET" : "POST",
      headers,
      body: payload === undefined || form ? payload : JSON.stringify(payload),
    });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the server (${e.message}). Is it still running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null; // an error page that is not JSON: the status alone is described
  }
  if (!response.ok) throw new ApiError(response.status, describe(response.status, body, Boolean(key)));
  return body;
}

// -- messages ------------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

// -- settings from the server: languages and limits -----------------------------------------
function findLimits(info, depth = 0) {
  // /info's layout differs between one-model and several-model servers: take the first
  // object that holds max_chars, searching the usual places first
  if (!info || typeof info !== "object" || depth > 4) return null;
  if (typeof info.max_chars === "number") return info;
  for (const key of ["limits", "model", "model_metadata", ...Object.keys(info)]) {
    const found = findLimits(info[key], depth + 1);
    if (found) return found;
  }
  return null;
}

function languageName(code) {
  const listed = (state.languages || []).find((l) => l.code === code);
  if (listed && listed.name) return listed.name;
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
  } catch (e) {
    return code;
  }
}

function fillSelect(select, codes) {
  const previous = select.value;
  select.replaceChildren(...codes.map((code) => new Option(`${languageName(code)} (${code})`, code)));
  if (codes.includes(previous)) select.value = previous;
}

function fillTargets() {
  const source = (state.languages || []).find((l) => l.code === $("source").value);
  fillSelect($("target"), source ? source.targets : []);
}

function fillFileSelects() {
  // a file's source may be "auto": then any target that some source reaches
  const languages = state.languages || [];
  const previous = $("file-source").value;
  fillSelect($("file-source"), languages.map((l) => l.code));
  $("file-source").prepend(new Option("Detect automatically", "auto"));
  $("file-source").value = previous || (languages.length ? languages[0].code : "auto");
  fillFileTargets();
}

function fillFileTargets() {
  const languages = state.languages || [];
  const source = languages.find((l) => l.code === $("file-source").value);
  const targets = source ? source.targets : [...new Set(languages.flatMap((l) => l.targets))].sort();
  fillSelect($("file-target"), targets);
}

function describeModel(info) {
  // one model: {model: {src_lang, tgt_lang, parameters, ...}}; several: {model: {models: [...], ...}}
  const meta = (info && (info.model || info.model_metadata)) || {};
  const models = Array.isArray(meta.models) ? meta.models : [meta];
  const parts = models.filter((m) => m.src_lang && m.tgt_lang).map((m) => {
    const size = typeof m.parameters === "number" ? `, ${(m.parameters / 1e6).toFixed(1)} M parameters` : "";
    return `${languageName(m.src_lang)} → ${languageName(m.tgt_lang)}${size}`;
  });
  if (state.limits) parts.push(`up to ${state.limits.max_chars} characters a sentence`);
  return ["GRU encoder-decoder with attention", ...parts].join(" · ");
}

async function loadSettings() {
  try {
    const info = await api("/info");
    state.limits = findLimits(info);
    let languages = null;
    try {
      languages = await api("/languages");
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    const model = (info && (info.model || info.model_metadata)) || {};
    state.explicitPair = Array.isArray(languages) && languages.length > 0;
    state.languages = state.explicitPair // a server without /languages has one model
      ? languages
      : [{ code: model.src_lang || "?", name: "", targets: [model.tgt_lang || "?"] }];
    fillSelect($("source"), state.languages.map((l) => l.code));
    fillTargets();
    fillFileSelects();
    if (state.limits) {
      $("beam").max = state.limits.max_beam;
      $("text").maxLength = state.limits.max_chars * state.limits.max_texts + state.limits.max_texts;
    }
    $("model-line").textContent = describeModel(info);
    showError("");
    updateCounter();
    return true;
  } catch (e) {
    $("model-line").textContent = "Model details unavailable.";
    showError(e.message);
    if (e.status === 401) $("api-key").focus();
    return false;
  }
}

async function loadFrontend() {
  // LibreTranslate's /frontend/settings (open, no key): whether files and suggestions are on
  try {
    state.frontend = await api("/frontend/settings");
  } catch (e) {
    state.frontend = null; // an older server: no file tab, no suggestions
    return;
  }
  const formats = state.frontend.filesTranslation ? state.frontend.supportedFilesFormat : [];
  $("tab-file").hidden = formats.length === 0;
  $("file").accept = formats.join(",");
  $("file-formats").textContent = formats.join(", ");
}

function selectTab(name) {
  for (const [tab, pane] of [["tab-text", "text-pane"], ["tab-file", "file-pane"]]) {
    const chosen = tab === `tab-${name}`;
    $(tab).setAttribute("aria-selected", String(chosen));
    $(tab).tabIndex = chosen ? 0 : -1;
    $(pane).hidden = !chosen;
  }
  showError("");
  setStatus("");
}

// -- input ---------------------------------------------------------------------------------
function sentences() {
  return $("text").value.split("\n").map((line) => line.trim()).filter((line) => line.length > 0);
}

function inputProblem(lines) {
  if (lines.length === 0) return "Type a sentence to translate.";
  const limits = state.limits;
  if (!limits) return null;
  const long = lines.findIndex((line) => line.length > limits.max_chars);
  if (long >= 0) {
    return `Sentence ${long + 1} has ${lines[long].length} characters; this server accepts at most ` +
      `${limits.max_chars} per sentence. Split it into shorter lines.`;
  }
  if (lines.length > limits.max_texts) {
    return `${lines.length} sentences at once; this server accepts at most ${limits.max_texts} per request.`;
  }
  return null;
}

function updateCounter() {
  const lines = sentences();
  const longest = Math.max(0, ...lines.map((line) => line.length));
  const max = state.limits ? ` of ${state.limits.max_chars}` : "";
  const counter = $("counter");
  counter.textContent = lines.length
    ? `${lines.length} sentence${lines.length > 1 ? "s" : ""}, longest ${longest}${max} characters.`
    : "";
  counter.classList.toggle("over", Boolean(state.limits) && longest > state.limits.max_chars);
}

// -- translating -----------------------------------------------------------------------------
async function translate() {
  // without the languages and limits (e.g. /info refused a missing key) load them first
  if (state.languages === null && !(await loadSettings())) return;
  const lines = sentences();
  const problem = inputProblem(lines);
  if (problem) {
    showError(problem);
    return;
  }
  const beam = Number($("beam").value);
  const payload = {
    texts: lines,
    beam_size: beam,
    n_best: Math.max(1, Math.min(Number($("nbest").value) || 1, beam || 1)),
    return_attention: true,
  };
  if (state.explicitPair) Object.assign(payload, { source: $("source").value, target: $("target").value });
  showError("");
  setStatus(`Translating ${lines.length} sentence${lines.length > 1 ? "s" : ""}…`);
  $("translate").disabled = true;
  const started = performance.now();
  try {
    const body = await api("/translate", payload);
    showResults(lines, body.translations, body.pivot);
    setStatus(`Translated ${lines.length} sentence${lines.length > 1 ? "s" : ""} in ` +
      `${((performance.now() - started) / 1000).toFixed(2)} s.`);
  } catch (e) {
    setStatus("");
    showError(e.message);
    if (e.status === 401) $("api-key").focus();
  } finally {
    $("translate").disabled = false;
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showResults(lines, translations, pivot) {
  const pair = { sourceLang: $("source").value, targetLang: $("target").value };
  state.results = translations.map((t, i) => ({ ...t, source: lines[i], pivot, ...pair }));
  const list = $("sentences");
  list.replaceChildren();
  state.results.forEach((t, i) => {
    const item = element("li", "sentence");
    item.append(element("p", "source", t.source));
    const text = element("p", "translation", t.text);
    text.lang = $("target").value;
    item.append(text);
    if (t.pivot_text) item.append(element("p", "pivot", `via ${languageName(pivot)}: ${t.pivot_text}`));
    const meta = element("div", "meta");
    const score = element("span", "score", `log-probability ${t.score.toFixed(2)}`);
    score.dataset.score = String(t.score);
    const show = element("button", "attention-button", "Show attention");
    show.type = "button";
    show.setAttribute("aria-pressed", "false");
    show.setAttribute("aria-controls", "attention");
    show.addEventListener("click", () => pick(i));
    meta.append(score, show);
    if (state.frontend && state.frontend.suggestions) {
      const suggest = element("button", "suggest-button", "Suggest a better translation");
      suggest.type = "button";
      suggest.addEventListener("click", () => openSuggestion(item, text, t));
      meta.append(suggest);
    }
    item.append(meta);
    if (t.n_best.length > 1) {
      const more = element("details", "alternatives");
      more.append(element("summary", "", `${t.n_best.length} best translations`));
      const ranked = element("ol", "nbest");
      for (const h of t.n_best) {
        const row = element("li");
        const value = element("span", "alt-score", h.score.toFixed(2));
        value.dataset.score = String(h.score);
        row.append(element("span", "alt-text", h.text), value);
        ranked.append(row);
      }
      more.append(ranked);
      item.append(more);
    }
    list.append(item);
  });
  $("results").hidden = false;
  pick(state.results.findIndex((t) => t.attention));
}

// -- suggestions: a better translation, sent to LibreTranslate's /suggest ----------------------
function openSuggestion(item, shown, t) {
  if (item.querySelector(".suggest-box")) return;
  const box = element("div", "suggest-box");
  const label = element("label", "block", "Your translation");
  const field = element("textarea", "suggest-text");
  field.value = t.text;
  field.rows = 2;
  label.append(field);
  const buttons = element("div", "buttons");
  const send = element("button", "suggest-send primary", "Send suggestion");
  const cancel = element("button", "suggest-cancel", "Cancel");
  send.type = cancel.type = "button";
  cancel.addEventListener("click", () => box.remove());
  send.addEventListener("click", async () => {
    const better = field.value.trim();
    if (!better) {
      showError("Type the better translation first.");
      return;
    }
    send.disabled = true;
    try {
      await api("/suggest", { q: t.source, s: better, source: t.sourceLang, target: t.targetLang });
      box.remove();
      showError("");
      setStatus("Thank you: your suggestion was sent.");
    } catch (e) {
      showError(e.message);
    } finally {
      send.disabled = false;
    }
  });
  buttons.append(send, cancel);
  box.append(label, buttons);
  shown.after(box);
  field.focus();
}

// -- files: LibreTranslate's /translate_file, then its download link ---------------------------
async function translateFile() {
  if (state.languages === null && !(await loadSettings())) return;
  const file = $("file").files[0];
  if (!file) {
    showError("Choose a document to translate.");
    return;
  }
  const form = new FormData(); // LibreTranslate's fields: file, source, target, api_key
  form.append("file", file);
  form.append("source", $("file-source").value);
  form.append("target", $("file-target").value);
  const key = $("api-key").value.trim();
  if (key) form.append("api_key", key);
  showError("");
  $("file-result").hidden = true;
  setStatus(`Translating ${file.name}…`);
  $("translate-file").disabled = true;
  try {
    const body = await api("/translate_file", form);
    const url = body.translatedFileUrl;
    const name = decodeURIComponent(url.split("/").pop()).replace(/^[0-9a-f-]{36}\./, "");
    $("download").href = url;
    $("download").textContent = name;
    $("file-result").hidden = false;
    setStatus(`Translated ${file.name}: download it within 30 minutes.`);
  } catch (e) {
    setStatus("");
    showError(e.message);
  } finally {
    $("translate-file").disabled = false;
  }
}

async function copyAll() {
  const text = state.results.map((t) => t.text).join("\n");
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // no clipboard permission (e.g. plain http on another host): select the text instead
    const range = document.createRange();
    range.selectNodeContents($("sentences"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    setStatus("Copying is not allowed here: the translations are selected, press Ctrl+C.");
    return;
  }
  setStatus(`Copied ${state.results.length} translation${state.results.length > 1 ? "s" : ""}.`);
}

// -- attention heatmap: an SVG table of rectangles, labelled with the subwords ------------------
function pick(index) {
  state.picked = index;
  document.querySelectorAll(".attention-button").forEach((button, i) => {
    button.setAttribute("aria-pressed", String(i === index));
    button.textContent = i === index ? "Attention shown" : "Show attention";
  });
  const t = state.results[index];
  $("attention").hidden = !t || !t.attention;
  if (!t || !t.attention) return;
  const note = $("attention-pivot"); // through a pivot, the last model's input is the pivot text
  note.hidden = !t.pivot_text;
  note.textContent = t.pivot_text ? `This sentence went through ${languageName(t.pivot)}: the columns are ` +
    `the subwords of "${t.pivot_text}", which the second model translated.` : "";
  drawHeatmap($("heatmap"), t);
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function legend(x, y) {
  // the colour scale: the same fill and opacities as the cells, 0 to 1
  const defs = svgNode("defs", {});
  const gradient = svgNode("linearGradient", { id: "hm-scale" });
  gradient.append(svgNode("stop", { offset: "0", class: "hm-stop", "stop-opacity": "0.04" }));
  gradient.append(svgNode("stop", { offset: "1", class: "hm-stop", "stop-opacity": "1" }));
  defs.append(gradient);
  return [
    defs,
    svgNode("text", { x: x - 8, y: y + 6, class: "hm-legend", "text-anchor": "end" }, "0"),
    svgNode("rect", { x, y, width: 120, height: 12, fill: "url(#hm-scale)" }),
    svgNode("text", { x: x + 128, y: y + 6, class: "hm-legend" }, "1  attention weight"),
  ];
}

function drawHeatmap(container, t) {
  const rows = [...t.tokens, EOS]; // attention: (len(tokens) + 1) x (len(source_tokens) + 1)
  const cols = [...t.source_tokens, EOS];
  const cell = 26;
  const charWidth = 7.5;
  const left = 12 + charWidth * Math.max(...rows.map((s) => s.length));
  const top = 12 + 0.75 * charWidth * Math.max(...cols.map((s) => s.length)); // labels at -45°
  const width = left + cell * cols.length + top; // room for the last slanted label
  const legendY = top + cell * rows.length + 14;
  const height = legendY + 20;
  const svg = svgNode("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, tabindex: "0", role: "img", class: "heatmap",
    "aria-label": `Attention of ${rows.length} output subwords over ${cols.length} input subwords` +
      " (the arrow keys move between cells)",
  });
  cols.forEach((token, j) => {
    const x = left + cell * j + cell / 2;
    svg.append(svgNode("text", { x, y: top - 6, class: "hm-col-label", transform: `rotate(-45 ${x} ${top - 6})` }, token));
  });
  rows.forEach((token, i) => {
    svg.append(svgNode("text", { x: left - 8, y: top + cell * i + cell / 2, class: "hm-row-label" }, token));
  });
  const readout = $("cell");
  const cursor = svgNode("rect", { width: cell, height: cell, class: "hm-cursor", visibility: "hidden" });
  const show = (i, j) => {
    const weight = t.attention[i][j];
    cursor.setAttribute("x", left + cell * j);
    cursor.setAttribute("y", top + cell * i);
    cursor.setAttribute("visibility", "visible");
    readout.textContent = `${rows[i]} ← ${cols[j]}: ${weight.toFixed(3)}`;
    state.cursor = [i, j];
  };
  t.attention.forEach((weights, i) => {
    weights.forEach((weight, j) => {
      const rect = svgNode("rect", {
        x: left + cell * j, y: top + cell * i, width: cell - 1, height: cell - 1, class: "hm-cell",
        "fill-opacity": (0.04 + 0.96 * weight).toFixed(3), "data-row": i, "data-col": j,
        "data-weight": weight,
      });
      rect.append(svgNode("title", {}, `${rows[i]} ← ${cols[j]}: ${weight.toFixed(3)}`));
      rect.addEventListener("mouseenter", () => show(i, j));
      svg.append(rect);
    });
  });
  svg.append(cursor, ...legend(left, legendY));
  state.cursor = null;
  svg.addEventListener("focus", () => state.cursor || show(0, 0));
  svg.addEventListener("keydown", (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const [i, j] = state.cursor || [0, 0];
    show(Math.min(rows.length - 1, Math.max(0, i + move[0])), Math.min(cols.length - 1, Math.max(0, j + move[1])));
  });
  container.replaceChildren(svg);
  readout.textContent = "";
}

// -- wiring --------------------------------------------------------------------------------
function init() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => {
    const value = key.value.trim();
    if (value) sessionStorage.setItem(KEY_STORE, value);
    else sessionStorage.removeItem(KEY_STORE);
    if (state.languages === null) loadSettings();
  });
  $("source").addEventListener("change", fillTargets);
  $("file-source").addEventListener("change", fillFileTargets);
  $("tab-text").addEventListener("click", () => selectTab("text"));
  $("tab-file").addEventListener("click", () => selectTab("file"));
  $("translate-file").addEventListener("click", translateFile);
  $("text").addEventListener("input", updateCounter);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      translate();
    }
  });
  $("translate").addEventListener("click", translate);
  $("copy").addEventListener("click", copyAll);
  loadFrontend();
  loadSettings();
}

init();
