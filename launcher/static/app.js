// The live job page: the caller's jobs, and one job's status, progress and
// output as it arrives. Everything comes from the HTTP API with the access
// token in `Authorization: Bearer`; answers are revalidated with ETags and
// polled at the pace the server's Retry-After asks for.
"use strict";

const TOKEN_KEY = "plus.token";
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const MAX_OUTPUT_LINES = 5000;

const $ = (id) => document.getElementById(id);

let token = null;
// Each view bumps the generation; a poll loop of an older view stops.
let generation = 0;
const etags = new Map();
const bodies = new Map();

function takeTokenFromUrl() {
  const m = location.hash.match(/(?:^#|[&#])token=([^&]+)/);
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    // The fragment never reaches the server; drop it from the address bar
    // and history too.
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
  token = localStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

// GET with If-None-Match: a 304 returns the body we already have.
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const method = options.method || "GET";
  if (method === "GET" && etags.has(path)) headers["If-None-Match"] = etags.get(path);
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, cache: "no-store", body: options.body });
  } catch (e) {
    setConn(`server unreachable (${e.message}); retrying`, true);
    throw e;
  }
  setConn("", false);
  if (res.status === 401) throw new Unauthorized((await res.json()).message);
  const retryAfter = Number(res.headers.get("Retry-After"));
  const poll = Number.isFinite(retryAfter) && res.headers.has("Retry-After") ? retryAfter : null;
  if (res.status === 304 && bodies.has(path)) {
    return { status: 200, body: bodies.get(path), poll, changed: false };
  }
  const body = await res.json();
  if (method === "GET" && res.ok) {
    const etag = res.headers.get("ETag");
    if (etag) {
      etags.set(path, etag);
      bodies.set(path, body);
    }
  }
  return { status: res.status, body, poll, changed: true };
}

