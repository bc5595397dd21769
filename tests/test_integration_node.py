"""The seed's own kind of client, in its own language: Node.js with the ``ws`` package."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.clients import TcpDevice, require, unavailable

pytestmark = pytest.mark.integration

JS = Path(__file__).parent / "js"


def start_node(url: str, count: int, to_send: str = "") -> subprocess.Popen:
    node = require("node")
    if not (JS / "node_modules" / "ws").is_dir():
        unavailable("the ws npm package is not installed (npm ci --prefix tests/js)")
    process = subprocess.Popen(
        [node, str(JS / "seed_client.js"), url, str(count), "8000", to_send],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "open", process.stderr.read()
    return process


def finish(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_seed_dashboard_receives_a_tcp_reading(hub_process):
    device = f"node-{uuid.uuid4().hex[:6]}"
    # Exactly the seed README's client: no path, JSON.parse(event.data).
    client = start_node(f"ws://127.0.0.1:{hub_process.ports['http']}?device={device}", 1)
    tcp = TcpDevice(hub_process.host, hub_process.ports["tcp"])
    tcp.send(b'{"device":"%s","sensor":"soilMoisture","value":42,"unit":"%%"}\n' % device.encode())
    messages = finish(client)
    tcp.close()
    reading = messages[0]
    assert (reading["sensor"], reading["value"], reading["unit"]) == ("soilMoisture", 42, "%")
    assert "closed" in messages[-1]


def test_seed_publisher_over_websocket_is_echoed_to_itself(hub_process):
    device = f"node-{uuid.uuid4().hex[:6]}"
    reading = json.dumps({"device": device, "sensor": "turbineRpm", "value": 1200, "unit": "rpm"})
    client = start_node(hub_process.ws_url + f"?device={device}", 1, reading)
    (echo, _closed) = finish(client)
    assert echo["sensor"] == "turbineRpm" and echo["value"] == 1200 and echo["device"] == device
