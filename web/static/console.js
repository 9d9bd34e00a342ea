// The operator console: one overview request every few seconds, actions through the same jobs operations and
// audit entries as Discord's /operator commands.
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;
let me = null;

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.method && init.method !== "GET") {
    init.headers["X-CSRF-Token"] = me ? me.csrf_token : "";
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `The server answered ${response.status}.`);
  return body;
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.append(td); return td; }
function say(text) { $("console-message").textContent = text || ""; }

async function refresh() {
  let c;
  try { c = await api("/api/console"); } catch (e) { say(e.message); return; }
  $("queue-state").textContent = c.paused ? "(paused)" : `(${c.running} running, ${c.queued} queued)`;
  $("queue-state").dataset.paused = String(c.paused);
  const queue = $("queue"); queue.innerHTML = "";
  for (const j of c.queue) {
    const tr = document.createElement("tr");
    cell(tr, `#${j.id}`); cell(tr, j.user_id);
    cell(tr, j.status === "running" ? `running ${j.phase} ${j.step}/${j.total}` : `queued #${j.position}`);
    cell(tr, j.summary); cell(tr, j.prompt);
    const b = document.createElement("button"); b.textContent = "Cancel"; b.type = "button";
    b.onclick = async () => {
      try { const r = await api(`/api/console/jobs/${j.id}/cancel`, { method: "POST" }); say(`Job #${j.id}: ${r.outcome}`); }
      catch (e) { say(e.message); }
      refresh();
    };
    cell(tr, "").append(b);
    queue.append(tr);
  }
  $("worker-problem").textContent = c.worker_problem ? `Video generation is unavailable: ${c.worker_problem}` : "";
  const workers = $("workers"); workers.innerHTML = "";
  for (const w of c.workers) {
    const tr = document.createElement("tr");
    cell(tr, `${w.id} (${w.host}, pid ${w.pid})`); cell(tr, w.stale ? `${w.state} (stale)` : w.state);
    cell(tr, w.job ? `#${w.job}` : ""); cell(tr, w.jobs_done); cell(tr, w.restarts); cell(tr, w.gpu || "");
    const others = w.loadable_models.length > 1 ? ` (may load ${w.loadable_models.join(", ")}; ${w.switches} switches)` : "";
    cell(tr, (w.loaded_model || "none") + others);
    cell(tr, new Date(w.last_heartbeat_at).toLocaleTimeString());
    workers.append(tr);
  }
  const sessions = $("sessions"); sessions.innerHTML = "";
  for (const s of c.sessions) {
    const tr = document.createElement("tr");
    tr.dataset.session = s.id; tr.dataset.user = s.user_id;
    cell(tr, s.id); cell(tr, s.operator ? `${s.user_id} (operator's link)` : s.user_id); cell(tr, s.guild_id || "");
    cell(tr, s.role_ids.length ? `${s.role_ids.length} (read ${new Date(s.roles_checked_at).toLocaleTimeString()})` : "");
    cell(tr, new Date(s.created_at).toLocaleString()); cell(tr, new Date(s.expires_at).toLocaleString());
    const b = document.createElement("button"); b.textContent = "End"; b.type = "button"; b.className = "end-session";
    b.onclick = async () => {
      try { await api(`/api/console/sessions/${s.id}/end`, { method: "POST", body: "{}" }); say(`Session ${s.id} ended.`); }
      catch (e) { say(e.message); }
      refresh();
    };
    cell(tr, "").append(b);
    sessions.append(tr);
  }
  const reports = $("reports"); reports.innerHTML = "";
  for (const r of c.reports) {
    const tr = document.createElement("tr");
    cell(tr, `#${r.job_id}`); cell(tr, r.user_id); cell(tr, r.guild_id);
    cell(tr, `${r.reports}${r.flagged ? " (flagged by the safety check)" : ""}`); cell(tr, r.prompt);
    const actions = cell(tr, "");
    for (const [action, label] of [["delete", "Delete video"], ["ban", "Ban maker"], ["dismiss", "Dismiss"]]) {
      const b = document.createElement("button"); b.textContent = label; b.type = "button";
      b.onclick = async () => {
        try { const x = await api(`/api/console/reports/${r.job_id}/${action}`, { method: "POST" }); say(`Video #${r.job_id}: ${action}, ${x.reports} report(s) closed`); }
        catch (e) { say(e.message); }
        refresh();
      };
      actions.append(b);
    }
    reports.append(tr);
  }
  const stats = $("stats"); stats.innerHTML = "";
  for (const [name, s] of Object.entries(c.stats)) {
    const p = document.createElement("p");
    const states = Object.entries(s.by_state).map(([k, v]) => `${v} ${k}`).join(", ");
    const times = s.timings.map((t) => `${t.preset}: ${t.count} made, mean ${t.mean_s === null ? "-" : t.mean_s.toFixed(1)} s`).join("; ");
    p.textContent = `${name}: ${s.created} jobs (${states}); ${s.gpu_seconds} GPU-seconds. ${times}`;
    stats.append(p);
  }
  const audit = $("audit"); audit.innerHTML = "";
  for (const a of c.audit) {
    const tr = document.createElement("tr");
    cell(tr, new Date(a.at).toLocaleString()); cell(tr, a.actor_id); cell(tr, a.action); cell(tr, a.target_user_id);
    cell(tr, a.job_id ? `#${a.job_id}` : ""); cell(tr, JSON.stringify(a.detail));
    tr.dataset.action = a.action;
    audit.append(tr);
  }
}

function showUser(u) {
  $("user-panel").hidden = false;
  let text = `User ${u.user_id}: budget ${u.budget.toFixed(0)} GPU-seconds per 24 h (${u.budget_source}), used ` +
    `${u.used.toFixed(0)}, reserved ${u.reserved.toFixed(0)}, remaining ${u.remaining.toFixed(0)}; pending ` +
    `${u.pending} of ${u.max_pending}.`;
  if (u.banned) text += ` Banned${u.ban_reason ? ": " + u.ban_reason : ""}.`;
  $("user-summary").textContent = text;
}

async function userAction(path, body) {
  const id = $("user-id").value.trim();
  try { showUser(await api(`/api/console/users/${encodeURIComponent(id)}${path}`, body === undefined ? {} :
    { method: "POST", body: JSON.stringify(body) })); say(""); }
  catch (e) { say(e.message); }
  refresh();
}

async function start() {
  const answer = await fetch("/api/me", { credentials: "same-origin" });
  if (answer.status === 401) { say((await answer.json()).error); return; }
  me = await answer.json();
  if (!me.operator) { say("Only the bot's operator may use the console."); return; }
  $("console").hidden = false;
  $("pause").onclick = async () => {
    try { await api("/api/console/pause", { method: "POST", body: JSON.stringify({ reason: $("pause-reason").value }) }); }
    catch (e) { say(e.message); }
    refresh();
  };
  $("resume").onclick = async () => {
    try { await api("/api/console/resume", { method: "POST", body: "{}" }); } catch (e) { say(e.message); }
    refresh();
  };
  $("user-load").onclick = () => userAction("");
  $("user-save").onclick = () => userAction("/limits", { daily_gpu_seconds: $("user-daily").value || null,
    max_pending: $("user-pending").value || null });
  $("user-ban").onclick = () => userAction("/ban", { reason: $("ban-reason").value });
  $("user-unban").onclick = () => userAction("/unban", {});
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start().catch((e) => say(e.message));
