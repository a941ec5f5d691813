// The page of `audiocl serve`: plain JavaScript over the JSON API, no build step, no CDN.
"use strict";

const recordings = { a: null, b: null }; // slot -> File
const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem("audiocl-token") || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new Error("the server cannot be reached (" + e.message + ")");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : response.status + " " + response.statusText;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return body;
}

function show(html, kind) {
  const box = $("result-body");
  box.className = kind || "";
  box.innerHTML = html;
}

function showError(e) {
  let hint = "";
  if (e.status === 401) hint = " Enter the server's token under Access.";
  show('<div class="error">' + escapeHtml(e.message) + escapeHtml(hint) + "</div>", "failed");
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function fmt(x) {
  return x === null || x === undefined ? "none" : Number(x).toFixed(4);
}

// ---------------------------------------------------------------- model and speakers

async function loadHealth() {
  try {
    const h = await api("/api/health");
    const cal = h.calibrated
      ? "calibrated (threshold " + fmt(h.threshold) + ")"
      : "not calibrated: no decision without a threshold";
    $("model").innerHTML =
      "model <b>" + escapeHtml(h.model || "?") + "</b> (id " + escapeHtml(h.model_id) + ", " +
      h.embed_dim + "-dim), " + cal + "; " + h.speakers + " enrolled" +
      (h.auth ? "; changes need a token" : "");
  } catch (e) {
    $("model").textContent = "model: " + e.message;
  }
}

async function loadSpeakers() {
  const body = $("speakers").querySelector("tbody");
  const select = $("verify-speaker");
  let data;
  try {
    data = await api("/api/speakers");
  } catch (e) {
    body.innerHTML = '<tr><td colspan="4" class="error">' + escapeHtml(e.message) + "</td></tr>";
    return;
  }
  body.innerHTML = "";
  select.innerHTML = '<option value="">recording B</option>';
  if (!data.speakers.length) {
    body.innerHTML = '<tr><td colspan="4" class="hint">nobody enrolled yet</td></tr>';
  }
  for (const s of data.speakers) {
    const row = document.createElement("tr");
    row.innerHTML =
      "<td>" + escapeHtml(s.name) + "</td><td>" + s.count + "</td><td>" +
      escapeHtml(s.updated) + '</td><td><button type="button" class="rename">Rename</button> ' +
      '<button type="button" class="delete">Delete</button></td>';
    row.querySelector(".rename").onclick = () => renameSpeaker(s.name);
    row.querySelector(".delete").onclick = () => deleteSpeaker(s.name);
    body.appendChild(row);
    const option = document.createElement("option");
    option.value = s.name;
    option.textContent = "enrolled speaker " + s.name;
    select.appendChild(option);
  }
}

async function refresh() {
  await Promise.all([loadHealth(), loadSpeakers()]);
}

async function renameSpeaker(name) {
  const target = prompt("New name for " + name + ":", name);
  if (!target || target === name) return;
  const form = new FormData();
  form.append("new", target);
  try {
    await api("/api/speakers/" + encodeURIComponent(name) + "/rename", { method: "POST", body: form });
    show("Renamed <b>" + escapeHtml(name) + "</b> to <b>" + escapeHtml(target) + "</b>.", "ok");
  } catch (e) {
    showError(e);
  }
  refresh();
}

async function deleteSpeaker(name) {
  if (!confirm("Delete " + name + "?")) return;
  try {
    await api("/api/speakers/" + encodeURIComponent(name), { method: "DELETE" });
    show("Deleted <b>" + escapeHtml(name) + "</b>.", "ok");
  } catch (e) {
    showError(e);
  }
  refresh();
}

// ---------------------------------------------------------------- recordings

function setRecording(slot, file, how) {
  recordings[slot] = file;
  $("status-" + slot).textContent = how + ": " + file.name + " (" + Math.round(file.size / 1024) + " kB)";
  const player = $("play-" + slot);
  player.src = URL.createObjectURL(file);
  player.hidden = false;
}

function need(slot) {
  if (!recordings[slot]) throw new Error("recording " + slot.toUpperCase() + " is missing: record or pick a file first");
  return recordings[slot];
}

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const x = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, x < 0 ? x * 0x8000 : x * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

function downsample(chunks, from, to) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const input = new Float32Array(total);
  let at = 0;
  for (const c of chunks) { input.set(c, at); at += c.length; }
  if (from === to) return input;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(total / ratio));
  for (let i = 0; i < out.length; i++) { // average over each output sample's span (anti-aliasing)
    const lo = Math.floor(i * ratio), hi = Math.min(total, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = lo; j < hi; j++) sum += input[j];
    out[i] = sum / Math.max(1, hi - lo);
  }
  return out;
}

const recorder = { slot: null, stream: null, context: null, node: null, chunks: [] };