function setConn(text, bad) {
  const el = $("conn");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

function show(view) {
  for (const id of ["signin", "list-view", "job-view"]) $(id).hidden = id !== view;
}

function badge(el, status) {
  el.className = `badge ${status}`;
  el.textContent = status;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function duration(job) {
  if (!job.started_at) return "";
  const start = Date.parse(job.started_at);
  const end = job.completed_at ? Date.parse(job.completed_at) : Date.now();
  const s = Math.max(0, (end - start) / 1000);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function signin(message) {
  localStorage.removeItem(TOKEN_KEY);
  token = null;
  generation++;
  show("signin");
  const err = $("signin-error");
  err.hidden = !message;
  err.textContent = message || "";
}

// ---- the list ----

async function listView() {
  const gen = ++generation;
  show("list-view");
  let pageToken = null;
  $("more-jobs").onclick = () => loadMore();
  const olderRows = [];

  async function loadMore() {
    if (!pageToken) return;
    const r = await api(`jobs?page_token=${encodeURIComponent(pageToken)}`);
    for (const job of r.body.jobs) olderRows.push(job);
    pageToken = r.body.next_page_token || null;
    render(null);
  }

  let firstPage = [];
  function render(page) {
    if (page) firstPage = page;
    const seen = new Set(firstPage.map((j) => j.object_id));
    const jobs = firstPage.concat(olderRows.filter((j) => !seen.has(j.object_id)));
    const tbody = $("jobs-body");
    tbody.replaceChildren(...jobs.map(row));
    $("jobs").hidden = jobs.length === 0;
    $("list-empty").hidden = jobs.length !== 0;
    $("more-jobs").hidden = !pageToken;
  }

  while (gen === generation) {
    let wait = 10;
    try {
      const r = await api("jobs?page_size=50");
      if (gen !== generation) return;
      if (r.changed || firstPage.length === 0) {
        if (!olderRows.length) pageToken = r.body.next_page_token || null;
        render(r.body.jobs);
      }
      if (r.poll !== null) wait = r.poll;
    } catch (e) {
      if (e instanceof Unauthorized) return signin(e.message);
    }
    await sleep(wait * 1000);
  }
}

function row(job) {
  const tr = document.createElement("tr");
  const status = document.createElement("td");
  const b = document.createElement("span");
  badge(b, job.status);
  status.append(b);
  const id = document.createElement("td");
  id.className = "id";
  const a = document.createElement("a");
  a.href = `#/jobs/${encodeURIComponent(job.object_id)}`;
  a.textContent = job.object_id;
  id.append(a);
  const cells = [job.run_mode || "", when(job.created_at), duration(job)].map((t) => {
    const td = document.createElement("td");
    td.textContent = t;
    return td;
  });
  tr.append(status, id, ...cells);
  return tr;
}

// ---- one job ----

function renderJob(job) {
  $("job-title").textContent = job.object_id;
  badge($("job-status"), job.status);
  const facts = [
    ["Mode", job.run_mode],
    ["Attempt", job.attempt],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Completed", when(job.completed_at)],
    ["Duration", duration(job)],
    ["Updated", when(job.updated_at)],
    ["Heartbeat", when(job.heartbeat_at)],
    ["Exit code", job.exit_code],
    ["Task", job.fargate_task_arn],
    ["Cancel", job.cancel_requested && !TERMINAL.has(job.status) ? "requested: the worker is stopping the script" : ""],
  ];
  const dl = $("job-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) {
    if (v === undefined || v === null || v === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dd.dataset.fact = k.toLowerCase().replace(/\s+/g, "-");
    dl.append(dt, dd);
  }
  const err = $("job-error");
  err.hidden = !job.error;
  err.textContent = job.error || "";

  const p = job.progress;
  const isCollection = job.run_mode === "RUN_COLLECTION" || (p && p.total);
  $("progress-box").hidden = !isCollection;
  if (isCollection) {
    const total = (p && p.total) || 0;
    const done = ((p && p.succeeded) || 0) + ((p && p.failed) || 0);
    const bar = $("progress");
    if (total > 0) {
      bar.max = total;
      bar.value = done;
    } else {
      bar.removeAttribute("value");
    }
    const failed = p && p.failed ? `, ${p.failed} failed` : "";
    $("progress-text").textContent = total
      ? `${done} of ${total} (${Math.floor((100 * done) / total)}%)${failed}`
      : `${done} done${failed}`;
  }

  const hasResult = job.result !== undefined;
  $("result-box").hidden = !hasResult;
  if (hasResult) $("result").textContent = JSON.stringify(job.result, null, 2);

  $("cancel").hidden = TERMINAL.has(job.status) || job.cancel_requested;
}

function appendOutput(events) {
  const out = $("output");
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  for (const e of events) {
    if (e.kind !== "stdout" && e.kind !== "stderr" && e.kind !== "status") continue;
    const span = document.createElement("span");
    span.className = e.kind;
    span.textContent = e.kind === "status" ? `● ${e.data}\n` : `${e.data}\n`;
    out.append(span);
  }
  while (out.childNodes.length > MAX_OUTPUT_LINES) out.firstChild.remove();
  $("output-empty").hidden = out.childNodes.length > 0;
  if (atBottom) out.scrollTop = out.scrollHeight;
}

async function jobView(id) {
  const gen = ++generation;
  show("job-view");
  $("output").replaceChildren();
  $("output-empty").hidden = false;
  $("job-title").textContent = id;
  $("job-status").textContent = "";
  $("job-facts").replaceChildren();
  const path = `jobs/${encodeURIComponent(id)}`;
  let after = "0";
  let job = null;
  let jobReadAt = 0;

  $("cancel").onclick = async () => {
    $("cancel").disabled = true;
    try {
      const r = await api(`${path}/cancel`, { method: "POST" });
      if (r.status === 200) {
        job = r.body;
        renderJob(job);
      } else {
        const err = $("job-error");
        err.hidden = false;
        err.textContent = r.body.message;
      }
    } catch (e) {
      if (e instanceof Unauthorized) return signin(e.message);
    } finally {
      $("cancel").disabled = false;
    }
  };

  while (gen === generation) {
    let wait = 1;
    try {
      const ev = await api(`${path}/events?after=${after}`);
      if (gen !== generation) return;
      if (ev.status === 404) {
        const err = $("job-error");
        err.hidden = false;
        err.textContent = ev.body.message;
        $("job-status").className = "badge";
        return;
      }
      if (ev.status !== 200) throw new Error(ev.body.message);
      const events = ev.body.events;
      if (ev.changed) {
        appendOutput(events);
        after = ev.body.next_after;
      }
      const statusMoved =
        !job || job.status !== ev.body.status || events.some((e) => e.kind !== "stdout" && e.kind !== "stderr");
      if (statusMoved || Date.now() - jobReadAt > 5000) {
        const r = await api(path);
        if (gen !== generation) return;
        if (r.status === 200) {
          job = r.body;
          jobReadAt = Date.now();
          renderJob(job);
        }
      }
      // The status was read before the events: once it is final, the
      // events hold everything the job wrote.
      if (TERMINAL.has(ev.body.status) && !ev.body.more && job && TERMINAL.has(job.status)) return;
      wait = ev.body.more ? 0 : ev.poll ?? 1;
    } catch (e) {
      if (e instanceof Unauthorized) return signin(e.message);
      wait = 3;
    }
    await sleep(wait * 1000);
  }
}

// ---- routing ----

function route() {
  takeTokenFromUrl();
  if (!token) return signin("");
  const m = location.hash.match(/^#\/jobs\/(.+)$/);
  if (m) return jobView(decodeURIComponent(m[1]));
  return listView();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  localStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  if (location.hash === "#/" || location.hash === "") route();
  else location.hash = "#/";
});

window.addEventListener("hashchange", route);
route();
