// A dashboard written exactly like the Node relay's users wrote theirs:
// new WebSocket(url), JSON.parse(event.data). Prints "open", then one JSON
// line per message; sends argv[4] (if given) once open; exits after `count`
// messages, or with status 2 after `timeoutMs`.
"use strict";
const WebSocket = require("ws");

const [url, count, timeoutMs, toSend] = process.argv.slice(2);
const socket = new WebSocket(url);
let received = 0;

const timer = setTimeout(() => {
  console.error(`timeout after ${received} messages`);
  process.exit(2);
}, Number(timeoutMs || 5000));

socket.onopen = () => {
  console.log("open");
  if (toSend) socket.send(toSend);
};
socket.onmessage = (event) => {
  const parsed = JSON.parse(event.data);
  console.log(JSON.stringify(parsed));
  received += 1;
  if (received >= Number(count)) {
    clearTimeout(timer);
    socket.close();
  }
};
socket.onclose = (event) => {
  console.log(JSON.stringify({ closed: event.code }));
  clearTimeout(timer);
  process.exit(0);
};
socket.onerror = (event) => {
  console.error("error", event.message);
};
