// The i2v page: the form, one job followed by server-sent events, the result, the quota and the gallery.
// Everything it knows comes from the server (/api/options holds the ranges, presets and defaults).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { me: null, options: null, file: null, parent: null, job: null, events: null, galleryPage: 0 };
const ADVANCED = ["resolution", "frames", "fps", "steps", "guidance"];

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.method && init.method !== "GET") init.headers["X-CSRF-Token"] = state.me ? state.me.csrf_token : "";
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `The server answered ${response.status}.`);
  return body;
}

function show(id, visible) { $(id).hidden = !visible; }
function say(id, text, ok = false) { $(id).textContent = text || ""; $(id).classList.toggle("ok", ok); }
function seconds(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.round(s));
  return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
}
function modelName(key) {
  const known = (state.options && state.options.models || []).find((m) => m.key === key);
  return known ? known.name : key;
}
function describe(p) {
  return `${modelName(p.model)} · ${p.preset || "custom"} · ${p.resolution} (${p.width}×${p.height}) · ${p.frames} frames · ${p.fps} fps · ` +
    `${p.steps} steps · guidance ${p.guidance} · seed ${p.seed}`;
}

// -- form ------------------------------------------------------------------------------------------------------

function fillOptions(o) {
  const model = $("model");
  model.innerHTML = "";
  for (const m of o.models) model.add(new Option(m.name, m.key));
  show("model-field", o.models.length > 1);  // one model: nothing to choose
  $("seed").min = o.seed[0]; $("seed").max = o.seed[1];
  $("prompt").maxLength = o.max_prompt_chars; $("negative_prompt").maxLength = o.max_prompt_chars;
  chooseModel(o.default_model);
  choosePreset(o.default_preset);
}

function space() { return state.options.models.find((m) => m.key === $("model").value); }

// The form takes the chosen model's ranges, resolutions and presets; the server checks them again.
function chooseModel(key) {
  $("model").value = key;
  const m = space();
  const res = $("resolution");
  res.innerHTML = "";
  for (const name of m.resolutions) res.add(new Option(name, name));
  for (const [id, range] of [["frames", m.frames], ["fps", m.fps], ["steps", m.steps], ["guidance", m.guidance]]) {
    $(id).min = range[0]; $(id).max = range[1];
  }
  $("frames").step = m.frames_step;
  $("guidance").disabled = m.guidance[0] === m.guidance[1];
  $("negative_prompt").disabled = !m.negative_prompt_applies;
  $("negative_prompt").value = m.negative_prompt_applies ? state.options.default_negative_prompt : "";
  $("model-limits").textContent = `${m.name}: ${m.resolutions.join(", ")}, ${m.frames[0]}-${m.frames[1]} frames` +
    (m.frames_step > 1 ? ` (${m.frames_step}k+${m.frames_offset})` : "") + `, ${m.steps[0]}-${m.steps[1]} steps` +
    (m.negative_prompt_applies ? "" : "; no guidance, so no negative prompt") + ".";
}

function choosePreset(name) {
  const p = space().presets[name];
  state.preset = name;
  for (const id of ADVANCED) $(id).value = p[id];
  document.querySelectorAll(".preset").forEach((b) => b.classList.toggle("active", b.dataset.preset === name));
}

function setParams(p) {
  if (state.options.models.some((m) => m.key === p.model)) chooseModel(p.model);
  $("prompt").value = p.prompt; $("negative_prompt").value = p.negative_prompt;
  for (const id of ADVANCED) $(id).value = p[id];
  $("seed").value = p.seed;
  state.preset = p.preset;
  document.querySelectorAll(".preset").forEach((b) => b.classList.toggle("active", b.dataset.preset === p.preset));
}

async function pickFile(file) {
  state.file = file; state.parent = null; show("variant-of", false);
  say("image-message", "");
  const preview = $("preview");
  preview.src = URL.createObjectURL(file); preview.hidden = false;
  if (file.size > state.options.max_upload_bytes) {
    say("image-message", `That image file is too large. (${file.size.toLocaleString("en")} bytes; the limit is ` +
      `${state.options.max_upload_bytes.toLocaleString("en")})`);
    return;
  }
  const form = new FormData(); form.append("image", file);
  try {
    const r = await api("/api/images/check", { method: "POST", body: form });
    say("image-message", `Image accepted: ${r.width}×${r.height}.`, true);
  } catch (e) { say("image-message", e.message); }
}

