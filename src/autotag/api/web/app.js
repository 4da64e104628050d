// The autotag web page: plain JavaScript over the JSON API (see /docs).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { image: null, page: { tag: "", color: "", style: "", object: "", offset: 0, limit: 24 },
                selecting: false, selected: new Set(), teaching: null };
const BROADER = new Set(["ancestor", "category"]);  // broader words, shown after what is in the picture

// ----- talking to the API -----

function apiKey() { return localStorage.getItem("autotag-api-key") || ""; }

async function api(method, path, body) {
  const headers = {};
  if (apiKey()) headers["X-API-Key"] = apiKey();
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body });
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: res.statusText, detail: "" }; }
  if (!res.ok) {
    if (res.status === 401) $("#key-box").open = true;
    const err = new Error(`${data.error || res.status}: ${data.detail || ""}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

function setStatus(text, isError = false, where = "#status") {
  const el = $(where);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function teachStatus(text, isError = false) {  // shown in both views: teaching happens in either
  setStatus(text, isError);
  setStatus(text, isError, "#teach-status");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const pct = (score) => `${Math.round(score * 100)}%`;

// ----- tagging an upload -----

async function handleFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image (${file.type}).`, true);
    return;
  }
  const store = $("#store-it").checked;
  clearResult();  // the previous image's tags must not sit beside the new picture while it uploads
  $("#preview").src = URL.createObjectURL(file);
  $("#result").hidden = false;
  $("#tags").append(el("li", { class: "waiting" }, "Tagging…"));
  drawBoxes([], null);
  setStatus(store ? "Tagging and storing…" : "Tagging…");
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  const userTags = $("#user-tags").value.trim();
  if (userTags) form.append("user_tags", userTags);
  try {
    const result = await api("POST", store ? "/v1/images" : "/v1/tag", form);
    showResult(result);
    setStatus(store ? (result.created ? `Stored as image ${result.id}.` : `Already in the library as image ${result.id}.`)
                    : "Tagged (not stored).");
    loadSimilar(store ? { id: result.id } : { file });
  } catch (err) {
    clearResult();
    setStatus(`Could not tag ${file.name}: ${err.message}`, true);
  }
}

// Back to "nothing shown": no card, no picture (a card without one shows a broken image), no tags.
function clearResult() {
  state.image = null;
  $("#result").hidden = true;
  $("#similar-box").hidden = true;
  $("#preview").removeAttribute("src");
  $("#image-meta").textContent = "";
  for (const list of ["#tags", "#hashtags", "#flagged", "#similar"]) $(list).replaceChildren();
  $("#hashtag-box").hidden = true;
  $("#flagged-box").hidden = true;
  $("#add-tag-form").hidden = true;
}

function showResult(result) {
  state.image = result.id != null ? result : null;
  $("#result").hidden = false;
  const meta = [];
  if (result.id != null) meta.push(`image ${result.id}`);
  if (result.width) meta.push(`${result.width}×${result.height}`);
  if (result.model) meta.push(result.model);
  $("#image-meta").textContent = meta.join(" · ");

  const verdicts = {};
  for (const f of result.feedback || []) verdicts[f.tag] = f.action;

  const list = $("#tags");
  list.replaceChildren();
  if (!result.tags.length) list.append(el("li", { class: "empty" }, "Not sure: no confident tags for this image."));
  // What is in the picture first, broader categories after; each group best first.
  const ordered = [...result.tags].sort((a, b) => BROADER.has(a.kind) - BROADER.has(b.kind) || b.score - a.score);
  for (const tag of ordered) list.append(tagChip(tag, verdicts[tag.name]));
  showFacets(result);

  const hashtags = result.hashtags || [];
  $("#hashtag-box").hidden = hashtags.length === 0;
  $("#hashtags").replaceChildren(...hashtags.map((h) => el("li", { class: "chip hashtag", title: pct(h.score) },
    el("span", { class: "name" }, h.name.startsWith("#") ? h.name : `#${h.name}`),
    el("span", { class: "bar" }, el("span", { style: `width:${pct(h.score)}` })))));

  const flagged = result.flagged_user_tags || [];
  $("#flagged-box").hidden = flagged.length === 0;
  $("#flagged").replaceChildren(...flagged.map((f) => el("li", { "data-tag": f.tag },
    `${f.tag} `, el("small", {}, f.reason))));

  $("#add-tag-form").hidden = state.image == null;
}

