// autobahn-js against Tantra's WAMP router, driven by tests/test_wamp_js.py.
//
// Usage: node scenario.js <ws-url> <json|msgpack|cbor>
//
// Prints one JSON object per line on stdout ({"step": ..., ...}). After
// "subscribed" the Python side sends a device reading over raw TCP; after
// "published" it checks its plain WebSocket dashboard. Exits 0 after "done";
// any failure prints {"step": "failed", ...} and exits 1.
"use strict";

const autobahn = require("autobahn");
const WebSocket = require("ws");

const [url, serializerName] = process.argv.slice(2);
const SERIALIZERS = {
  json: autobahn.serializer.JSONSerializer,
  msgpack: autobahn.serializer.MsgpackSerializer,
  cbor: autobahn.serializer.CBORSerializer,
};

function report(step, fields) {
  console.log(JSON.stringify(Object.assign({ step }, fields || {})));
}

function fail(error) {
  report("failed", { error: String((error && error.stack) || JSON.stringify(error)) });
  process.exit(1);
}

// A session on the realm; resolves with [connection, session], or with the
// onclose details when the router refuses it (ABORT).
function open(realm) {
  return new Promise((resolve) => {
    const connection = new autobahn.Connection({
      url,
      realm,
      serializers: [new SERIALIZERS[serializerName]()],
      max_retries: 0,
    });
    connection.onopen = (session) => resolve([connection, session]);
    connection.onclose = (reason, details) => {
      resolve([null, { closed: reason, reason: details && details.reason }]);
      return true; // no reconnection
    };
    connection.open();
  });
}

function waitFor(condition, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (condition()) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() - started > 5000) {
        clearInterval(poll);
        reject(new Error("timed out waiting for " + what));
      }
    }, 10);
  });
}

// Read the Python side's go-ahead lines from stdin.
const lines = [];
let stdinBuffer = "";
process.stdin.on("data", (chunk) => {
  stdinBuffer += chunk;
  let newline;
  while ((newline = stdinBuffer.indexOf("\n")) >= 0) {
    lines.push(stdinBuffer.slice(0, newline));
    stdinBuffer = stdinBuffer.slice(newline + 1);
  }
});
const goAhead = (word) => waitFor(() => lines.includes(word), "go-ahead " + word);

async function main() {
  const [connection, session] = await open("tantra");
  if (!connection) throw new Error("could not join: " + JSON.stringify(session));

  // Subscribe with every match policy; a device reading arrives over raw TCP.
  const events = [];
  const subscriptions = [
    ["exact", "tantra.reading.farm-1.soilMoisture"],
    ["prefix", "tantra.reading.farm-1"],
    ["wildcard", "tantra.reading..soilMoisture"],
  ];
  for (const [match, topic] of subscriptions) {
    await session.subscribe(
      topic,
      (args, kwargs, details) => events.push({ match, topic: details.topic, reading: args[0] }),
      { match },
    );
  }
  report("subscribed");
  await goAhead("device-sent");
  await waitFor(() => events.length >= 3, "three events");
  report("events", { events });

  // Publish a reading over WAMP: dashboards get it; a bad one is refused.
  const publication = await session.publish(
    "tantra.reading.js-1.rpm",
    [{ value: 900, unit: "rpm" }],
    {},
    { acknowledge: true },
  );
  report("published", { publication: publication.id });
  try {
    await session.publish("tantra.reading.js-1.rpm", [{ value: "fast" }], {}, { acknowledge: true });
    report("invalid_accepted");
  } catch (error) {
    report("invalid_refused", { error: error.error, detail: error.args[0] });
  }
  await goAhead("dashboard-checked");

  // A second client: retained events on a prefix subscription, tantra.latest, RPC.
  const [otherConnection, other] = await open("tantra");
  const retained = [];
  await other.subscribe(
    "tantra.reading.farm-1",
    (args, kwargs, details) => retained.push({ topic: details.topic, retained: details.retained }),
    { match: "prefix", get_retained: true },
  );
  await waitFor(() => retained.length >= 1, "retained events");
  report("retained", { retained });
  const latest = await other.call("tantra.latest", [], { device: "farm-1" });
  report("latest", { latest });

  await session.register("js.add", (args) => args[0] + args[1]);
  const sum = await other.call("js.add", [2, 3]);
  let unknown = null;
  try {
    await other.call("js.nothing");
  } catch (error) {
    unknown = error.error;
  }
  report("rpc", { sum, unknown });

  // An unknown realm is refused with ABORT.
  const [refused, details] = await open("nowhere");
  report("unknown_realm", { joined: Boolean(refused), reason: details.reason });

  // A raw WebSocket speaking wamp.2.json that sends garbage gets ABORT.
  const abort = await new Promise((resolve, reject) => {
    const socket = new WebSocket(url, ["wamp.2.json"]);
    let received = null;
    socket.on("open", () => socket.send("this is not WAMP"));
    socket.on("message", (data) => {
      received = JSON.parse(data.toString());
    });
    socket.on("close", (code) => resolve({ message: received, code }));
    socket.on("error", reject);
  });
  report("bad_message", abort);

  await new Promise((resolve) => {
    otherConnection.onclose = () => resolve();
    otherConnection.close();
  });
  await new Promise((resolve) => {
    connection.onclose = () => resolve();
    connection.close();
  });
  report("done");
  process.exit(0);
}

main().catch(fail);
