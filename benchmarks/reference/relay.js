// Reference relay: the seed's behaviour (Node.js + ws), used only as the
// benchmark baseline. Clients live in a Set; every message received from any
// client is forwarded unchanged to every connected client, the sender
// included. No validation, no buffering limits.
//
//   node relay.js [PORT] [HOST]      (or PORT / HOST in the environment)
//
// Port 0 picks a free port; the actual one is printed as
// "ws listening on HOST:PORT".
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
const host = process.argv[3] ?? process.env.HOST ?? '127.0.0.1';

const wss = new WebSocketServer({ port, host });
const clients = new Set();

wss.on('listening', () => {
  const addr = wss.address();
  console.log(`ws listening on ${addr.address}:${addr.port}`);
});

wss.on('connection', (ws) => {
  clients.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const client of clients) {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
  ws.on('close', () => clients.delete(ws));
  ws.on('error', () => clients.delete(ws));
});

function stop() {
  for (const client of clients) client.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