// Objects (with boxes over the preview), colour swatches, photo or art, picture facts: apart from the tags.
function showFacets(result) {
  const counts = result.object_counts || {};
  const objects = Object.entries(counts).map(([name, n]) =>
    name === "person" ? (n === 1 ? "1 person" : n === 2 ? "2 people" : `group of people (${n})`) : (n === 1 ? name : `${n} × ${name}`));
  $("#objects-line").hidden = objects.length === 0;
  $("#objects-list").textContent = objects.join(", ");

  const colors = result.colors || [];
  $("#colors-line").hidden = colors.length === 0;
  $("#colors").replaceChildren(...colors.map((c) => el("li", { class: "swatch", "data-color": c.name, title: `${c.hex} · ${pct(c.share)} of the picture` },
    el("span", { class: "dot", style: `background:${c.hex}` }), c.name)));

  const facts = [];
  if (result.style) facts.push(result.style.kind === "art" ? `art: ${result.style.style}` : "photo");
  const p = result.properties;
  if (p) facts.push(p.shape, p.aspect_ratio, p.resolution, ...(p.tone && p.tone !== "normal" ? [p.tone] : []));
  $("#picture-line").hidden = facts.length === 0;
  $("#picture-facts").textContent = facts.join(" · ");
  if (result.style) $("#picture-facts").dataset.style = result.style.style; else delete $("#picture-facts").dataset.style;

  drawBoxes(result.objects || [], p || { width: result.width, height: result.height });
}

// Boxes are in the upright picture's pixels; an SVG with that viewBox lies exactly over the preview.
// An object the classifier alone named has no box (box null): it is in the objects list, not drawn.
function drawBoxes(objects, size) {
  const svg = $("#boxes");
  svg.replaceChildren();
  const boxed = objects.filter((o) => Array.isArray(o.box));
  svg.hidden = !(boxed.length && size && size.width);
  if (svg.hidden) return;
  svg.setAttribute("viewBox", `0 0 ${size.width} ${size.height}`);
  const ns = "http://www.w3.org/2000/svg";
  const stroke = Math.max(size.width, size.height) / 250;
  for (const o of boxed) {
    const [x0, y0, x1, y1] = o.box;
    const g = document.createElementNS(ns, "g");
    g.setAttribute("class", "box");
    g.setAttribute("data-object", o.name);
    const rect = document.createElementNS(ns, "rect");
    for (const [k, v] of Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0, "stroke-width": stroke })) rect.setAttribute(k, v);
    const label = document.createElementNS(ns, "text");
    for (const [k, v] of Object.entries({ x: x0 + stroke * 2, y: y0 + stroke * 9, "font-size": stroke * 8 })) label.setAttribute(k, v);
    label.textContent = `${o.name} ${pct(o.score)}`;
    g.append(rect, label);
    svg.append(g);
  }
}

function tagChip(tag, verdict) {
  const chip = el("li", { class: `chip ${tag.kind}`, "data-tag": tag.name, "data-kind": tag.kind,
                          title: `${tag.kind}${tag.detail ? " · " + tag.detail : ""}${tag.id ? " · " + tag.id : ""}` },
    el("span", { class: "name" }, tag.name),
    el("span", { class: "bar" }, el("span", { style: `width:${pct(tag.score)}` })),
    el("span", { class: "score" }, pct(tag.score)));
  if (verdict) chip.classList.add(verdict);
  if (state.image) {
    chip.append(
      el("button", { class: "vote accept", type: "button", title: "right: accept this tag", "aria-label": `accept ${tag.name}`,
                     onclick: () => sendFeedback(chip, tag.name, "accept") }, "✓"),
      el("button", { class: "vote reject", type: "button", title: "wrong: reject this tag", "aria-label": `reject ${tag.name}`,
                     onclick: () => sendFeedback(chip, tag.name, "reject") }, "✗"));
  }
  return chip;
}

async function sendFeedback(chip, name, action) {
  if (!state.image) return;
  if (chip && chip.dataset.kind === "learned" && action !== "add") {  // a taught tag learns from the answer
    await judge(name, state.image.id, action === "accept");
    chip.classList.remove("accepted", "rejected");
    chip.classList.add(action === "accept" ? "accepted" : "rejected");
    return;
  }
  try {
    await api("POST", `/v1/images/${state.image.id}/feedback`, { [action]: [name] });
    if (chip) {
      chip.classList.remove("accepted", "rejected");
      chip.classList.add(action === "accept" ? "accepted" : action === "reject" ? "rejected" : "added");
    }
    setStatus(`Saved: ${{ accept: "accepted", reject: "rejected", add: "added" }[action]} “${name}”.`);
  } catch (err) {
    setStatus(`Could not save feedback: ${err.message}`, true);
  }
}

