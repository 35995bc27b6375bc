// composeseg app: click-to-segment over the HTTP API of composeseg/pipelines/app/server.py.
// No build step, no dependency: the server holds the state (prompts, undo history, objects);
// this page sends prompts, draws what comes back and keeps nothing it could lose.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
                "#bfef45", "#469990", "#9a6324", "#800000", "#808000", "#000075", "#fabed4"];
const EDIT_COLOR = "#ffd400";  // the object being drawn: yellow stands out on most pictures

const state = {
  images: [],       // [{id, name, saved}]
  image: null,      // the open image: {id, name, width, height}
  picture: null,    // its HTMLImageElement
  editor: null,     // the object being drawn: {points, box, candidates, selected, ...}
  objects: [],      // [{id, class_name, area, accepted, source, mask}]
  hover: null,      // id of the object under the mouse in the list
  drag: null,       // a box being dragged: {x0, y0, x1, y1, clientX, clientY}
  ready: false,     // the embedding exists: clicks may go
};
const tints = new Map();  // "color|png" -> canvas of the mask in that color
let queue = Promise.resolve();  // prompts go one after another, in order
let frame = 0;  // renders wait for mask images; only the latest one draws

// ---- HTTP ------------------------------------------------------------------------------

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

function enqueue(task) {
  queue = queue.then(task).catch((error) => status(error.message, "error"));
  return queue;
}

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
}

const imageUrl = (suffix) => `/api/images/${state.image.id}/${suffix}`;

// ---- images ----------------------------------------------------------------------------

async function loadList(selectId) {
  const [config, list] = await Promise.all([api("GET", "/api/config"), api("GET", "/api/images")]);
  state.images = list.images;
  $("model").textContent = config.model;
  $("detector").disabled = !config.detector;
  $("text").disabled = !config.text;
  setLabels(config.labels);
  $("images").replaceChildren(...state.images.map((image) => {
    const option = new Option(image.name + (image.saved ? ` (${image.saved})` : ""), image.id);
    return option;
  }));
  const wanted = selectId || location.hash.slice(1);
  const first = state.images.find((image) => image.id === wanted) || state.images[0];
  if (first) await openImage(first.id);
  else status("no images: upload one");
}

async function openImage(id) {
  state.ready = false;
  canvas.classList.add("waiting");
  $("images").value = id;
  location.hash = id;
  status("encoding…", "busy");
  const picture = new Image();
  picture.src = `/api/images/${id}/picture`;
  const [info] = await Promise.all([api("POST", `/api/images/${id}/open`), picture.decode()]);
  tints.clear();
  state.image = info;
  state.picture = picture;
  canvas.width = info.width;
  canvas.height = info.height;
  setLabels(info.labels);
  show(info);
  state.ready = true;
  canvas.classList.remove("waiting");
  const how = info.cached ? "cached" : `encoded in ${Math.round(info.encode_ms)} ms`;
  status(`${info.name}: ${info.width}×${info.height}, ${how}`);
}

function step(delta) {
  const index = state.images.findIndex((image) => image.id === state.image?.id);
  const next = state.images[index + delta];
  if (next) enqueue(() => openImage(next.id));
}