async function generate(event) {
  event.preventDefault();
  say("form-message", "");
  const form = new FormData();
  if (state.file) form.append("image", state.file);
  else if (state.parent) form.append("parent", state.parent);
  for (const id of ["model", "prompt", "negative_prompt", ...ADVANCED, "seed"]) form.append(id, $(id).value);
  if (state.preset) form.append("preset", state.preset);
  $("generate").disabled = true;
  try { follow(await api("/api/jobs", { method: "POST", body: form })); }
  catch (e) { say("form-message", e.message); }
  finally { $("generate").disabled = false; refreshQuota(); }
}

// -- one job ---------------------------------------------------------------------------------------------------

function follow(job) {
  if (state.events) state.events.close();
  state.job = job;
  show("result", false);
  render(job);
  if (job.notice) say("form-message", job.notice);
  state.events = new EventSource(`/api/jobs/${job.id}/events`);
  state.events.onmessage = (message) => {
    const update = JSON.parse(message.data);
    render(update);
    if (!update.pending) { state.events.close(); state.events = null; refreshQuota(); loadGallery(); }
  };
  state.events.addEventListener("gone", () => { state.events.close(); state.events = null; });
  state.events.addEventListener("signed-out", () => { state.events.close(); state.events = null; location.reload(); });
}

function render(job) {
  state.job = job;
  show("job", true);
  $("job-title").textContent = `Job #${job.id}`;
  const progress = $("job-progress");
  let text;
  if (job.status === "queued") {
    if (job.model_download) text = job.position ? `Queued: position ${job.position}. ${job.model_download}` : `Queued. ${job.model_download}`;
    else if (job.position && job.eta_seconds != null) text = `Queued: position ${job.position}, ready in about ${seconds(job.eta_seconds)}.`;
    else text = job.position ? `Queued: position ${job.position}.` : "Queued.";
    progress.removeAttribute("value");
  } else if (job.status === "running") {
    text = job.phase === "denoising" ? `Step ${job.step}/${job.total} (denoising)` : `Running: ${job.phase}`;
    if (job.cancel_requested) text += " - stopping";
    progress.max = job.total || 1; progress.value = job.phase === "denoising" ? job.step : 0;
  } else if (job.status === "succeeded") {
    text = job.video_url ? "Done." : (job.error || "Done."); progress.max = 1; progress.value = 1;
  } else {
    text = job.error || job.status; progress.max = 1; progress.value = 0;
  }
  $("job-status").textContent = text;
  $("job-status").dataset.status = job.status;
  $("job-status").dataset.phase = job.phase;
  $("job-status").dataset.step = job.step;
  $("cancel").hidden = !job.pending;
  if (job.status === "succeeded" && job.video_url) showResult(job);  // none: withheld by the safety check
}

function showResult(job) {
  show("result", true);
  const video = $("result-video");
  if (video.dataset.job !== String(job.id)) { video.src = job.video_url; video.dataset.job = String(job.id); }
  $("result-params").textContent = `“${job.params.prompt}” - ${describe(job.params)}`;
  $("output-name").textContent = job.output_name;
  $("download").href = job.download_url;
  $("download").setAttribute("download", job.output_name);
}

async function cancel() {
  if (!state.job) return;
  try { const r = await api(`/api/jobs/${state.job.id}/cancel`, { method: "POST" }); say("form-message", r.message, true); }
  catch (e) { say("form-message", e.message); }
}

async function again(mode) {
  try { follow(await api(`/api/jobs/${state.job.id}/again?mode=${mode}`, { method: "POST" })); }
  catch (e) { say("form-message", e.message); }
  refreshQuota();
}

function vary() {
  const job = state.job;
  state.file = null; state.parent = job.id;
  setParams(job.params);
  $("seed").value = "";
  $("advanced").open = true;
  if (job.input_url) { $("preview").src = job.input_url; $("preview").hidden = false; }
  $("variant-of").textContent = `A variation of job #${job.id}: change anything, then Generate.`;
  show("variant-of", true);
  $("prompt").focus();
}