async function loadSimilar(query) {
  const form = new FormData();
  if (query.id != null) form.append("id", query.id); else form.append("file", query.file, query.file.name || "upload");
  form.append("k", "12");
  try {
    const res = await api("POST", "/v1/similar", form);
    const hits = res.results.filter((h) => h.id !== query.id);
    $("#similar-box").hidden = hits.length === 0;
    $("#similar").replaceChildren(...hits.map((h) => thumb(h, `${pct(h.score)} similar`)));
  } catch (err) {
    $("#similar-box").hidden = true;
  }
}

function thumb(image, caption) {
  // the caption follows feedback: an added tag shows, a rejected one no longer does
  const first = (image.accepted_tags || [])[0] || ((image.tags || []).find((t) => !BROADER.has(t.kind)) || {}).name;
  const name = first || `image ${image.id}`;
  const label = caption ? el("div", {}, el("b", {}, caption), ` · ${name}`) : el("div", {}, name);
  const fig = el("figure", { class: "thumb", "data-id": image.id,
                             onclick: () => (state.selecting ? toggleSelected(fig, image.id) : openImage(image.id)) },
    el("img", { src: image.thumbnail_url.replace(/size=\d+/, "size=384"), alt: name, loading: "lazy" }), label);
  if (state.selected.has(image.id)) fig.classList.add("selected");
  return fig;
}

// ----- teaching a tag by example -----

function setSelecting(on) {
  state.selecting = on;
  if (!on) state.selected.clear();
  $("#select-mode").setAttribute("aria-pressed", String(on));
  $("#select-mode").textContent = on ? "Done selecting" : "Select pictures";
  $("#teach-form").hidden = !on;
  for (const fig of document.querySelectorAll("#library figure.thumb")) fig.classList.toggle("selected", state.selected.has(Number(fig.dataset.id)));
  updateSelected();
}

function toggleSelected(fig, id) {
  if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
  fig.classList.toggle("selected", state.selected.has(id));
  updateSelected();
}

function updateSelected() {
  const n = state.selected.size;
  $("#selected-count").textContent = n ? `${n} picture${n === 1 ? "" : "s"} selected` : "Click the pictures that show the tag.";
  $("#teach-button").disabled = n === 0;
}

async function teach(word, examples, rejections) {
  const taught = await api("POST", `/v1/tags/${encodeURIComponent(word)}/examples`, { examples, rejections, suggestions: 8 });
  showTeaching(taught);
  loadLearned();
  return taught;
}

async function judge(word, id, yes) {
  try {
    const taught = await teach(word, yes ? [id] : [], yes ? [] : [id]);
    teachStatus(`Saved: image ${id} ${yes ? "is" : "is not"} “${taught.tag}” (${taught.summary}, ${taught.images.length} pictures carry it).`);
  } catch (err) {
    teachStatus(`Could not teach “${word}”: ${err.message}`, true);
  }
}

function showTeaching(taught) {
  state.teaching = taught;
  $("#teach-box").hidden = false;
  $("#teach-word").textContent = taught.tag;
  for (const span of document.querySelectorAll(".teach-word")) span.textContent = taught.tag;
  const sure = taught.estimated_precision != null ? `, about ${pct(taught.estimated_precision)} right` : "";
  $("#teach-summary").textContent = `${taught.summary} · ${taught.images.length} pictures carry it${sure}`;
  $("#teach-suggestions").replaceChildren(...taught.suggestions.map((h) => {
    const fig = el("figure", { class: "thumb suggestion", "data-id": h.id },
      el("img", { src: h.thumbnail_url.replace(/size=\d+/, "size=384"), alt: `image ${h.id}`, loading: "lazy" }),
      el("div", {}, el("b", {}, pct(h.score)), ` sure · image ${h.id}`),
      el("div", { class: "judge" },
        el("button", { class: "yes", type: "button", onclick: () => judge(taught.tag, h.id, true) }, "✓ yes"),
        el("button", { class: "no", type: "button", onclick: () => judge(taught.tag, h.id, false) }, "✗ no")));
    return fig;
  }));
  if (!taught.suggestions.length) $("#teach-suggestions").replaceChildren(el("p", {}, "Nothing left to ask about."));
}

