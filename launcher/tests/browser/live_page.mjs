// Drives the live job page in headless Chromium (Debian's /usr/bin/chromium)
// the way a person uses it: open the address `plus serve` printed, see the
// job in the list, open it, watch its status reach SUCCEEDED and its output
// appear; open a long job and cancel it with the button. Saves screenshots.
//
// Run by launcher/tests/http_browser.rs with:
//   PLUS_URL          http://127.0.0.1:PORT/
//   PLUS_TOKEN        the access token
//   PLUS_JOB          a job that prints and succeeds
//   PLUS_JOB_LINES    lines its output must show (newline-separated)
//   PLUS_LONG_JOB     a job that runs until cancelled
//   SCREENSHOT_DIR    where to save the screenshots
// Exits non-zero, with the reason, on any failure.

import { mkdtempSync, rmSync } from "node:fs";
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
const shots = need("SCREENSHOT_DIR");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

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
  viewport: { width: 1200, height: 900 },
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
    if (!r.url().startsWith(url) && !r.url().startsWith("data:")) problems.push(`request to ${r.url()}`);
  });

  // 1. The address `plus serve` printed: the token moves out of the URL.
  await page.goto(`${url}#token=${token}`);
  await page.locator("#list-view").waitFor({ state: "visible", timeout: 15000 });
  assert.ok(!page.url().includes(token), `the token is still in the address bar: ${page.url()}`);
  const link = page.locator(`a[href="#/jobs/${jobId}"]`);
  await link.waitFor({ timeout: 15000 });
  const badge = page.locator("#jobs-body tr", { has: link }).locator(".badge");
  assert.match(await badge.innerText(), /^(INITIALIZING|RUNNING|SUCCEEDED)$/);
  console.error(`list shows ${jobId} as ${await badge.innerText()}`);

  // 2. One job: the status reaches SUCCEEDED and the output appears.
  await link.click();
  await page.locator("#job-view").waitFor({ state: "visible" });
  await page.waitForFunction(
    () => document.querySelector("#job-status")?.textContent === "SUCCEEDED",
    null,
    { timeout: 60000, polling: 100 },
  );
  for (const line of lines) {
    await page.locator("#output", { hasText: line }).waitFor({ timeout: 10000 });
  }
  // stderr arrives on its own pipe: it shows, but its order against the
  // stdout lines written at the same moment is not defined.
  await page.locator("#output", { hasText: "a warning" }).waitFor({ timeout: 10000 });
  const output = await page.locator("#output").innerText();
  const positions = lines.map((l) => output.indexOf(l));
  assert.deepEqual([...positions].sort((a, b) => a - b), positions, `output out of order:\n${output}`);
  assert.ok(await page.locator("#cancel").isHidden(), "a finished job shows no cancel button");
  assert.ok((await page.locator('[data-fact="completed"]').innerText()).length > 0, "completed time shown");
  assert.ok((await page.locator('[data-fact="duration"]').innerText()).endsWith("s"), "duration shown");
  await page.screenshot({ path: join(shots, "live-page-succeeded.png"), fullPage: true });
  console.error(`job ${jobId} shown SUCCEEDED with its output`);

  // 3. Back to the list: the badge there is SUCCEEDED too.
  await page.locator("a.back").click();
  await page.waitForFunction(
    (id) => {
      const a = document.querySelector(`a[href="#/jobs/${id}"]`);
      return a?.closest("tr")?.querySelector(".badge")?.textContent === "SUCCEEDED";
    },
    jobId,
    { timeout: 15000 },
  );
  await page.screenshot({ path: join(shots, "live-page-list.png"), fullPage: true });

  // 4. A running job: the cancel button stops it.
  await page.goto(`${url}#/jobs/${longJob}`);
  await page.waitForFunction(
    () => document.querySelector("#job-status")?.textContent === "RUNNING",
    null,
    { timeout: 30000, polling: 100 },
  );
  await page.locator("#output", { hasText: "started" }).waitFor({ timeout: 15000 });
  await page.locator("#cancel").click();
  await page.waitForFunction(
    () => document.querySelector("#job-status")?.textContent === "CANCELLED",
    null,
    { timeout: 30000, polling: 100 },
  );
  await page.screenshot({ path: join(shots, "live-page-cancelled.png"), fullPage: true });
  console.error(`job ${longJob} cancelled from the page`);

  // 5. A wrong token: the page asks for one instead of showing anything.
  await page.goto(`${url}#token=not-the-token`);
  await page.locator("#signin").waitFor({ state: "visible", timeout: 15000 });
  assert.ok(await page.locator("#list-view").isHidden());

  // The 401 of step 5 is logged by the browser itself; nothing else may be.
  const unexpected = problems.filter((p) => !p.includes("401"));
  assert.deepEqual(unexpected, [], "the page logged errors");
  console.error("browser test passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