async function toggleRecording(slot, button) {
  if (recorder.slot === slot) return stopRecording(button);
  if (recorder.slot) return;
  try {
    recorder.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError(new Error("the microphone is not available (" + e.message + ")"));
    return;
  }
  recorder.context = new AudioContext();
  const source = recorder.context.createMediaStreamSource(recorder.stream);
  recorder.node = recorder.context.createScriptProcessor(4096, 1, 1);
  recorder.chunks = [];
  recorder.node.onaudioprocess = (ev) => recorder.chunks.push(new Float32Array(ev.inputBuffer.getChannelData(0)));
  source.connect(recorder.node);
  recorder.node.connect(recorder.context.destination);
  recorder.slot = slot;
  button.textContent = "Stop";
  button.classList.add("recording");
  $("status-" + slot).textContent = "recording ...";
}

function stopRecording(button) {
  const { slot, context, stream, node, chunks } = recorder;
  node.disconnect();
  stream.getTracks().forEach((t) => t.stop());
  const samples = downsample(chunks, context.sampleRate, 16000);
  context.close();
  Object.assign(recorder, { slot: null, stream: null, context: null, node: null, chunks: [] });
  button.textContent = "Record";
  button.classList.remove("recording");
  const file = new File([encodeWav(samples, 16000)], "recording-" + slot + ".wav", { type: "audio/wav" });
  setRecording(slot, file, "recorded " + (samples.length / 16000).toFixed(1) + " s");
}

// ---------------------------------------------------------------- actions

function decisionHtml(r) {
  const label = { same: "same speaker", different: "different speaker", unknown: "no decision" }[r.decision];
  const note = r.decision === "unknown" ? "<p class=\"hint\">This model is not calibrated: run <code>audiocl eval --calibrate</code> on a trial list.</p>" : "";
  return '<div class="decision ' + r.decision + '">' + label + "</div>" +
    "<dl><dt>score</dt><dd>" + fmt(r.score) + "</dd>" +
    (r.llr === null || r.llr === undefined ? "" :
      "<dt>log-likelihood ratio</dt><dd>" + fmt(r.llr) + "</dd><dt>P(same speaker)</dt><dd>" +
      fmt(r.p_same) + " at prior " + r.prior + "</dd>") +
    "<dt>threshold</dt><dd>" + fmt(r.threshold) +
    "</dd><dt>threshold from</dt><dd>" + escapeHtml(r.threshold_source) + "</dd></dl>" + note;
}

async function submit(event, action) {
  event.preventDefault();
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  show("working ...", "busy");
  try {
    await action();
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

$("enroll-form").onsubmit = (ev) => submit(ev, async () => {
  const form = new FormData();
  form.append("name", $("enroll-name").value.trim());
  form.append("audio", need("a"));
  if ($("enroll-replace").checked) form.append("replace", "true");
  const r = await api("/api/enroll", { method: "POST", body: form });
  show("Enrolled <b>" + escapeHtml(r.speaker.name) + "</b> (" + r.speaker.count + " recording(s) in all).", "ok");
  await refresh();
});

$("verify-form").onsubmit = (ev) => submit(ev, async () => {
  const form = new FormData();
  form.append("audio", need("a"));
  const speaker = $("verify-speaker").value;
  if (speaker) form.append("speaker", speaker);
  else form.append("audio2", need("b"));
  if ($("verify-point").value) form.append("operating_point", $("verify-point").value);
  const r = await api("/api/verify", { method: "POST", body: form });
  show("<p>Recording A against " + (speaker ? "<b>" + escapeHtml(speaker) + "</b>" : "recording B") + "</p>" + decisionHtml(r), "ok");
});

$("identify-form").onsubmit = (ev) => submit(ev, async () => {
  const form = new FormData();
  form.append("audio", need("a"));
  form.append("top", $("identify-top").value || "3");
  const r = await api("/api/identify", { method: "POST", body: form });
  const rows = r.candidates.map((c, i) =>
    "<tr><td>" + (i + 1) + "</td><td>" + escapeHtml(c.name) + "</td><td>" + fmt(c.score) + "</td></tr>").join("");
  show('<table class="ranking"><thead><tr><th>#</th><th>speaker</th><th>score</th></tr></thead><tbody>' + rows + "</tbody></table>", "ok");
});

$("token-form").onsubmit = (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("audiocl-token", $("token").value);
  $("token").value = "";
  $("token-state").textContent = token() ? "token set for this session" : "no token";
};

for (const slot of ["a", "b"]) {
  const box = document.createElement("div");
  box.className = "slot";
  box.innerHTML =
    "<h3>Recording " + slot.toUpperCase() + "</h3>" +
    '<input type="file" id="file-' + slot + '" accept="audio/*"> ' +
    '<button type="button" class="rec" data-slot="' + slot + '">Record</button>' +
    '<div class="status" id="status-' + slot + '">nothing yet</div>' +
    '<audio id="play-' + slot + '" controls hidden></audio>';
  $("slots").appendChild(box);
  $("file-" + slot).onchange = (ev) => { if (ev.target.files[0]) setRecording(slot, ev.target.files[0], "file"); };
}
for (const button of document.querySelectorAll("button.rec")) {
  button.onclick = () => toggleRecording(button.dataset.slot, button);
}
$("token-state").textContent = token() ? "token set for this session" : "";
refresh();
