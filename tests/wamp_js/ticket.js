// autobahn-js WAMP-Ticket against a hub started with --auth (tests/test_security_wamp_js.py).
//
// Usage: node ticket.js <ws-url> <reader-token>
// Prints one JSON line: how anonymous, a wrong ticket and the reader's ticket fared.
"use strict";

const autobahn = require("autobahn");

const [url, ticket] = process.argv.slice(2);

function join(options) {
  return new Promise((resolve) => {
    const connection = new autobahn.Connection(
      Object.assign({ url, realm: "tantra", max_retries: 0 }, options)
    );
    connection.onopen = (session, details) => resolve({ connection, session, details });
    connection.onclose = (reason, details) => {
      resolve({ refused: details && details.reason });
      return true;
    };
    connection.open();
  });
}

(async () => {
  const result = {};
  result.anonymous = (await join({})).refused;
  const wrong = await join({
    authmethods: ["ticket"],
    authid: "x",
    onchallenge: () => "tantra_wrong",
  });
  result.wrong = wrong.refused;
  const good = await join({
    authmethods: ["ticket"],
    authid: "x",
    onchallenge: (session, method) => (method === "ticket" ? ticket : ""),
  });
  result.authrole = good.details.authrole;
  result.authid = good.details.authid;
  result.latest = (await good.session.call("tantra.latest")).map((r) => r.device);
  try {
    await good.session.subscribe("tantra.reading.", () => {}, { match: "prefix" });
    result.wide = "allowed";
  } catch (error) {
    result.wide = error.error;
  }
  good.connection.close();
  console.log(JSON.stringify(result));
  process.exit(0);
})().catch((error) => {
  console.log(JSON.stringify({ failed: String(error && error.stack) }));
  process.exit(1);
});