async function loadLearned() {
  try {
    const { tags } = await api("GET", "/v1/tags");
    const list = $("#learned-list");
    list.replaceChildren(...(tags.length ? [document.createTextNode("Learned:")] : []), ...tags.map((t) =>
      el("a", { href: "#library", "data-tag": t.name, title: `${t.examples} examples, ${t.rejections} rejections`,
                onclick: async (e) => { e.preventDefault(); showTeaching(await api("GET", `/v1/tags/${encodeURIComponent(t.name)}?suggestions=8`)); } },
         `${t.name} (${t.examples})`)));
  } catch (err) { /* the list is a convenience; browsing works without it */ }
}

async function openImage(id) {
  try {
    const image = await api("GET", `/v1/images/${id}`);
    showView("tag");
    $("#preview").src = image.thumbnail_url.replace(/size=\d+/, "size=720");
    showResult(image);
    teachStatus(`Image ${id} from the library.`);
    loadSimilar({ id });
    window.scrollTo(0, 0);
  } catch (err) {
    teachStatus(`Could not open image ${id}: ${err.message}`, true);
  }
}

// ----- browsing the library -----

async function browse() {
  const { tag, color, style, object, offset, limit } = state.page;
  const params = new URLSearchParams({ limit, offset });
  for (const [k, v] of Object.entries({ tag, color, style, object })) if (v) params.set(k, v);
  try {
    const page = await api("GET", `/v1/images?${params}`);
    const grid = $("#library");
    grid.replaceChildren(...page.items.map((im) => thumb(im)));
    const asked = [tag, color, style, object].filter(Boolean);
    if (!page.items.length) grid.append(el("p", {}, asked.length ? `No images match “${asked.join(", ")}”.` : "The library is empty."));
    $("#page-info").textContent = page.items.length ? `${offset + 1}–${offset + page.items.length}` : "";
    $("#prev-page").disabled = offset === 0;
    $("#next-page").disabled = page.next_offset == null;
  } catch (err) {
    $("#library").replaceChildren(el("p", { class: "error" }, err.message));
  }
}

function showView(name) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a[data-view]")) a.classList.toggle("active", a.dataset.view === name);
  if (name === "library") { browse(); loadLearned(); } else if (state.selecting) setSelecting(false);
}

// ----- wiring -----

function init() {
  const zone = $("#drop-zone");
  $("#file-input").addEventListener("change", (e) => handleFile(e.target.files[0]));
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("#file-input").click(); });
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); handleFile(e.dataTransfer.files[0]); });

  $("#add-tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("#add-tag").value.trim();
    if (!name || !state.image) return;
    const chip = tagChip({ name, score: 1, kind: "label", id: "" }, "added");
    $("#tags").append(chip);
    sendFeedback(chip, name, "add");
    $("#add-tag").value = "";
  });

  $("#api-key").value = apiKey();
  // every keystroke, not only on leaving the field: a file dropped right after typing must carry the key
  $("#api-key").addEventListener("input", (e) => localStorage.setItem("autotag-api-key", e.target.value.trim()));

  $("#browse-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.page = { ...state.page, tag: $("#browse-tag").value.trim(), color: $("#browse-color").value,
                   style: $("#browse-style").value, object: $("#browse-object").value.trim(), offset: 0 };
    browse();
  });
  $("#select-mode").addEventListener("click", () => setSelecting(!state.selecting));
  $("#teach-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const word = $("#teach-tag").value.trim();
    if (!word) { teachStatus("Type the word to teach, e.g. sky.", true); $("#teach-tag").focus(); return; }
    if (!state.selected.size) return;
    try {
      const taught = await teach(word, [...state.selected], []);
      teachStatus(`Taught “${taught.tag}” (${taught.summary}, ${taught.images.length} pictures carry it).`);
      setSelecting(false);
    } catch (err) {
      teachStatus(`Could not teach “${word}”: ${err.message}`, true);
    }
  });
  $("#teach-show").addEventListener("click", (e) => {
    e.preventDefault();
    if (!state.teaching) return;
    $("#browse-tag").value = state.teaching.tag;
    state.page = { ...state.page, tag: state.teaching.tag, color: "", style: "", object: "", offset: 0 };
    browse();
  });
  $("#prev-page").addEventListener("click", () => { state.page.offset = Math.max(0, state.page.offset - state.page.limit); browse(); });
  $("#next-page").addEventListener("click", () => { state.page.offset += state.page.limit; browse(); });

  for (const a of document.querySelectorAll("nav a[data-view]")) {
    a.addEventListener("click", (e) => { e.preventDefault(); history.replaceState(null, "", `#${a.dataset.view}`); showView(a.dataset.view); });
  }
  showView(location.hash === "#library" ? "library" : "tag");
}

init();
