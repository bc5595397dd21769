"""End to end: the ESP8266 firmware's host build -> a real hub -> a dashboard, across a restart.

`firmware/build/tantra-device` is the ESP8266 sketch's logic (the same
TantraCore: Forwarder, Outbox, TcpLink / UdpLink) with POSIX sockets as the
network and stdin as the Mega's serial line. This test feeds it Mega-style
lines at a steady pace while a `websockets` client watches the hub as a
dashboard does. Mid-stream the hub is stopped with SIGTERM and, after an
outage during which the device keeps queueing, restarted on the same ports.

Afterwards the dashboard must have seen every seq exactly once, with the
values that were fed: nothing lost while the hub was down (the device's ring
buffer and re-send) and nothing doubled (acks flushed on a clean stop, the
hub's de-duplication).

One concession to the dashboard side: a hub's WebSocket client gets only
the *last* value per sensor for the time it was away, so a reading that
reaches the new hub before the dashboard has reconnected would never be seen
as a live frame. To test the device rather than that race, the device
process is frozen (SIGSTOP) just before the new hub starts and resumed
(SIGCONT) once the dashboard is back. The device still lives through the
whole outage (refused connections, backoff, UDP retries) before the freeze.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.hubproc import HubProcess, twistd_path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
DEVICE_BIN = FIRMWARE / "build" / "tantra-device"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


ROUNDS = 30  # three sensors per round -> 90 readings
LINE_INTERVAL_S = 0.1
RESTART_AFTER_LINES = 30
OUTAGE_S = 1.5  # hub down, device running: refused connects / unanswered datagrams
SCENARIO_TIMEOUT_S = 120


def twistd() -> str | None:
    path = twistd_path()
    return path if Path(path).exists() or shutil.which(path) else None


class Dashboard:
    """A WebSocket client that reconnects like a dashboard page would."""

    def __init__(self, url: str, device: str):
        self.url = url
        self.device = device
        self.readings: list[dict] = []
        self.frames = 0
        self.connections = 0
        self.connected = asyncio.Event()
        self.stopping = False

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        while not self.stopping:
            try:
                async with connect(self.url, open_timeout=2, ping_interval=None) as ws:
                    self.connections += 1
                    self.connected.set()
                    async for message in ws:
                        self.frames += 1
                        reading = json.loads(message)
                        if reading.get("device") == self.device:
                            self.readings.append(reading)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake):
                pass
            self.connected.clear()
            await asyncio.sleep(0.05)


def mega_lines() -> list[bytes]:
    """What a Mega prints: three sensors per round, values that change."""
    lines = []
    for i in range(ROUNDS):
        lines.append(
            json.dumps({"sensor": "soilMoisture", "value": round(40 + i * 0.5, 1), "unit": "%"})
        )
        lines.append(json.dumps({"sensor": "turbineRpm", "value": 1000 + i * 15, "unit": "rpm"}))
        lines.append(
            json.dumps({"sensor": "turbineVoltage", "value": round(12 + i * 0.01, 2), "unit": "V"})
        )
    return [line.encode() + b"\n" for line in lines]


@pytest.fixture(scope="module")
def device_binary() -> Path:
    missing = [tool for tool in ("make", "g++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the firmware host build needs: {', '.join(missing)}")
    if twistd() is None:
        pytest.skip("twistd is not installed (pip install the project)")
    pytest.importorskip("websockets", reason="the dashboard client needs the websockets library")
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE), "host"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return DEVICE_BIN


async def scenario(
    transport: str,
    device_bin: Path,
    workdir: Path,
    *,
    device_name: str | None = None,
    hub_args: tuple[str, ...] = (),
    device_args: tuple[str, ...] = (),
    dashboard_query: str = "",
    crash: bool = False,
) -> dict:
    """Feed the device, stop the hub mid-stream (SIGTERM, or SIGKILL with ``crash``), restart it.

    ``hub_args`` go to both hubs (``--auth FILE``), ``device_args`` to the
    device (``--token-file``), ``dashboard_query`` to the dashboard's URL
    (``?token=``).
    """
    device_name = device_name or f"e2e-{transport}"
    lines = mega_lines()
    hubs = [await asyncio.to_thread(HubProcess.start, workdir, *hub_args)]
    ports = hubs[0].ports
    dashboard = Dashboard(f"ws://127.0.0.1:{ports['http']}/{dashboard_query}", device_name)
    dash_task = asyncio.create_task(dashboard.run())
    device = None
    events: list[dict] = []
    outage = {"lines_fed_while_down": 0}
    try:
        await asyncio.wait_for(dashboard.connected.wait(), 10)
        device = await asyncio.create_subprocess_exec(
            str(device_bin),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports[transport]),
            "--transport",
            transport,
            "--device",
            device_name,
            "--queue",
            "64",  # the ESP8266 sketch's ring size
            # Shorter than the sketch's defaults (500 ms .. 30 s) to keep the test short.
            "--backoff-base-ms",
            "200",
            "--backoff-max-ms",
            "1000",
            "--udp-retry-base-ms",
            "200",
            "--udp-retry-max-ms",
            "1000",
            "--udp-tries",
            "30",
            "--linger-ms",
            "30000",
            *device_args,
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def read_events() -> None:
            async for raw in device.stderr:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(raw))

        events_task = asyncio.create_task(read_events())
        fed = 0
        hub_down = False
        restart_point = asyncio.Event()

        async def feed() -> None:
            nonlocal fed
            for line in lines:
                device.stdin.write(line)
                await device.stdin.drain()
                fed += 1
                if hub_down:
                    outage["lines_fed_while_down"] += 1
                if fed == RESTART_AFTER_LINES:
                    restart_point.set()
                await asyncio.sleep(LINE_INTERVAL_S)
            device.stdin.close()

        async def restart() -> None:
            nonlocal hub_down
            await restart_point.wait()
            hub_down = True
            if crash:
                outage["old_hub_exit"] = await asyncio.to_thread(_kill, hubs[-1])
            else:
                outage["old_hub_exit"] = await asyncio.to_thread(hubs[-1].stop)
            await asyncio.sleep(OUTAGE_S)
            device.send_signal(signal.SIGSTOP)
            try:
                hubs.append(
                    await asyncio.to_thread(HubProcess.start, workdir, *hub_args, ports=ports)
                )
                assert hubs[-1].ports == ports
                await asyncio.wait_for(dashboard.connected.wait(), 10)
            finally:
                device.send_signal(signal.SIGCONT)
            hub_down = False

        await asyncio.gather(feed(), restart())
        exit_code = await asyncio.wait_for(device.wait(), 60)
        await asyncio.wait_for(events_task, 5)

        stats = next(e["stats"] for e in reversed(events) if e.get("event") == "stats")
        # Give the last broadcasts a moment to reach the dashboard.
        deadline = time.monotonic() + 10
        while len(dashboard.readings) < stats["acked"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and catch any late duplicate
        start = next(e["seq_start"] for e in events if e.get("event") == "start")
        return {
            "transport": transport,
            "exit_code": exit_code,
            "seq_start": start,
            "lines": lines,
            "stats": stats,
            "events": events,
            "readings": list(dashboard.readings),
            "frames": dashboard.frames,
            "dashboard_connections": dashboard.connections,
            **outage,
        }
    finally:
        dashboard.stopping = True
        dash_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await dash_task
        if device is not None and device.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                device.send_signal(signal.SIGCONT)
                device.kill()
            await device.wait()
        for hub in hubs:
            await asyncio.to_thread(hub.stop)


def _kill(hub: HubProcess) -> int:
    """A crash: SIGKILL, nothing flushed, the replay state file left as it was."""
    hub.process.kill()
    return hub.process.wait(10)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_every_seq_seen_exactly_once_across_a_hub_restart(transport, device_binary, tmp_path):
    result = asyncio.run(
        asyncio.wait_for(scenario(transport, device_binary, tmp_path), SCENARIO_TIMEOUT_S)
    )
    assert_every_seq_seen_once(result, f"e2e-{transport}")


def assert_every_seq_seen_once(result: dict, counts_name: str) -> None:
    """The device acked all it was fed; the dashboard saw each seq once with its values.

    Writes the counts to ``firmware/build/<counts_name>.json``.
    """
    transport = result["transport"]
    stats = result["stats"]
    seen = collections.Counter(r["seq"] for r in result["readings"])
    n = len(result["lines"])
    expected = [result["seq_start"] + i for i in range(n)]
    summary = {
        "transport": transport,
        "fed": n,
        "sent": stats["sent"],
        "acknowledged": stats["acked"],
        "resent": stats["resent"],
        "seen": len(result["readings"]),
        "seen_distinct": len(seen),
        "lines_fed_while_hub_down": result["lines_fed_while_down"],
        "dashboard_connections": result["dashboard_connections"],
        "device_stats": stats,
    }
    print(json.dumps(summary))
    (FIRMWARE / "build").mkdir(exist_ok=True)
    (FIRMWARE / "build" / f"{counts_name}.json").write_text(json.dumps(summary, indent=1) + "\n")

    assert result["exit_code"] == 0, result["events"][-5:]
    assert result["old_hub_exit"] is not None
    assert result["dashboard_connections"] >= 2  # it did reconnect to the new hub
    assert result["lines_fed_while_down"] > 0  # the device really queued through an outage
    # The device: everything queued was acknowledged, nothing dropped or refused.
    assert stats["queued"] == n
    assert stats["acked"] == n
    assert stats["in_queue"] == 0
    for counter in ("bad_lines", "dropped", "rejected", "expired"):
        assert stats[counter] == 0, counter
    assert stats["sent"] == n + stats["resent"]
    if transport == "tcp":
        assert stats["disconnects"] >= 1 and stats["connects"] >= 2
    else:
        assert stats["resent"] >= 1  # the datagram in flight at the stop was retried
    # The dashboard: every seq exactly once, nothing else from this device.
    doubled = {seq: count for seq, count in seen.items() if count > 1}
    assert not doubled, f"seen more than once: {doubled}"
    assert sorted(seen) == sorted(expected), f"missing: {sorted(set(expected) - set(seen))}"
    # ... carrying the values that were fed for that seq.
    fed_by_seq = {
        seq: json.loads(line) for seq, line in zip(expected, result["lines"], strict=True)
    }
    for reading in result["readings"]:
        fed = fed_by_seq[reading["seq"]]
        assert (reading["sensor"], reading["value"], reading["unit"]) == (
            fed["sensor"],
            fed["value"],
            fed["unit"],
        )