// -- quota and gallery -----------------------------------------------------------------------------------------

async function refreshQuota() {
  try {
    const q = await api("/api/quota");
    let text = `GPU time left: ${seconds(q.remaining)} of ${seconds(q.budget)} per 24 hours; ` +
      `${q.pending} of ${q.max_pending} videos waiting or running.`;
    if (q.refill_at) text += ` Your oldest use frees up at ${new Date(q.refill_at).toLocaleString()}.`;
    if (q.banned) text = "You are not allowed to make videos with this bot.";
    $("quota").textContent = text;
  } catch (e) { $("quota").textContent = e.message; }
}

async function loadGallery() {
  let g;
  try { g = await api(`/api/gallery?page=${state.galleryPage}`); } catch (e) { return; }
  const box = $("gallery-items");
  box.innerHTML = "";
  for (const job of g.videos) {
    const fig = document.createElement("figure");
    fig.dataset.job = job.id;
    const video = document.createElement("video");
    video.src = job.video_url; video.controls = true; video.preload = "metadata"; video.muted = true;
    const caption = document.createElement("figcaption");
    caption.textContent = `#${job.id} “${job.params.prompt}” - ${describe(job.params)}`;
    const links = document.createElement("p");
    links.className = "row";
    const download = document.createElement("a");
    download.href = job.download_url; download.textContent = "Download"; download.setAttribute("download", job.output_name);
    const del = document.createElement("button");
    del.type = "button"; del.textContent = "Delete"; del.className = "delete";
    del.onclick = async () => {
      try { await api(`/api/jobs/${job.id}/delete`, { method: "POST" }); loadGallery(); }
      catch (e) { caption.textContent = e.message; }
    };
    links.append(download, del);
    fig.append(video, caption, links);
    box.append(fig);
  }
  if (!g.videos.length) box.textContent = "No videos yet.";
  $("gallery-page").textContent = `page ${g.page + 1} of ${g.pages}`;
  $("gallery-prev").disabled = g.page === 0;
  $("gallery-next").disabled = g.page + 1 >= g.pages;
}

// -- start -----------------------------------------------------------------------------------------------------

async function start() {
  const answer = await fetch("/api/me", { credentials: "same-origin" });
  if (answer.status === 401) {
    say("signin-message", (await answer.json()).error);
    show("signin-needed", true);
    return;
  }
  state.me = await answer.json();
  show("app", true);
  $("user").textContent = `Signed in as ${state.me.name}`;
  show("signout", true);
  show("signout-everywhere", true);
  show("console-link", state.me.operator);
  state.options = await api("/api/options");
  fillOptions(state.options);

  $("image").addEventListener("change", () => { if ($("image").files[0]) pickFile($("image").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) pickFile(e.dataTransfer.files[0]);
  });
  document.querySelectorAll(".preset").forEach((b) => b.addEventListener("click", () => choosePreset(b.dataset.preset)));
  // Another model starts from its own values of the preset chosen (each model has its own ranges).
  $("model").addEventListener("change", () => { chooseModel($("model").value); choosePreset(state.preset || state.options.default_preset); });
  // As in Discord, a preset is the base and the advanced values given override it (the preset stays recorded).
  $("random-seed").addEventListener("click", () => {
    const values = new Uint32Array(1); crypto.getRandomValues(values); $("seed").value = values[0];
  });
  $("generate-form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("reroll").addEventListener("click", () => again("reroll"));
  $("same").addEventListener("click", () => again("same"));
  $("vary").addEventListener("click", vary);
  $("gallery-prev").addEventListener("click", () => { state.galleryPage -= 1; loadGallery(); });
  $("gallery-next").addEventListener("click", () => { state.galleryPage += 1; loadGallery(); });
  $("signout").addEventListener("click", async () => { await api("/api/signout", { method: "POST" }); location.reload(); });
  $("signout-everywhere").addEventListener("click", async () => {
    await api("/api/signout?everywhere=1", { method: "POST" }); location.reload();
  });
  refreshQuota();
  loadGallery();
}

start().catch((e) => { document.body.append(e.message); });
