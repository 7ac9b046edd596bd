// The live job page: the caller's jobs (filtered by status, searched by
// name or id, shards grouped under their parent), and one job's status,
// progress, attempts, output, files and result as they arrive. Everything
// comes from the HTTP API with the access token in `Authorization: Bearer`;
// answers are revalidated with ETags, and a job that can still change is
// read again about every second.
//
// Data only ever reaches the page through textContent and DOM APIs (never
// innerHTML), and downloads that need the token go through fetch and a
// blob: URL, so the strict Content-Security-Policy holds.
//
// Layout, top to bottom:
// - helpers: `el` (the one way elements are made), ids, times, sizes, what a
//   job runs, progress words and bars;
// - the API: `api` (JSON, ETag revalidation) and `download` (fetch + blob);
// - the list (`#/?status=&q=`): `listView` polls, `grouped` puts shards under
//   their parent, `row` draws one job (a card at phone width, by CSS only);
// - one job (`#/jobs/ID`): `jobView` polls events and the record about every
//   second until the job ended, and the `render*` functions draw each part;
// - routing: the token from the address, then the list or one job.
"use strict";

const TOKEN_KEY = "plus.token";
const TIMESTAMPS_KEY = "plus.timestamps";
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const MAX_OUTPUT_LINES = 5000;
// How often a job that can still change is read again.
const JOB_POLL_MS = 1000;
// How many seconds of progress samples estimate the time left.
const ETA_WINDOW_MS = 30000;

const $ = (id) => document.getElementById(id);

let token = null;
// Each view bumps the generation; a poll loop of an older view stops.
let generation = 0;
const etags = new Map();
const bodies = new Map();
// The list's filter (in the list's address too), kept while a job is open.
const filter = { status: "", q: "" };

// ---- helpers ----

// An element with attributes and children; strings become text nodes.
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  e.append(...children.filter((c) => c !== null && c !== undefined && c !== false && c !== ""));
  return e;
}

// A job id short enough for one line on a phone: job ids are UUIDv7, whose
// first 8 digits are the time and whose last ones are random, so both ends
// stay; a shard keeps its `-sN`.
function shortId(id) {
  const m = id.match(/^(.*?)(-s\d+)?$/);
  const base = m[1];
  const suffix = m[2] || "";
  return base.length <= 16 ? id : `${base.slice(0, 8)}…${base.slice(-4)}${suffix}`;
}

const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
const jobPath = (id) => `jobs/${encodeURIComponent(id)}`;

function idLink(id, text) {
  return el("a", { href: jobHref(id), class: "id", title: id, text: text || shortId(id) });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- status changes the server pushes ----
// `plus serve` streams the caller's Job State Change events (`GET /events`,
// server-sent events): a view waiting for its next read wakes up as soon
// as one arrives. Where there is no stream (404: the API on AWS) the views
// just poll. `body[data-live=stream]` shows the stream is open.

const waiters = new Set();
let watching = false;
let lastEventId = null;

// Waits `ms`, or less when a job changes status meanwhile.
function waitOrChange(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      waiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    waiters.add(done);
  });
}

async function watchChanges() {
  if (watching) return;
  watching = true;
  let delay = 1000;
  while (token) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    try {
      const res = await fetch("events", { headers, cache: "no-store" });
      if (res.status === 404) break;
      if (!res.ok || !res.body) throw new Error(`${res.status}`);
      document.body.dataset.live = "stream";
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = "message";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("id:")) lastEventId = line.slice(3).trim();
          }
          if (event === "job-state-change") for (const wake of [...waiters]) wake();
        }
      }
    } catch {
      // Dropped: reconnect below, from the last id seen.
    }
    delete document.body.dataset.live;
    await sleep(delay);
    delay = Math.min(delay * 2, 30000);
  }
  watching = false;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// A time in a list: the time of day for today's, the date too otherwise.
