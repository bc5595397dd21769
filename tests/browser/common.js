// What both browser scripts share: checks, a TCP device that waits for its
// acks, the card selector, and Debian's chromium launched the way this
// machine needs it (no sandbox, no background networking, a fresh profile).
"use strict";
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const TIMEOUT = 10000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// One TCP device connection to the hub: an auth line first when a token is
// given, then the readings as lines; resolves once every seq is acked.
function sendReadings(tcpPort, readings, token = null) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: "127.0.0.1", port: Number(tcpPort) });
    const wanted = new Set(readings.map((r) => r.seq));
    const login = token === null ? "" : JSON.stringify({ auth: token }) + "\n";
    let buffer = "";
    socket.setTimeout(TIMEOUT, () => { socket.destroy(); reject(new Error("no ack in time")); });
    socket.on("error", reject);
    socket.on("connect", () => socket.write(login + readings.map((r) => JSON.stringify(r) + "\n").join("")));
    socket.on("data", (chunk) => {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const reply = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (token !== null && reply.ok === "auth") continue;
        if (!("ack" in reply)) { socket.destroy(); reject(new Error("hub said " + JSON.stringify(reply))); return; }
        wanted.delete(reply.ack);
        if (wanted.size === 0) { socket.end(); resolve(); }
      }
    });
  });
}

const card = (device, sensor) => `article.card[data-device="${device}"][data-sensor="${sensor}"]`;

// Resolves to { context, profile }: remove the profile directory when done.
async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tantra-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1200, height: 900 },
  });
  return { context, profile };
}

module.exports = { TIMEOUT, check, sendReadings, card, launch };
