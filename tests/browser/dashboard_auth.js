// The dashboard's sign-in against a hub started with --auth, in Debian's
// chromium through playwright-core. Run by tests/test_browser_dashboard.py:
//
//   node dashboard_auth.js HTTP_PORT TCP_PORT OUT_DIR READER FARM1 FARM2
//
// READER is a reader token scoped to farm-1/*, FARM1 and FARM2 device tokens.
// The page must ask for a token, refuse a wrong one, then with the reader's
// show farm-1 only (live and history), say that counters need an operator
// token, remember the token across a reload, and never send it off the hub.
// The last stdout line is a JSON summary; a failed check exits non-zero.
"use strict";
const fs = require("fs");
const path = require("path");
const { TIMEOUT, check, sendReadings: send, card, launch } = require("./common");

const [httpPort, tcpPort, outDir, reader, farm1, farm2] = process.argv.slice(2);
const origin = `http://127.0.0.1:${httpPort}`;

const sendReadings = (token, readings) => send(tcpPort, readings, token);

async function main() {
  const { context, profile } = await launch();
  const offsite = [];
  const withToken = [];  // how each request carried the reader's token
  await context.route("**/*", (route) => {
    const request = route.request();
    const url = request.url();
    if (url.startsWith(origin + "/") || url.startsWith("data:")) {
      const header = request.headers()["authorization"] || "";
      if (header === "Bearer " + reader) withToken.push("header " + new URL(url).pathname);
      return route.continue();
    }
    offsite.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("websocket", (ws) => {
    if (ws.url().includes("token=" + encodeURIComponent(reader))) withToken.push("socket");
  });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  const summary = {};
  try {
    // Before the readings: a farm-2 reading must never show.
    const now = Date.now();
    await sendReadings(farm1, [
      { sensor: "soilMoisture", value: 40, unit: "%", seq: 1, ts: now - 2000 },
    ]);
    await sendReadings(farm2, [{ sensor: "secretGauge", value: 7, seq: 1, ts: now - 2000 }]);

    await page.goto(origin + "/", { waitUntil: "load" });
    await page.waitForSelector("#login:not([hidden])", { timeout: TIMEOUT });
    check(!(await page.$("article.card")), "nothing shown before signing in");
    fs.mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: path.join(outDir, "dashboard-login.png"), fullPage: true });

    await page.fill("#login-token", "tantra_" + "x".repeat(64));
    await page.click("#login button[type=submit]");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"), null, { timeout: TIMEOUT });
    check(await page.isVisible("#login"), "a wrong token keeps the form");

    await page.fill("#login-token", reader);
    await page.click("#login button[type=submit]");
    await page.waitForFunction(() => document.getElementById("state").textContent === "open", null, { timeout: TIMEOUT });
    check(await page.isHidden("#login"), "the form hides once signed in");
    check(await page.isVisible("#logout"), "a sign-out button once signed in");

    const soil = card("farm-1", "soilMoisture");
    await page.waitForSelector(`${soil}[data-value="40"]`, { timeout: TIMEOUT });
    await sendReadings(farm2, [{ sensor: "secretGauge", value: 8, seq: 2, ts: Date.now() }]);
    await sendReadings(farm1, [{ sensor: "soilMoisture", value: 41, unit: "%", seq: 2, ts: Date.now() }]);
    await page.waitForSelector(`${soil}[data-value="41"]`, { timeout: TIMEOUT });
    check(!(await page.$('article.card[data-device="farm-2"]')), "a farm-2 card appeared for a farm-1 reader");
    const devices = await page.$$eval("#filter-device option", (options) => options.map((o) => o.value));
    check(!devices.includes("farm-2"), "farm-2 listed in the device filter");

    await page.waitForFunction(() => document.getElementById("history").textContent.includes("from the store"), null, { timeout: TIMEOUT });
    await page.waitForSelector("#counters-refused", { timeout: TIMEOUT });
    summary.counters = await page.textContent("#counters-refused");
    check(summary.counters.includes("operator token"), "counters say why: " + summary.counters);
    await page.screenshot({ path: path.join(outDir, "dashboard-signed-in.png"), fullPage: true });

    // The token is remembered: a reload goes straight to the readings.
    summary.stored = await page.evaluate(() => localStorage.getItem("tantra.token") !== null);
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => document.getElementById("state").textContent === "open", null, { timeout: TIMEOUT });
    check(await page.isHidden("#login"), "no form after a reload with a saved token");
    await page.waitForSelector(`${soil}[data-value="41"]`, { timeout: TIMEOUT });

    // Signing out forgets it.
    await page.click("#logout");
    await page.waitForSelector("#login:not([hidden])", { timeout: TIMEOUT });
    summary.storedAfterLogout = await page.evaluate(() => localStorage.getItem("tantra.token") !== null);

    check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
    check(offsite.length === 0, "requests left localhost: " + offsite.join(", "));
    summary.offsite = offsite;
    summary.pageErrors = pageErrors;
    summary.withToken = [...new Set(withToken)].sort();
    console.log(JSON.stringify(summary));
  } catch (error) {
    try { await page.screenshot({ path: path.join(outDir, "dashboard-auth-failure.png"), fullPage: true }); } catch (e) { /* */ }
    throw error;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