async function upload(file) {
  status("uploading…", "busy");
  const response = await fetch("/api/images", {
    method: "POST",
    headers: { "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  await loadList(data.id);
}

// ---- server answers --------------------------------------------------------------------

function show(data) {  // any answer that carries the editor and/or the objects
  if (data.editor) state.editor = data.editor;
  if (data.objects) state.objects = data.objects;
  if (data.labels) setLabels(data.labels);
  if (data.dirty !== undefined) $("save").classList.toggle("dirty", data.dirty);
  renderPanel();
  render();
}

function setLabels(labels) {
  $("labels").replaceChildren(...labels.map((name) => new Option(name)));
}

async function prompt(body) {
  const start = performance.now();
  const data = await api("POST", imageUrl("prompt"), body);
  show(data);
  const ms = Math.round(performance.now() - start);
  status(`${state.image.name}: mask in ${ms} ms (server ${Math.round(data.server_ms)} ms)`);
}

const edit = (action, body) => enqueue(async () => show(await api("POST", imageUrl(`editor/${action}`), body)));

function accept() {
  const name = $("class").value.trim();
  if (!name) { $("class").focus(); status("type or pick a class name, then accept", "error"); return; }
  enqueue(async () => show(await api("POST", imageUrl("accept"), { class_name: name })));
}

function runPipeline(name, body) {
  enqueue(async () => {
    status(`running ${name}…`, "busy");
    const data = await api("POST", imageUrl(`pipelines/${name}`), body);
    show(data);
    status(`${name}: ${data.added} proposal(s) in ${Math.round(data.server_ms)} ms`);
  });
}

const objectCall = (method, id, suffix = "", body) =>
  enqueue(async () => {
    const data = await api(method, imageUrl(`objects/${id}${suffix}`), body);
    if (data.class_name) $("class").value = data.class_name;
    show(data);
  });

function save() {
  enqueue(async () => {
    const data = await api("POST", imageUrl("save"));
    $("save").classList.toggle("dirty", false);
    status(`saved ${data.saved} object(s) to ${data.files[data.files.length - 2] || "OUT"}`);
    const entry = state.images.find((image) => image.id === state.image.id);
    if (entry) {
      entry.saved = data.saved;
      $("images").selectedOptions[0].textContent = `${entry.name} (${data.saved})`;
    }
  });
}

// ---- drawing ---------------------------------------------------------------------------

function colorOf(object) { return COLORS[object.id % COLORS.length]; }

async function tint(png, color) {  // white-on-transparent PNG -> that mask in one color
  const key = `${color}|${png}`;
  if (!tints.has(key)) {
    const image = new Image();
    image.src = `data:image/png;base64,${png}`;
    await image.decode();
    const layer = document.createElement("canvas");
    layer.width = image.width;
    layer.height = image.height;
    const g = layer.getContext("2d");
    g.drawImage(image, 0, 0);
    g.globalCompositeOperation = "source-in";  // keep the mask's pixels, take the color
    g.fillStyle = color;
    g.fillRect(0, 0, layer.width, layer.height);
    tints.set(key, layer);
  }
  return tints.get(key);
}

async function render() {
  if (!state.picture) return;
  const ticket = ++frame;
  const shown = state.objects.filter((o) => o.id !== state.editor?.origin);
  const layers = await Promise.all(shown.map((o) => tint(o.mask, colorOf(o))));
  const candidate = state.editor?.candidates[state.editor.selected];
  const current = candidate ? await tint(candidate.mask, EDIT_COLOR) : null;
  if (ticket !== frame) return;  // a newer state is being drawn
  ctx.globalAlpha = 1;
  ctx.drawImage(state.picture, 0, 0);
  shown.forEach((o, i) => {
    ctx.globalAlpha = o.id === state.hover ? 0.85 : o.accepted ? 0.45 : 0.25;
    ctx.drawImage(layers[i], 0, 0);
  });
  ctx.globalAlpha = 0.55;
  if (current) ctx.drawImage(current, 0, 0);
  ctx.globalAlpha = 1;
  const unit = Math.max(1, canvas.width / canvas.clientWidth);  // one screen pixel
  ctx.lineWidth = 2 * unit;
  const box = state.drag || (state.editor?.box && { x0: state.editor.box[0], y0: state.editor.box[1],
    x1: state.editor.box[2], y1: state.editor.box[3] });
  if (box) {
    ctx.strokeStyle = EDIT_COLOR;
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  }
  for (const [x, y, label] of state.editor?.points || []) {
    ctx.beginPath();
    ctx.arc(x, y, 5 * unit, 0, 2 * Math.PI);
    ctx.fillStyle = label ? "#22c55e" : "#ef4444";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
}

function renderPanel() {
  const editor = state.editor;
  $("undo").disabled = !editor?.can_undo;
  $("redo").disabled = !editor?.can_redo;
  $("accept").disabled = !editor?.candidates.length;
  $("candidates").replaceChildren(...(editor?.candidates || []).map((candidate, k) => {
    const button = document.createElement("button");
    button.className = k === editor.selected ? "selected" : "";
    button.title = `candidate ${k + 1} (key ${k + 1})`;
    const thumb = document.createElement("canvas");
    thumb.width = 92;
    thumb.height = Math.max(1, Math.round((92 * canvas.height) / canvas.width));
    const g = thumb.getContext("2d");
    g.drawImage(state.picture, 0, 0, thumb.width, thumb.height);
    // the server upsamples only the selected candidate; the others come as low-res previews
    tint(candidate.preview || candidate.mask, EDIT_COLOR).then((layer) => {
      g.globalAlpha = 0.7;
      g.drawImage(layer, 0, 0, thumb.width, thumb.height);
    });
    const area = `${candidate.exact_area ? "" : "≈"}${candidate.area} px`;
    button.append(thumb, `IoU ${candidate.score.toFixed(2)} · ${area}`);
    button.onclick = () => edit("select", { candidate: k });
    return button;
  }));
  const accepted = state.objects.filter((o) => o.accepted);
  const proposals = state.objects.filter((o) => !o.accepted);
  $("count").textContent = `(${accepted.length}${proposals.length ? ` + ${proposals.length} proposed` : ""})`;
  $("objects").replaceChildren(...accepted.concat(proposals).map(objectRow));
}

function objectRow(object) {
  const row = document.createElement("li");
  row.className = object.accepted ? "" : "proposal";
  row.dataset.id = object.id;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = colorOf(object);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = object.class_name || `${object.source} proposal`;
  name.title = "double click: rename";
  name.ondblclick = () => {
    const value = window.prompt("class name", object.class_name);
    if (value) objectCall("PATCH", object.id, "", { class_name: value });
  };
  const area = document.createElement("span");
  area.className = "area";
  area.textContent = `${object.area} px`;
  const button = (text, title, onclick) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.title = title;
    b.onclick = onclick;
    return b;
  };
  row.append(swatch, name, area);
  if (!object.accepted) {
    row.append(button("✓", "accept (as the class name typed above, if any)", () =>
      objectCall("PATCH", object.id, "", acceptBody(object))));
  }
  row.append(
    button("✎", "refine by clicking", () => objectCall("POST", object.id, "/refine")),
    button("✕", "delete", () => objectCall("DELETE", object.id)),
  );
  row.onmouseenter = () => { state.hover = object.id; render(); };
  row.onmouseleave = () => { state.hover = null; render(); };
  return row;
}

function acceptBody(object) {
  const typed = $("class").value.trim();
  return typed && !object.class_name ? { class_name: typed, accept: true } : { accept: true };
}

// ---- mouse and keys --------------------------------------------------------------------

function toImage(event) {  // client coordinates -> pixels of the image (CSS scaling undone)
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left - canvas.clientLeft) * canvas.width) / canvas.clientWidth;
  const y = ((event.clientY - rect.top - canvas.clientTop) * canvas.height) / canvas.clientHeight;
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("mousedown", (event) => {
  if (!state.ready) return;
  const [x, y] = toImage(event);
  state.drag = { x0: x, y0: y, x1: x, y1: y, startX: event.clientX, startY: event.clientY,
                 negative: event.button === 2 || event.altKey, moved: false };
});
window.addEventListener("mousemove", (event) => {
  const drag = state.drag;
  if (!drag) return;
  [drag.x1, drag.y1] = toImage(event);
  drag.moved ||= Math.hypot(event.clientX - drag.startX, event.clientY - drag.startY) > 5;
  if (drag.moved) render();
});
window.addEventListener("mouseup", () => {
  const drag = state.drag;
  if (!drag) return;
  state.drag = null;
  if (drag.moved) {
    const box = [Math.min(drag.x0, drag.x1), Math.min(drag.y0, drag.y1),
                 Math.max(drag.x0, drag.x1), Math.max(drag.y0, drag.y1)];
    enqueue(() => prompt({ box }));
  } else {
    enqueue(() => prompt({ point: [drag.x0, drag.y0], label: drag.negative ? 0 : 1 }));
  }
});

window.addEventListener("keydown", (event) => {
  const typing = event.target instanceof HTMLInputElement;
  const mod = event.ctrlKey || event.metaKey;
  if (mod && event.key.toLowerCase() === "s") { event.preventDefault(); save(); }
  else if (mod && event.key.toLowerCase() === "z" && !typing) {
    event.preventDefault();
    edit(event.shiftKey ? "redo" : "undo");
  } else if (mod && event.key === "y" && !typing) { event.preventDefault(); edit("redo"); }
  else if (event.key === "Enter" && (!typing || event.target.id === "class")) accept();
  else if (event.key === "Enter" && event.target.id === "query") $("text").click();
  else if (typing) return;
  else if (event.key === "Escape") edit("clear");
  else if (event.key === "ArrowLeft") step(-1);
  else if (event.key === "ArrowRight") step(1);
  else if (["1", "2", "3"].includes(event.key) && state.editor?.candidates[event.key - 1]) {
    edit("select", { candidate: Number(event.key) - 1 });
  }
});

// ---- buttons ---------------------------------------------------------------------------

$("undo").onclick = () => edit("undo");
$("redo").onclick = () => edit("redo");
$("clear").onclick = () => edit("clear");
$("accept").onclick = accept;
$("save").onclick = save;
$("prev").onclick = () => step(-1);
$("next").onclick = () => step(1);
$("images").onchange = (event) => enqueue(() => openImage(event.target.value));
$("upload").onchange = (event) => {
  const file = event.target.files[0];
  if (file) enqueue(() => upload(file));
  event.target.value = "";
};
$("everything").onclick = () => runPipeline("everything");
$("detector").onclick = () => runPipeline("detector");
$("text").onclick = () => {
  const queries = $("query").value.split(",").map((q) => q.trim()).filter(Boolean);
  if (queries.length) runPipeline("text", { queries });
};
$("accept-all").onclick = () => {
  for (const object of state.objects.filter((o) => !o.accepted)) {
    objectCall("PATCH", object.id, "", acceptBody(object));
  }
};

enqueue(() => loadList());
window.app = { state, idle: () => queue };  // for tests and the console: wait for the queue
