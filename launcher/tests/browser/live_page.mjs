// Drives the live job page in headless Chromium (Debian's /usr/bin/chromium)
// the way a person uses it, at desktop width (1280 px) and phone width
// (390 px): the list with its filter and search and shards under their
// parent; a running collection job whose progress bar and numbers keep up
// with the job; a succeeded job's output (with timestamps), files, result
// and full log; a failed job's attempts, opened from a job link before the
// token was given; a sharded parent; cancel and retry. Saves a screenshot of
// each state, and checks at phone width that nothing scrolls sideways and
// no job id wraps.
//
// Run by launcher/tests/http_browser.rs with:
//   PLUS_URL             http://127.0.0.1:PORT/
//   PLUS_TOKEN           the access token
//   PLUS_JOB             a job that prints, leaves files and a result, and succeeds
//   PLUS_JOB_LINES       lines its output must show (newline-separated)
//   PLUS_LONG_JOB        a job that runs until cancelled
//   PLUS_COLLECTION      a collection of 120 items, 2 of them failing, and
//   PLUS_PER_ITEM        a per-item script that takes a while: the test
//                        launches that job itself when it wants it running
//   PLUS_SHARDED_JOB     a collection job split into 3 shards
//   PLUS_FAILED_JOB      a job that failed on its second attempt
//   PLUS_FAILED_NAME     its name
//   PLUS_BIN, PLUS_HOME  the `plus` binary and the server's home, for two
//                        launches over PLUS_MAX_RUNNING=1 (a QUEUED job)
//   SCREENSHOT_DIR       where to save the screenshots
// Exits non-zero, with the reason, on any failure.

import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through \`cargo test --test http_browser\``);
  return v;
};
const url = need("PLUS_URL");
const token = need("PLUS_TOKEN");
const jobId = need("PLUS_JOB");
const lines = need("PLUS_JOB_LINES").split("\n");
const longJob = need("PLUS_LONG_JOB");
const collection = need("PLUS_COLLECTION");
const perItem = need("PLUS_PER_ITEM");
const shardedJob = need("PLUS_SHARDED_JOB");
const failedJob = need("PLUS_FAILED_JOB");
const failedName = need("PLUS_FAILED_NAME");
const shots = need("SCREENSHOT_DIR");
const plusBin = need("PLUS_BIN");
const plusHome = need("PLUS_HOME");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

