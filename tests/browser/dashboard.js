// Drives Debian's chromium (through playwright-core) against a real hub's
// dashboard. Run by tests/test_browser_dashboard.py, which owns the hub:
//
//   node dashboard.js HTTP_PORT TCP_PORT OUT_DIR
//
// The script talks to pytest in lines: it prints "RESTART" and waits for
// "STOPPED" on stdin (pytest stopped the hub), then prints "START" and waits
// for "STARTED" (the hub is back on the same ports). The last stdout line is
// a JSON summary; any failed check exits non-zero with the reason on stderr.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { TIMEOUT, check, sendReadings: send, card, launch } = require("./common");

const [httpPort, tcpPort, outDir] = process.argv.slice(2);
const origin = `http://127.0.0.1:${httpPort}`;
const lines = readline.createInterface({ input: process.stdin });
const stdinLines = lines[Symbol.asyncIterator]();

async function expectLine(word) {
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== word) throw new Error(`expected ${word} from pytest, got ${value}`);
}

const sendReadings = (readings) => send(tcpPort, readings);

async function main() {
  const { context, profile } = await launch();
  const requests = [];
  const offsite = [];
  // Every request the page makes goes through here: local ones continue,
  // anything else is refused and recorded (the page must work offline).
  await context.route("**/*", (route) => {
    const url = route.request().url();
    requests.push(url);
    if (url.startsWith(origin + "/") || url.startsWith("data:")) return route.continue();
    offsite.push(url);
    return route.abort();
  });
  context.on("websocket", (ws) => requests.push(ws.url()));
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  const summary = {};
  try {
    await page.goto(origin + "/", { waitUntil: "load" });
    await page.waitForFunction(() => document.getElementById("state").textContent === "open", null, { timeout: TIMEOUT });

    const now = Date.now();
    await sendReadings([
      { device: "farm-1", sensor: "soilMoisture", value: 40, unit: "%", seq: 1, ts: now - 2000 },
      { device: "farm-1", sensor: "soilMoisture", value: 41, unit: "%", seq: 2, ts: now - 1000 },
      { device: "farm-1", sensor: "turbineRpm", value: 1180, unit: "rpm", seq: 3, ts: now - 1000 },
      // a sensor that reported every second, but last 30 s ago: stale
      { device: "farm-2", sensor: "oldGauge", value: 7, seq: 1, ts: now - 32000 },
      { device: "farm-2", sensor: "oldGauge", value: 8, seq: 2, ts: now - 31000 },
      { device: "farm-2", sensor: "oldGauge", value: 9, seq: 3, ts: now - 30000 },
    ]);
    const soil = card("farm-1", "soilMoisture");
    await page.waitForSelector(`${soil}[data-value="41"] canvas`, { timeout: TIMEOUT });
    // Two live points, plus one from the history store when its answer came
    // first (the hub keeps history by default): count from what is there.
    const pointsBefore = Number(await page.getAttribute(soil, "data-points"));
    check(pointsBefore >= 2, `the chart has the two live points (${pointsBefore})`);
    const before = await page.$eval(`${soil} canvas`, (c) => c.toDataURL());
    await sendReadings([{ device: "farm-1", sensor: "soilMoisture", value: 42, unit: "%", seq: 4, ts: Date.now() }]);
    await page.waitForFunction(([selector, points]) => {
      const el = document.querySelector(selector);
      return el && el.dataset.value === "42" && Number(el.dataset.points) > points;
    }, [soil, pointsBefore], { timeout: TIMEOUT });
    check((await page.textContent(`${soil} .value`)) === "42", "the card shows the new value");
    check((await page.textContent(`${soil} .unit`)) === "%", "the card shows the unit");
    const after = await page.$eval(`${soil} canvas`, (c) => c.toDataURL());
    check(before !== after, "the chart was redrawn with the new point");
    await page.waitForSelector(`${card("farm-2", "oldGauge")}.stale`, { timeout: TIMEOUT });
    check(!(await page.$(`${soil}.stale`)), "a sensor that just reported is not stale");

    // counters: nested sections are tables of their own
    await page.waitForFunction(() => [...document.querySelectorAll("#counters caption")]
      .some((c) => c.textContent === "wamp"), null, { timeout: TIMEOUT });
    const acceptedRow = () => [...document.querySelectorAll("#counters table:first-child tr")]
      .filter((r) => r.cells[0].textContent === "accepted").map((r) => Number(r.cells[1].textContent))[0];
    await page.waitForFunction(`(${acceptedRow})() >= 7`, null, { timeout: TIMEOUT });
    const accepted = [await page.evaluate(acceptedRow)];
    summary.history = await page.textContent("#history");
    check(/live only|from the store/.test(summary.history), "history state shown: " + summary.history);
    fs.mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: path.join(outDir, "dashboard.png"), fullPage: true });
    summary.accepted = accepted[0];

    // filters
    await page.selectOption("#filter-device", "farm-2");
    await page.waitForFunction(() => document.querySelectorAll("article.card").length === 1, null, { timeout: TIMEOUT });
    await page.selectOption("#filter-device", "");
    await page.fill("#filter-sensor", "rpm");
    await page.waitForFunction(() => {
      const cards = document.querySelectorAll("article.card");
      return cards.length === 1 && cards[0].dataset.sensor === "turbineRpm";
    }, null, { timeout: TIMEOUT });
    await page.screenshot({ path: path.join(outDir, "dashboard-filtered.png"), fullPage: true });
    await page.fill("#filter-sensor", "");

    // the hub restarts: the page says so, reconnects, and keeps updating
    console.log("RESTART");
    await expectLine("STOPPED");
    await page.waitForFunction(() => document.getElementById("state").textContent.includes("reconnecting"), null, { timeout: TIMEOUT });
    await page.screenshot({ path: path.join(outDir, "dashboard-reconnecting.png"), fullPage: true });
    console.log("START");
    await expectLine("STARTED");
    await page.waitForFunction(() => document.getElementById("state").textContent === "open", null, { timeout: 3 * TIMEOUT });
    await sendReadings([{ device: "farm-1", sensor: "soilMoisture", value: 99, unit: "%", seq: 5, ts: Date.now() }]);
    await page.waitForSelector(`${soil}[data-value="99"]`, { timeout: TIMEOUT });
    await page.screenshot({ path: path.join(outDir, "dashboard-after-restart.png"), fullPage: true });

    check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
    check(offsite.length === 0, "requests left localhost: " + offsite.join(", "));
    summary.requests = requests.length;
    summary.offsite = offsite;
    summary.pageErrors = pageErrors;
    console.log(JSON.stringify(summary));
  } catch (error) {
    try { await page.screenshot({ path: path.join(outDir, "dashboard-failure.png"), fullPage: true }); } catch (e) { /* */ }
    throw error;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    lines.close();
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
