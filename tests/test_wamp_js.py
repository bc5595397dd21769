"""The WAMP router with autobahn-js from npm under Node (``tests/wamp_js/scenario.js``).

Needs ``node`` (20+) and ``npm ci --prefix tests/wamp_js``; skipped, saying
so, when either is missing. The scenario prints one JSON line per step; this
side answers on its stdin when it has done its part (a device reading over
raw TCP, a look at a plain WebSocket dashboard).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from test_wamp_loopback import eventually, hub, within  # noqa: F401  (hub is a fixture)
from twisted.internet import defer, error, reactor
from twisted.internet.protocol import ProcessProtocol

pytestmark = pytest.mark.integration

SCENARIO_DIR = Path(__file__).parent / "wamp_js"
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(
    NODE is None or not (SCENARIO_DIR / "node_modules" / "autobahn").is_dir(),
    reason="needs node and autobahn-js: npm ci --prefix tests/wamp_js",
)


class Scenario(ProcessProtocol):
    """The node process: its steps as they are reported, and a way to answer it."""

    def __init__(self) -> None:
        self.steps: dict[str, dict] = {}
        self._waiting: dict[str, list[defer.Deferred]] = {}
        self._buffer = b""
        self.stderr = b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            report = json.loads(line)
            name = report.pop("step")
            self.steps[name] = report
            for waiter in self._waiting.pop(name, []):
                waiter.callback(report)
            if name == "failed":
                for waiters in self._waiting.values():
                    for waiter in waiters:
                        waiter.errback(AssertionError(f"scenario failed: {report['error']}"))
                self._waiting.clear()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))

    def step(self, name: str) -> defer.Deferred:
        if name in self.steps:
            return defer.succeed(self.steps[name])
        if "failed" in self.steps:
            return defer.fail(AssertionError(f"scenario failed: {self.steps['failed']}"))
        waiter: defer.Deferred = defer.Deferred()
        self._waiting.setdefault(name, []).append(waiter)
        return within(waiter, 15)

    def say(self, word: str) -> None:
        self.transport.write(word.encode() + b"\n")


@needs_node
@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.ensureDeferred
async def test_autobahn_js(hub, serializer):  # noqa: F811  (the fixture)
    dashboard = await hub.dashboard("?device=js-1")
    scenario = Scenario()
    process = reactor.spawnProcess(
        scenario,
        NODE,
        [NODE, "scenario.js", hub.url, serializer],
        env=dict(os.environ),
        path=str(SCENARIO_DIR),
    )
    try:
        await scenario.step("subscribed")
        await hub.device_sends(
            b'{"device": "farm-1", "sensor": "soilMoisture", "value": 42, "unit": "%"}'
        )
        scenario.say("device-sent")
        events = (await scenario.step("events"))["events"]
        assert sorted(e["match"] for e in events) == ["exact", "prefix", "wildcard"]
        for event in events:
            assert event["reading"]["value"] == 42 and event["reading"]["device"] == "farm-1"
            if event["match"] != "exact":
                assert event["topic"] == "tantra.reading.farm-1.soilMoisture"

        await scenario.step("published")
        await eventually(lambda: dashboard.received)
        assert dashboard.received[0]["device"] == "js-1"
        assert dashboard.received[0]["sensor"] == "rpm" and dashboard.received[0]["value"] == 900
        refused = await scenario.step("invalid_refused")
        assert refused["error"] == "wamp.error.invalid_argument"
        assert "finite number" in refused["detail"]
        scenario.say("dashboard-checked")

        retained = (await scenario.step("retained"))["retained"]
        assert retained == [{"topic": "tantra.reading.farm-1.soilMoisture", "retained": True}]
        latest = (await scenario.step("latest"))["latest"]
        assert [r["sensor"] for r in latest] == ["soilMoisture"]
        rpc = await scenario.step("rpc")
        assert rpc == {"sum": 5, "unknown": "wamp.error.no_such_procedure"}
        realm = await scenario.step("unknown_realm")
        assert realm == {"joined": False, "reason": "wamp.error.no_such_realm"}
        bad = await scenario.step("bad_message")
        assert bad["message"][0] == 3 and bad["message"][2] == "wamp.error.protocol_violation"
        await scenario.step("done")
        assert await within(scenario.ended) == 0, scenario.stderr.decode(errors="replace")
    finally:
        if not scenario.ended.called:
            with contextlib.suppress(error.ProcessExitedAlready):
                process.signalProcess("KILL")
            await within(scenario.ended)