// The API itself, to compare what the page shows with what it says.
async function apiJob(id) {
  const res = await fetch(`${url}jobs/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, `GET /jobs/${id}`);
  return res.json();
}

// Waits until `check` holds (at most `timeout` ms).
async function waitUntil(check, what, timeout = 120000) {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const profile = mkdtempSync(join(tmpdir(), "plus-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: DESKTOP,
  acceptDownloads: true,
});

const problems = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  // Only our own server is ever contacted.
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(url) && !u.startsWith("data:") && !u.startsWith("blob:")) problems.push(`request to ${u}`);
  });

  const text = (selector) => page.locator(selector).innerText();
  const status = (s, timeout = 30000) =>
    page.waitForFunction((want) => document.querySelector("#job-status")?.textContent === want, s, {
      timeout,
      polling: 100,
    });

  // At phone width nothing scrolls sideways and no visible job id breaks
  // over lines.
  async function phoneLayoutHolds(what) {
    const layout = await page.evaluate(() => {
      const doc = document.documentElement;
      const wrapped = [...document.querySelectorAll("a.id, #job-id")]
        .filter((e) => e.offsetParent !== null && e.getClientRects().length > 1)
        .map((e) => e.textContent);
      const wide = [...document.querySelectorAll("main *")]
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > doc.clientWidth + 1)
        .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
      return { scroll: doc.scrollWidth, width: doc.clientWidth, wrapped, wide: wide.slice(0, 5) };
    });
    assert.ok(layout.scroll <= layout.width, `${what}: the page scrolls sideways at 390 px (${layout.scroll} > ${layout.width}): ${layout.wide}`);
    assert.deepEqual(layout.wrapped, [], `${what}: job ids wrap at 390 px`);
    assert.deepEqual(layout.wide, [], `${what}: elements reach past the right edge at 390 px`);
  }

  // A screenshot at desktop width and, unless `desktopOnly`, one at phone
  // width after checking the phone layout.
  async function screenshots(name, desktopOnly = false) {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    if (desktopOnly) return;
    await page.setViewportSize(PHONE);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    await phoneLayoutHolds(name);
    await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
    await page.setViewportSize(DESKTOP);
  }

  // 1. The address `plus serve` printed: the token moves out of the URL,
  //    the list shows every job with what it runs, shards under their parent.
  await page.goto(`${url}#token=${token}`);
  await page.locator("#list-view").waitFor({ state: "visible", timeout: 15000 });
  assert.ok(!page.url().includes(token), `the token is still in the address bar: ${page.url()}`);
  const rowOf = (id) => page.locator(`#jobs-body tr[data-job="${id}"]`);
  await rowOf(jobId).waitFor({ timeout: 15000 });
  assert.equal(await rowOf(jobId).locator('td[data-label="Runs"]').innerText(), "script");
  assert.match(await rowOf(shardedJob).locator('td[data-label="Runs"]').innerText(), /^\S+ over alice\/collections\/cities$/);
  assert.equal(await rowOf(failedJob).locator(".job-name").innerText(), failedName);
  assert.equal(await rowOf(failedJob).locator('td[data-label="Runs"]').innerText(), "python3 script --since yesterday");
  // A long id is shortened; the full one is its title.
  const idLink = rowOf(jobId).locator("a.id");
  assert.equal(await idLink.getAttribute("title"), jobId);
  assert.ok((await idLink.innerText()).length < jobId.length, "the id is shortened in the list");
  // The shards follow their parent, in order.
  await page.waitForFunction(
    (parent) => {
      const rows = [...document.querySelectorAll("#jobs-body tr")].map((r) => r.dataset.job);
      const at = rows.indexOf(parent);
      return at >= 0 && [0, 1, 2].every((i) => rows[at + 1 + i] === `${parent}-s${i}`);
    },
    shardedJob,
    { timeout: 15000 },
  );
  assert.equal(await rowOf(`${shardedJob}-s0`).getAttribute("class"), "shard");
  console.error("list shows every job, shards under their parent");
  // The page listens to the server's stream of status changes.
  await page.waitForFunction(() => document.body.dataset.live === "stream", null, { timeout: 15000 });
  // The row follows its job to the end (about 2 s of script) without a
  // reload, and ends showing what the API says.
  await waitUntil(
    async () => (await rowOf(jobId).locator(".badge").innerText()) === "SUCCEEDED",
    `the row of ${jobId} shows SUCCEEDED`,
    30000,
  );
  assert.equal((await apiJob(jobId)).status, "SUCCEEDED");

  // The status filter and the search.
  await page.locator("#filter-status").selectOption("FAILED");
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll("#jobs-body tr")].map((r) => r.dataset.job);
    return rows.length === 1 && rows[0] === id;
  }, failedJob);
  // The filter is in the address: a reload keeps it.
  assert.equal(new URL(page.url()).hash, "#/?status=FAILED");
  await page.reload();
  assert.equal(await page.locator("#filter-status").inputValue(), "FAILED");
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll("#jobs-body tr")].map((r) => r.dataset.job);
    return rows.length === 1 && rows[0] === id;
  }, failedJob);
  await page.locator("#filter-status").selectOption("");
  await page.locator("#filter-q").fill("NIGHTLY");
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll("#jobs-body tr")].map((r) => r.dataset.job);
    return rows.length === 1 && rows[0] === id;
  }, failedJob);
  await page.locator("#filter-q").fill(jobId.slice(-6));
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll("#jobs-body tr")].map((r) => r.dataset.job);
    return rows.length === 1 && rows[0] === id;
  }, jobId);
  await page.locator("#filter-q").fill("no job is called this");
  await page.locator("#list-nomatch").waitFor({ state: "visible" });
  await page.locator("#filter-q").fill("");
  await rowOf(jobId).waitFor();
  console.error("status filter and search narrow the list");
  await screenshots("live-page-list");

  // 2. A running collection: the bar and numbers keep up with the job.
  const launched = await fetch(`${url}jobs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ collection_owner: collection, script: { source: perItem }, tolerated_failures: 5 }),
  });
  assert.equal(launched.status, 201, await launched.clone().text());
  const collectionJob = (await launched.json()).object_id;
  await page.goto(`${url}#/jobs/${collectionJob}`);
  await status("RUNNING");
  const shownDone = () =>
    page.evaluate(() => {
      const m = document.querySelector("#progress-text")?.textContent.match(/^(\d+) of (\d+) done/);
      return m ? { done: Number(m[1]), total: Number(m[2]) } : null;
    });
  await page.waitForFunction(() => /^[1-9]\d* of 120 done/.test(document.querySelector("#progress-text")?.textContent), null, {
    timeout: 30000,
    polling: 100,
  });
  for (let i = 0; i < 3; i++) {
    const job = await apiJob(collectionJob);
    const apiDone = (job.progress?.succeeded || 0) + (job.progress?.failed || 0);
    if (job.status !== "RUNNING") break;
    // Within about a second (one poll, plus slack for a busy machine) the
    // page shows at least what the API said.
    await page.waitForFunction(
      (want) => {
        const m = document.querySelector("#progress-text")?.textContent.match(/^(\d+) of/);
        return m && Number(m[1]) >= want;
      },
      apiDone,
      { timeout: 2000, polling: 50 },
    );
    const bar = await page.evaluate(() => ({ value: document.querySelector("#progress").value, max: document.querySelector("#progress").max }));
    assert.equal(bar.max, 120, "the bar is determinate, out of 120 items");
    assert.ok(bar.value >= apiDone, `the bar shows ${bar.value}, the API ${apiDone}`);
  }
  await page
    .locator("#progress-eta", { hasText: /^about .* left$/ })
    .waitFor({ timeout: 10000 })
    .catch(async (e) => {
      throw new Error(`no time left shown: "${await text("#progress-eta")}" at ${await text("#progress-text")}: ${e.message}`);
    });
  await page.locator("#progress-text", { hasText: ", 2 failed" }).waitFor({ timeout: 30000 });
  const mid = await shownDone();
  assert.ok(mid && mid.total === 120, `progress reads ${JSON.stringify(mid)}`);
  assert.ok(await page.locator("#cancel").isVisible(), "a running job can be cancelled");
  await screenshots("live-page-running");
  console.error(`running collection shows ${await text("#progress-text")}, ${await text("#progress-eta")}`);
  await status("SUCCEEDED", 90000);
  await page.locator("#progress-text", { hasText: "120 of 120 done, 2 failed" }).waitFor({ timeout: 5000 });
  assert.equal(await text("#progress-pct"), "100%");
  // Its per-item results: one line per item.
  const [resultsDownload] = await Promise.all([page.waitForEvent("download"), page.locator("#download-results").click()]);
  assert.equal(resultsDownload.suggestedFilename(), `${collectionJob}-results.jsonl`);
  const resultLines = readFileSync(await resultsDownload.path(), "utf8").trim().split("\n");
  assert.equal(resultLines.length, 120, "one result line per item");
  for (const l of resultLines) JSON.parse(l);

  // 3. A succeeded job, opened from the list: output in order (with
  //    timestamps on request), files, result, full log.
  await page.goto(`${url}#/`);
  // Anywhere on its row opens a job.
  await rowOf(jobId).locator('td[data-label="Runs"]').click();
  await page.locator("#job-view").waitFor({ state: "visible" });
  await status("SUCCEEDED", 60000);
  for (const line of lines) {
    await page.locator("#output", { hasText: line }).waitFor({ timeout: 10000 });
  }
  // stderr arrives on its own pipe: it shows, but its order against the
  // stdout lines written at the same moment is not defined.
  await page.locator("#output .stderr", { hasText: "a warning" }).waitFor({ timeout: 10000 });
  const output = await text("#output");
  const positions = lines.map((l) => output.indexOf(l));
  assert.deepEqual([...positions].sort((a, b) => a - b), positions, `output out of order:\n${output}`);
  assert.ok(!/\d\d:\d\d:\d\d\.\d{3}/.test(output), "no timestamps until asked for");
  // Output is text, never markup.
  assert.ok(output.includes("<img src=x onerror=alert(1)> stays text"), output);
  assert.equal(await page.locator("#output img").count(), 0, "no element made from output");
  await page.locator("#ts-toggle").check();
  const stamp = page.locator("#output .line", { hasText: "step 1 of 5" }).locator(".ts");
  assert.ok(await stamp.isVisible(), "each line shows its time");
  assert.match(await stamp.innerText(), /^\d\d:\d\d:\d\d\.\d{3}$/);
  assert.ok(await page.locator("#cancel").isHidden(), "a finished job shows no cancel button");
  assert.ok(await page.locator("#attempts-box").isHidden(), "one attempt needs no history table");
  assert.ok(await page.locator("#retry").isVisible(), "a finished job can be retried");
  assert.ok((await text('[data-fact="completed"]')).length > 0, "completed time shown");
  assert.ok((await text('[data-fact="duration"]')).endsWith("s"), "duration shown");
  assert.deepEqual(JSON.parse(await text("#result")), { steps: 5, cities: ["Oslo", "Lima"] });
  const files = page.locator("#outputs a");
  await files.first().waitFor({ timeout: 10000 });
  assert.deepEqual((await files.allInnerTexts()).sort(), ["charts/summary.txt", "report.csv"]);
  const downloaded = async (click) => {
    const [d] = await Promise.all([page.waitForEvent("download"), click()]);
    return { name: d.suggestedFilename(), body: readFileSync(await d.path(), "utf8") };
  };
  const report = await downloaded(() => page.locator("#outputs a", { hasText: "report.csv" }).click());
  assert.deepEqual(report, { name: "report.csv", body: "city,visits\nOslo,3\nLima,5\n" });
  const log = await downloaded(() => page.locator("#download-log").click());
  assert.equal(log.name, `${jobId}.log`);
  for (const line of lines) assert.ok(log.body.includes(line), `the full log holds ${line}:\n${log.body}`);
  // The full id is one click from the clipboard.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  await page.locator("#copy-id").click();
  await page.locator("#copy-id", { hasText: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), jobId);
  await page.locator("#copy-id", { hasText: "Copy id" }).waitFor();
  await screenshots("live-page-succeeded");
  // With a dark system setting the page is dark too.
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  assert.equal(dark, "rgb(15, 17, 21)", "a dark background");
  await page.screenshot({ path: join(shots, "live-page-succeeded-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
  await page.locator("#ts-toggle").uncheck();
  console.error(`job ${jobId} shown SUCCEEDED with its output, files, result and log`);

  // 4. A job link opened before the token is given: the page asks for the
  //    token, then opens that job. It failed on its second attempt.
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${url}#/jobs/${failedJob}`);
  await page.reload();
  await page.locator("#signin").waitFor({ state: "visible", timeout: 15000 });
  assert.match(await text("#signin-next"), new RegExp(failedJob));
  await page.locator("#token-input").fill(token);
  await page.locator("#token-form button").click();
  await page.locator("#job-view").waitFor({ state: "visible", timeout: 15000 });
  await status("FAILED");
  assert.ok(page.url().endsWith(`#/jobs/${failedJob}`), page.url());
  assert.equal(await text("#job-title"), failedName);
  assert.equal(await text("#job-id"), failedJob);
  const attempts = page.locator("#attempts-body tr");
  assert.equal(await attempts.count(), 2, "two attempt rows");
  assert.equal(await attempts.nth(0).locator('[data-label="Attempt"]').innerText(), "#1");
  assert.equal(await attempts.nth(0).locator(".badge").innerText(), "INTERRUPTED");
  assert.match(await attempts.nth(0).locator('[data-label="Error"]').innerText(), /Spot interruption/);
  assert.equal(await attempts.nth(1).locator(".badge").innerText(), "FAILED");
  assert.equal(await attempts.nth(1).locator('[data-label="Exit code"]').innerText(), "1");
  assert.match(await attempts.nth(1).locator('[data-label="Duration"]').innerText(), /^31\.\d s$/);
  await page.locator("#output", { hasText: "resuming at row 1,000" }).waitFor();
  assert.match(await text("#job-error"), /exited with code 1/);
  const firstLog = await downloaded(() => attempts.nth(0).locator("button").click());
  assert.equal(firstLog.name, `${failedJob}-attempt-1.log`);
  assert.match(firstLog.body, /row 1,000 written/);
  await screenshots("live-page-failed");
  console.error(`job ${failedJob} shown FAILED with its two attempts`);

  // 5. A sharded parent: each shard's status and progress, with links.
  await page.goto(`${url}#/jobs/${shardedJob}`);
  await status("SUCCEEDED", 60000);
  await page.locator("#progress-text", { hasText: "30 of 30 done" }).waitFor({ timeout: 10000 });
  const shardRows = page.locator("#shards-body tr");
  assert.equal(await shardRows.count(), 3, "three shard rows");
  let itemsInShards = 0;
  for (let i = 0; i < 3; i++) {
    const r = shardRows.nth(i);
    assert.equal(await r.locator("a.id").getAttribute("href"), `#/jobs/${shardedJob}-s${i}`);
    assert.equal(await r.locator(".badge").innerText(), "SUCCEEDED");
    const m = (await r.locator('[data-label="Progress"]').innerText()).match(/(\d+) of (\d+) done/);
    assert.ok(m && m[1] === m[2], `shard ${i} progress: ${m}`);
    itemsInShards += Number(m[2]);
  }
  assert.equal(itemsInShards, 30, "the shards split the 30 items");
  await screenshots("live-page-sharded");
  await shardRows.nth(1).locator("a.id").click();
  await page.locator('[data-fact="shard-of"] a', { hasText: shardedJob }).waitFor();
  console.error(`job ${shardedJob} shows its 3 shards`);

  // 6. A running job, from a link that carries the token: the token leaves
  //    the address, the job stays. The cancel button stops it; retry runs
  //    it again.
  await page.goto(`${url}#/jobs/${longJob}?token=${token}`);
  await page.waitForFunction((id) => location.hash === `#/jobs/${id}`, longJob);
  await status("RUNNING");
  await page.locator("#output", { hasText: "started" }).waitFor({ timeout: 15000 });
  await page.locator("#cancel").click();
  await status("CANCELLED");
  await screenshots("live-page-cancelled", true);
  console.error(`job ${longJob} cancelled from the page`);
  await page.locator("#retry").click();
  await page.waitForFunction((id) => !location.hash.endsWith(id), longJob, { timeout: 15000 });
  await page.locator("#output", { hasText: "started" }).waitFor({ timeout: 30000 });
  await status("RUNNING");
  await page.locator("#cancel").click();
  await status("CANCELLED");
  console.error("retry ran the job again as a new one");

  // 7. A job that waits: once nothing else runs, two launches with
  //    PLUS_MAX_RUNNING=1, the first held by a gate file. The second is
  //    QUEUED with its reason; opening the gate ends the first, whose end
  //    starts the second, and the page follows it to SUCCEEDED.
  await waitUntil(async () => {
    const res = await fetch(`${url}jobs?page_size=100`, { headers: { Authorization: `Bearer ${token}` } });
    const jobs = (await res.json()).jobs || [];
    return jobs.every((j) => ["SUCCEEDED", "FAILED", "CANCELLED"].includes(j.status));
  }, "every earlier job ended");
  const work = mkdtempSync(join(tmpdir(), "plus-queue-"));
  // A root worker runs scripts as another user: the gate must be visible to it.
  chmodSync(work, 0o755);
  const gate = join(work, "gate");
  writeFileSync(join(work, "hold.sh"), `while [ ! -e '${gate}' ]; do sleep 0.05; done\necho released\n`);
  writeFileSync(join(work, "later.sh"), "echo my turn\n");
  const launch = (script) =>
    JSON.parse(
      execFileSync(plusBin, ["--json", "launch", join(work, script)], {
        env: { ...process.env, PLUS_HOME: plusHome, PLUS_USER: "alice", PLUS_BACKEND: "local", PLUS_MAX_RUNNING: "1" },
      }),
    ).job_id;
  const holder = launch("hold.sh");
  const later = launch("later.sh");
  await page.goto(`${url}#/`);
  await rowOf(later).locator(".badge", { hasText: "QUEUED" }).waitFor({ timeout: 15000 });
  await page.goto(`${url}#/jobs/${later}`);
  await status("QUEUED");
  assert.equal(
    await page.locator('[data-fact="waiting"]').innerText(),
    "1 of 1 workers running on this machine (PLUS_MAX_RUNNING); next in line",
  );
  await screenshots("live-page-queued");
  writeFileSync(gate, "");
  await status("SUCCEEDED", 30000);
  await page.locator("#output", { hasText: "my turn" }).waitFor({ timeout: 15000 });
  assert.equal((await apiJob(holder)).status, "SUCCEEDED");
  rmSync(work, { recursive: true, force: true });
  console.error(`job ${later} waited QUEUED, then ran when ${holder} ended`);

  // 8. A job that does not exist (or is someone else's): the page says so
  //    and offers nothing to press. The browser logs the 404 itself.
  const logged = problems.length;
  await page.goto(`${url}#/jobs/no-such-job`);
  await page.locator("#job-error", { hasText: /not found/i }).waitFor({ timeout: 15000 });
  assert.ok(await page.locator("#cancel").isHidden(), "no cancel button for a missing job");
  assert.ok(await page.locator("#retry").isHidden(), "no retry button for a missing job");
  problems.push(...problems.splice(logged).filter((p) => !p.includes("404")));

  // 9. A wrong token: the page asks for one instead of showing anything.
  await page.goto(`${url}#token=not-the-token`);
  await page.locator("#signin").waitFor({ state: "visible", timeout: 15000 });
  assert.ok(await page.locator("#list-view").isHidden());

  // The 401 of step 9 is logged by the browser itself; nothing else may be.
  const unexpected = problems.filter((p) => !p.includes("401"));
  assert.deepEqual(unexpected, [], "the page logged errors");
  console.error("browser test passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