function whenShort(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// The time of day of an output line, to the millisecond.
function clock(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function seconds(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// A time left: whole seconds, then whole minutes.
function roughly(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function between(startIso, endIso) {
  if (!startIso) return "";
  const start = Date.parse(startIso);
  const end = endIso ? Date.parse(endIso) : Date.now();
  if (Number.isNaN(start) || Number.isNaN(end)) return "";
  return seconds(Math.max(0, (end - start) / 1000));
}

const duration = (job) => between(job.started_at, job.completed_at);

function size(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}

// What a job runs: its stored action, or its script (file name,
// interpreter, arguments), and over which collection.
function runs(job) {
  if (job.action_id) return `action ${job.action_id}`;
  const s = job.script || {};
  const file = (s.s3_key || "").split("/").pop();
  const name = !file || file === "script" ? "script" : file;
  const text = [s.interpreter, name, ...(s.args || [])].filter(Boolean).join(" ");
  const streaming = s.streaming ? " (streaming)" : "";
  return job.collection_owner ? `${text}${streaming} over ${job.collection_owner}` : text;
}

function counts(p) {
  const total = Number(p?.total) || 0;
  const succeeded = Number(p?.succeeded) || 0;
  const failed = Number(p?.failed) || 0;
  const done = succeeded + failed;
  // A total below what is done is not the whole yet (a sharded parent
  // before every shard has counted its items): show no total then.
  return { total: total >= done ? total : 0, succeeded, failed, done };
}

// "42 of 120 done, 2 failed".
function progressWords(p) {
  const c = counts(p);
  const failed = c.failed ? `, ${c.failed} failed` : "";
  return c.total ? `${c.done} of ${c.total} done${failed}` : `${c.done} done${failed}`;
}

function hasProgress(job) {
  return job.run_mode === "RUN_COLLECTION" || Boolean(job.shard_count) || counts(job.progress).total > 0;
}

function progressBar(p) {
  const c = counts(p);
  const bar = el("progress", { "aria-label": progressWords(p) });
  if (c.total > 0) {
    bar.max = c.total;
    bar.value = c.done;
  }
  return bar;
}

function badge(elOrNull, status) {
  const b = elOrNull || el("span");
  b.className = `badge ${status || ""}`;
  b.textContent = status || "";
  return b;
}

// ---- the API ----

class Unauthorized extends Error {}

async function bodyOf(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return { message: text || `${res.status} ${res.statusText}` };
  }
}

// JSON in and out; a GET sends If-None-Match, and a 304 returns the body
// we already have with `changed: false`.
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
  if (res.status === 401) throw new Unauthorized((await bodyOf(res)).message);
  if (res.status === 304 && bodies.has(path)) {
    return { status: 200, body: bodies.get(path), changed: false };
  }
  const body = await bodyOf(res);
  if (method === "GET" && res.ok) {
    const etag = res.headers.get("ETag");
    if (etag) {
      etags.set(path, etag);
      bodies.set(path, body);
    }
  }
  return { status: res.status, body, changed: true };
}

function forget(path) {
  etags.delete(path);
  bodies.delete(path);
}

// Saves what `path` answers as `filename`: the token goes in a header,
// which a plain link cannot carry, so the bytes come through fetch and
// leave as a blob: URL.
async function download(path, filename) {
  notice("");
  try {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    if (res.status === 401) throw new Unauthorized((await bodyOf(res)).message);
    if (!res.ok) {
      notice(`${filename} could not be downloaded: ${(await bodyOf(res)).message}`);
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    if (e instanceof Unauthorized) return signin(e.message);
    notice(`${filename} could not be downloaded: ${e.message}`);
  }
}

function setConn(text, bad) {
  const c = $("conn");
  c.textContent = text;
  c.classList.toggle("bad", bad);
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text;
}

function show(view) {
  for (const id of ["signin", "list-view", "job-view"]) $(id).hidden = id !== view;
  window.scrollTo(0, 0);
}

function signin(message) {
  localStorage.removeItem(TOKEN_KEY);
  token = null;
  generation++;
  show("signin");
  const err = $("signin-error");
  err.hidden = !message;
  err.textContent = message || "";
  const m = location.hash.match(/^#\/jobs\/([^?&]+)/);
  const next = $("signin-next");
  next.hidden = !m;
  next.textContent = m ? `Job ${decodeURIComponent(m[1])} opens once the token is given.` : "";
}

// ---- the list ----

function matches(job) {
  if (filter.status && job.status !== filter.status) return false;
  const q = filter.q.trim().toLowerCase();
  if (!q) return true;
  return job.object_id.toLowerCase().includes(q) || (job.name || "").toLowerCase().includes(q);
}

function listPath(pageToken) {
  const p = new URLSearchParams({ page_size: "50" });
  if (filter.status) p.set("status", filter.status);
  if (filter.q.trim()) p.set("q", filter.q.trim());
  if (pageToken) p.set("page_token", pageToken);
  return `jobs?${p}`;
}

async function listView() {
  const gen = ++generation;
  show("list-view");
  document.title = "plus jobs";
  $("filter-status").value = filter.status;
  if ($("filter-q").value !== filter.q) $("filter-q").value = filter.q;
  let pageToken = null;
  let firstPage = null;
  const older = [];

  $("more-jobs").onclick = async () => {
    if (!pageToken) return;
    try {
      const r = await api(listPath(pageToken));
      if (gen !== generation || r.status !== 200) return;
      older.push(...r.body.jobs);
      pageToken = r.body.next_page_token || null;
      render();
    } catch (e) {
      if (e instanceof Unauthorized) signin(e.message);
    }
  };

  function render() {
    const seen = new Set();
    const jobs = [];
    for (const j of firstPage.concat(older)) {
      if (seen.has(j.object_id) || !matches(j)) continue;
      seen.add(j.object_id);
      jobs.push(j);
    }
    $("jobs-body").replaceChildren(...grouped(jobs));
    const filtered = Boolean(filter.status || filter.q.trim());
    $("jobs").hidden = jobs.length === 0;
    $("list-empty").hidden = jobs.length !== 0 || filtered;
    $("list-nomatch").hidden = jobs.length !== 0 || !filtered;
    $("more-jobs").hidden = !pageToken;
  }

  while (gen === generation) {
    let wait = 10000;
    try {
      const r = await api(listPath(null));
      if (gen !== generation) return;
      $("list-error").hidden = r.status === 200;
      if (r.status !== 200) {
        $("list-error").textContent = r.body.message;
      } else if (r.changed || firstPage === null) {
        if (!older.length) pageToken = r.body.next_page_token || null;
        firstPage = r.body.jobs;
        render();
      }
      // A list with jobs still going changes: read it again soon.
      if (r.status === 200 && r.body.jobs.some((j) => !TERMINAL.has(j.status))) wait = 2000;
    } catch (e) {
      if (e instanceof Unauthorized) return signin(e.message);
      wait = 3000;
    }
    await waitOrChange(wait);
  }
}

// The rows of the list: a shard right under its parent when the parent is
// listed too, otherwise on its own.
function grouped(jobs) {
  const listed = new Set(jobs.map((j) => j.object_id));
  const shardsOf = new Map();
  const top = [];
  for (const j of jobs) {
    if (j.parent_id && listed.has(j.parent_id)) {
      if (!shardsOf.has(j.parent_id)) shardsOf.set(j.parent_id, []);
      shardsOf.get(j.parent_id).push(j);
    } else {
      top.push(j);
    }
  }
  const rows = [];
  for (const j of top) {
    const shards = (shardsOf.get(j.object_id) || []).sort((a, b) => (a.shard_index || 0) - (b.shard_index || 0));
    rows.push(row(shards.length ? fromShards(j, shards) : j, false));
    for (const s of shards) rows.push(row(s, true));
  }
  return rows;
}

// A listed parent as its listed shards show it: their summed progress, and
// RUNNING while the parent's record (aggregated when it is read on its own)
// still says it is starting.
function fromShards(parent, shards) {
  const sum = { total: 0, succeeded: 0, failed: 0 };
  for (const s of shards) {
    const c = counts(s.progress);
    sum.succeeded += c.succeeded;
    sum.failed += c.failed;
    sum.total += c.total;
  }
  if (shards.length < parent.shard_count || shards.some((s) => !counts(s.progress).total)) sum.total = 0;
  const running = !TERMINAL.has(parent.status) && shards.some((s) => s.status === "RUNNING");
  const p = counts(parent.progress).done > sum.succeeded + sum.failed ? parent.progress : sum;
  return { ...parent, progress: p, status: running ? "RUNNING" : parent.status };
}

function row(job, underParent) {
  const td = (label, ...children) => el("td", { "data-label": label }, ...children);
  const shard = job.parent_id ? `shard ${(job.shard_index || 0) + 1} of ${job.shard_count}` : "";
  const label = [job.name, shard].filter(Boolean).join(" · ");
  const jobCell = el(
    "td",
    { "data-label": "Job", class: "job-cell" },
    label ? el("span", { class: "job-name", text: label }) : null,
    idLink(job.object_id),
    job.shard_count && !job.parent_id ? el("span", { class: "muted small-text", text: ` ${job.shard_count} shards` }) : null,
  );
  const c = counts(job.progress);
  const progress = hasProgress(job)
    ? td("Progress", c.total ? progressBar(job.progress) : null, el("span", { class: "small-text", text: c.total ? ` ${c.done}/${c.total}` : `${c.done} done` }))
    : td("Progress");
  return el(
    "tr",
    {
      class: underParent ? "shard" : null,
      "data-job": job.object_id,
      // The whole row opens the job, not only its id.
      onclick: (e) => {
        if (!e.target.closest("a, button") && !getSelection().toString()) location.hash = jobHref(job.object_id);
      },
    },
    td("Status", badge(null, job.status)),
    jobCell,
    el("td", { "data-label": "Runs", class: "wide runs" }, runs(job)),
    progress,
    el("td", { "data-label": "Created", title: when(job.created_at) }, whenShort(job.created_at)),
    td("Duration", duration(job)),
  );
}

// ---- one job ----

function fact(name, value) {
  if (value === undefined || value === null || value === "") return [];
  const dd = el("dd", { "data-fact": name.toLowerCase().replace(/\s+/g, "-") });
  if (value instanceof Node) dd.append(value);
  else dd.textContent = String(value);
  return [el("dt", { text: name }), dd];
}

function renderFacts(job) {
  const cancelling = job.cancel_requested && !TERMINAL.has(job.status) ? "requested: the worker is stopping the script" : "";
  $("job-facts").replaceChildren(
    ...fact("Runs", runs(job)),
    ...fact("Mode", job.run_mode),
    ...fact("Waiting", job.status === "QUEUED" ? job.queue_reason || "for capacity" : null),
    ...fact("Priority", job.priority ? job.priority : null),
    ...fact("Shard of", job.parent_id ? idLink(job.parent_id, job.parent_id) : null),
    // A sharded job runs no attempt of its own: its shards do.
    ...fact("Attempt", job.shard_count && !job.parent_id ? null : job.attempt),
    ...fact("Shards", job.shard_count && !job.parent_id ? job.shard_count : null),
    ...fact("Created", when(job.created_at)),
    ...fact("Started", when(job.started_at)),
    ...fact("Completed", when(job.completed_at)),
    ...fact("Duration", duration(job)),
    ...fact("Updated", when(job.updated_at)),
    ...fact("Exit code", job.exit_code),
    ...fact("Task", job.fargate_task_arn),
    ...fact("Cancel", cancelling),
  );
}

// Progress as a bar and numbers, with the time left estimated from how
// fast items finished over the last half minute.
function renderProgress(job, p, samples) {
  $("progress-box").hidden = !hasProgress(job);
  if ($("progress-box").hidden) return;
  const c = counts(p);
  const bar = $("progress");
  if (c.total > 0) {
    bar.max = c.total;
    bar.value = c.done;
  } else {
    bar.removeAttribute("value");
  }
  $("progress-text").textContent = progressWords(p);
  $("progress-pct").textContent = c.total ? `${Math.floor((100 * c.done) / c.total)}%` : "";
  let eta = "";
  if (TERMINAL.has(job.status)) {
    eta = job.completed_at ? `finished in ${duration(job)}` : "";
  } else if (job.status === "RUNNING" && c.total > c.done) {
    const now = Date.now();
    const last = samples[samples.length - 1];
    const first = samples.find((s) => now - s.t <= ETA_WINDOW_MS) || last;
    let rate = 0;
    if (last && first && last.t - first.t >= 2000 && last.done > first.done) {
      rate = (last.done - first.done) / ((last.t - first.t) / 1000);
    } else if (job.started_at && c.done > 0) {
      rate = c.done / Math.max(1, (now - Date.parse(job.started_at)) / 1000);
    }
    eta = rate > 0 ? `about ${roughly((c.total - c.done) / rate)} left` : "estimating the time left…";
  }
  $("progress-eta").textContent = eta;
}

function renderAttempts(job, path) {
  const list = (job.attempts || []).slice().sort((a, b) => (a.attempt || 0) - (b.attempt || 0));
  const td = (label, ...children) => el("td", { "data-label": label }, ...children);
  const rows = list.map((a) => {
    const n = a.attempt || 0;
    return el(
      "tr",
      { "data-attempt": n },
      td("Attempt", `#${n}`),
      td("Status", badge(null, a.status)),
      td("Started", when(a.started_at)),
      td("Ended", when(a.ended_at)),
      td("Duration", between(a.started_at, a.ended_at)),
      td("Exit code", a.exit_code === undefined ? "" : String(a.exit_code)),
      el("td", { "data-label": "Error", class: "wide" }, a.error || ""),
      td(
        "Log",
        el("button", {
          type: "button",
          class: "link",
          text: `attempt ${n} log`,
          onclick: () => download(`${path}/log?attempt=${n}`, `${job.object_id}-attempt-${n}.log`),
        }),
      ),
    );
  });
  // The attempt under way has no entry until it ends.
  if (!TERMINAL.has(job.status) && job.attempt && !list.some((a) => a.attempt === job.attempt)) {
    const running = job.status === "RUNNING";
    rows.push(
      el(
        "tr",
        { "data-attempt": job.attempt, class: "current" },
        td("Attempt", `#${job.attempt}`),
        td("Status", badge(null, job.status)),
        td("Started", running ? when(job.started_at) : ""),
        td("Ended", running ? "running now" : "not started yet"),
        td("Duration", running ? duration(job) : ""),
        td("Exit code", ""),
        el("td", { "data-label": "Error", class: "wide" }, ""),
        td("Log", ""),
      ),
    );
  }
  $("attempts-body").replaceChildren(...rows);
  // One attempt says nothing the facts above do not: the history shows
  // once there is more than one.
  $("attempts-box").hidden = rows.length < 2;
}

// A sharded parent's shards (`shards: [{job_id, status, progress}]` in its
// record), each with a link.
function renderShards(job) {
  const shards = job.shard_count && !job.parent_id && Array.isArray(job.shards) ? job.shards : [];
  $("shards-box").hidden = shards.length === 0;
  const td = (label, ...children) => el("td", { "data-label": label }, ...children);
  $("shards-body").replaceChildren(
    ...shards.map((s, i) =>
      el(
        "tr",
        { "data-shard": s.job_id },
        td("Shard", el("span", { class: "job-name", text: `shard ${i + 1}` }), idLink(s.job_id)),
        td("Status", badge(null, s.status || "")),
        el(
          "td",
          { "data-label": "Progress", class: "wide" },
          progressBar(s.progress),
          el("span", { class: "small-text", text: ` ${progressWords(s.progress)}` }),
        ),
      ),
    ),
  );
}

async function renderOutputs(job, path) {
  const r = await api(`${path}/outputs`);
  const files = r.status === 200 ? r.body.files || [] : [];
  $("outputs").replaceChildren(
    ...files.map((f) => {
      const href = `${path}/outputs/${f.name.split("/").map(encodeURIComponent).join("/")}`;
      const filename = f.name.split("/").pop();
      const a = el("a", { href, download: filename, text: f.name });
      a.addEventListener("click", (e) => {
        e.preventDefault();
        download(href, filename);
      });
      return el("li", {}, a, el("span", { class: "muted small-text", text: size(f.size) }));
    }),
  );
  $("outputs-box").hidden = files.length === 0;
}

function renderJob(job) {
  document.title = `${job.status} · ${job.name || shortId(job.object_id)} · plus jobs`;
  $("job-title").textContent = job.name || shortId(job.object_id);
  $("job-title").title = job.object_id;
  $("job-id").textContent = job.object_id;
  $("job-id").title = job.object_id;
  badge($("job-status"), job.status);
  renderFacts(job);
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error || "";
  const hasResult = job.result !== undefined && job.result !== null;
  $("result-box").hidden = !hasResult;
  $("result").textContent = hasResult ? JSON.stringify(job.result, null, 2) : "";
  $("results-line").hidden = !(job.run_mode === "RUN_COLLECTION" && TERMINAL.has(job.status) && !job.shard_count);
  $("cancel").hidden = TERMINAL.has(job.status) || job.cancel_requested;
  $("retry").hidden = !(TERMINAL.has(job.status) || job.status === "INTERRUPTED");
  $("output-empty").textContent =
    job.shard_count && !job.parent_id ? "A sharded job writes no output itself: each shard has its own." : "No output yet.";
}

// Output lines, each with its time (hidden until asked for). Lines reach
// the stream in small batches, so the lines of one batch share the time it
// was written.
function appendOutput(events) {
  const out = $("output");
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  const lines = document.createDocumentFragment();
  for (const e of events) {
    if (e.kind !== "stdout" && e.kind !== "stderr" && e.kind !== "status") continue;
    const text = e.kind === "status" ? `● ${e.data}` : String(e.data).replace(/\n$/, "");
    const at = clock(e.at);
    for (const line of text.split("\n")) {
      lines.append(el("span", { class: `line ${e.kind}` }, el("span", { class: "ts", text: at }), `${line}\n`));
    }
  }
  out.append(lines);
  while (out.childNodes.length > MAX_OUTPUT_LINES) out.firstChild.remove();
  $("output-empty").hidden = out.childNodes.length > 0;
  if (atBottom) out.scrollTop = out.scrollHeight;
}

// The progress to show: the newer of the record's and the last `progress`
// event's (events arrive as the worker writes them, the record with its
// heartbeat).
function newer(recorded, live) {
  if (!live) return recorded;
  if (!recorded) return live;
  const r = counts(recorded);
  const l = counts(live);
  if (l.done < r.done) return recorded;
  return { ...recorded, ...live, total: l.total || r.total };
}

async function jobView(id) {
  const gen = ++generation;
  const path = jobPath(id);
  show("job-view");
  $("back").href = listHref();
  notice("");
  $("output").replaceChildren();
  $("output-empty").hidden = false;
  $("output-empty").textContent = "No output yet.";
  $("job-title").textContent = shortId(id);
  $("job-id").textContent = id;
  $("job-status").textContent = "";
  $("job-status").className = "badge";
  $("job-facts").replaceChildren();
  for (const box of ["progress-box", "shards-box", "attempts-box", "result-box", "results-line", "outputs-box", "job-error"]) {
    $(box).hidden = true;
  }
  $("cancel").hidden = true;
  $("retry").hidden = true;

  let after = "0";
  let job = null;
  let live = null;
  const samples = [];
  let filesFor = "";

  const guard = (action) => async (e) => {
    const b = e.currentTarget;
    b.disabled = true;
    notice("");
    try {
      await action();
    } catch (err) {
      if (err instanceof Unauthorized) signin(err.message);
      else notice(err.message);
    } finally {
      b.disabled = false;
    }
  };

  $("cancel").onclick = guard(async () => {
    const r = await api(`${path}/cancel`, { method: "POST" });
    if (r.status !== 200) return notice(r.body.message);
    job = r.body;
    renderJob(job);
  });
  $("retry").onclick = guard(async () => {
    const r = await api(`${path}/retry`, { method: "POST" });
    if (r.status !== 200 && r.status !== 201) return notice(r.body.message);
    const next = r.body.object_id || id;
    if (next !== id) location.hash = jobHref(next);
    else jobView(id);
  });
  $("download-log").onclick = guard(() => download(`${path}/log`, `${id}.log`));
  $("download-results").onclick = guard(() => download(`${path}/results`, `${id}-results.jsonl`));
  $("copy-id").onclick = async () => {
    try {
      await navigator.clipboard.writeText(id);
      $("copy-id").textContent = "Copied";
    } catch {
      // No clipboard (an insecure origin): select the id to copy by hand.
      getSelection().selectAllChildren($("job-id"));
      $("copy-id").textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => ($("copy-id").textContent = "Copy id"), 2000);
  };

  while (gen === generation) {
    const started = Date.now();
    let wait = JOB_POLL_MS;
    try {
      const ev = await api(`${path}/events?after=${after}`);
      if (gen !== generation) return;
      if (ev.status === 404) {
        $("job-error").hidden = false;
        $("job-error").textContent = ev.body.message;
        return;
      }
      if (ev.status !== 200) throw new Error(ev.body.message);
      if (ev.changed) {
        appendOutput(ev.body.events);
        // Each `after` is asked for once more at most: keep no copy of
        // the answers already shown.
        if (ev.body.next_after !== after) forget(`${path}/events?after=${after}`);
        after = ev.body.next_after;
        for (const e of ev.body.events) {
          if (e.kind !== "progress") continue;
          try {
            live = newer(live, JSON.parse(e.data));
          } catch {
            // Not a progress document: the record's counters still show.
          }
        }
      }
      const r = await api(path);
      if (gen !== generation) return;
      if (r.status !== 200) throw new Error(r.body.message);
      if (r.changed || !job) {
        job = r.body;
        renderJob(job);
        renderAttempts(job, path);
        renderShards(job);
      }
      const p = newer(job.progress, live);
      const done = counts(p).done;
      if (!samples.length || samples[samples.length - 1].done !== done) samples.push({ t: Date.now(), done });
      renderProgress(job, p, samples);
      // Files are stored as the job ends: read them once per final status.
      if (TERMINAL.has(job.status) && filesFor !== job.status) {
        filesFor = job.status;
        await renderOutputs(job, path);
      }
      // The status was read before the events: once it is final, the
      // events hold everything the job wrote.
      if (TERMINAL.has(ev.body.status) && !ev.body.more && TERMINAL.has(job.status)) return;
      if (ev.body.more) wait = 0;
      else if (job.status === "INTERRUPTED") wait = 5000;
    } catch (e) {
      if (e instanceof Unauthorized) return signin(e.message);
      wait = 3000;
    }
    await waitOrChange(Math.max(0, wait - (Date.now() - started)));
  }
}

// ---- routing ----

// `plus serve` prints `#token=...`; a job link may carry it too
// (`#/jobs/ID?token=...`). The token moves to local storage and out of the
// address bar and history; the rest of the address stays.
function takeTokenFromUrl() {
  const hash = location.hash.slice(1);
  const m = hash.match(/(^|[?&])token=([^&]*)/);
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[2]));
    const rest = hash.slice(0, m.index);
    history.replaceState(null, "", `${location.pathname}${location.search}#${rest.startsWith("/") ? rest : "/"}`);
  }
  token = localStorage.getItem(TOKEN_KEY);
}

// The list's address carries its filter (`#/?status=FAILED&q=nightly`), so a
// filtered list can be shared, reloaded and returned to.
function listHref() {
  const p = new URLSearchParams();
  if (filter.status) p.set("status", filter.status);
  if (filter.q.trim()) p.set("q", filter.q.trim());
  const query = p.toString();
  return query ? `#/?${query}` : "#/";
}

function setFilter(changes) {
  Object.assign(filter, changes);
  history.replaceState(null, "", `${location.pathname}${location.search}${listHref()}`);
  listView();
}

function route() {
  takeTokenFromUrl();
  if (!token) return signin("");
  watchChanges();
  const m = location.hash.match(/^#\/jobs\/([^?&]+)/);
  if (m) return jobView(decodeURIComponent(m[1]));
  const p = new URLSearchParams(location.hash.replace(/^#\/?\??/, ""));
  filter.status = p.get("status") || "";
  filter.q = p.get("q") || "";
  return listView();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  localStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  // A job link opened before the token was given opens now.
  route();
});

$("filters").addEventListener("submit", (e) => e.preventDefault());
$("filter-status").addEventListener("change", () => setFilter({ status: $("filter-status").value }));
let searchTimer = null;
$("filter-q").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => setFilter({ q: $("filter-q").value }), 250);
});

$("ts-toggle").checked = localStorage.getItem(TIMESTAMPS_KEY) === "1";
$("output").classList.toggle("show-ts", $("ts-toggle").checked);
$("ts-toggle").addEventListener("change", () => {
  localStorage.setItem(TIMESTAMPS_KEY, $("ts-toggle").checked ? "1" : "0");
  $("output").classList.toggle("show-ts", $("ts-toggle").checked);
});

window.addEventListener("hashchange", route);
route();
