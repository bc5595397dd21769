// Alternative subscriber load generator on Node's `ws` client, speaking the
// same JSON-lines control protocol as `python -m benchmarks.load sub`
// (ready / go / finish / result). Used to compare load-generator cost
// (`python -m benchmarks --loader node`).
//
//   node sub.js --port P [--conns N] [--lat-every K] [--lat-out FILE]
'use strict';
const fs = require('fs');
const readline = require('readline');
const { WebSocket } = require('ws');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const port = Number(args.port);
const conns = Number(args.conns || 10);
const latEvery = Number(args['lat-every'] || 0);
const latOut = args['lat-out'];
const path = args.path || '/';

const nowUs = () => Number(process.hrtime.bigint() / 1000n); // CLOCK_MONOTONIC
let m0 = Infinity, m1 = Infinity;
const lat = [];
const clients = [];
let failed = 0;
const VALUE = /"value"\s*:\s*(-?\d+)/;

function open() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false });
    const c = { ws, frames: 0, inWindow: 0, k: 0, closed: false };
    ws.on('open', () => resolve(c));
    ws.on('error', () => { failed++; resolve(null); });
    ws.on('close', () => { c.closed = true; });
    ws.on('message', (data) => {
      const t = nowUs();
      c.frames++;
      if (t >= m0 && t <= m1) c.inWindow++;
      if (latEvery && ++c.k >= latEvery) {
        c.k = 0;
        const m = VALUE.exec(data.toString('latin1', 0, Math.min(data.length, 200)));
        if (m) {
          const v = Number(m[1]);
          if (v >= m0 && v <= m1) lat.push(t - v);
        }
      }
    });
  });
}

function emit(kind, body) { process.stdout.write(JSON.stringify({ [kind]: body }) + '\n'); }

async function main() {
  const started = Date.now();
  const batch = 64;
  for (let i = 0; i < conns; i += batch) {
    const got = await Promise.all(Array.from({ length: Math.min(batch, conns - i) }, open));
    for (const c of got) if (c) clients.push(c);
  }
  await new Promise((r) => setTimeout(r, 300));
  emit('ready', { connected: clients.length, failed, errors: [], connect_s: (Date.now() - started) / 1000 });
  let atGo = 0;
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    if (!line.trim()) return;
    const msg = JSON.parse(line);
    if (msg.go) {
      m0 = Math.round(msg.go.m0 * 1e6); m1 = Math.round(msg.go.m1 * 1e6);
      atGo = clients.reduce((s, c) => s + c.frames, 0);
    } else if (msg.finish) {
      const deadline = Date.now() + 1000 * (msg.finish.drain_s ?? 2);
      let last = -1;
      while (Date.now() < deadline) {
        const tot = clients.reduce((s, c) => s + c.frames, 0);
        if (tot === last) break;
        last = tot;
        await new Promise((r) => setTimeout(r, 150));
      }
      if (latOut) {
        const buf = Buffer.alloc(8 * lat.length);
        lat.forEach((v, i) => buf.writeBigInt64LE(BigInt(v), 8 * i));
        fs.writeFileSync(latOut, buf);
      }
      const per = clients.map((c) => c.inWindow);
      const total = clients.reduce((s, c) => s + c.frames, 0);
      const u = process.cpuUsage();
      emit('result', {
        conns: clients.length, in_window: per.reduce((a, b) => a + b, 0),
        per_conn_min: Math.min(...per), per_conn_max: Math.max(...per),
        frames_total: total, frames_after_go: total - atGo,
        closed_by_server: clients.filter((c) => c.closed).length, lost: 0,
        lat_samples: lat.length, stalled: [], cpu_s: (u.user + u.system) / 1e6,
      });
      for (const c of clients) c.ws.terminate();
      process.exit(0);
    }
  });
  rl.on('close', () => process.exit(0));
}
main();
