"""One dashboard stops reading while a device floods the hub: memory stays bounded.

The stalled client is a raw socket that completes the WebSocket handshake and
then never reads, with a tiny receive buffer so the hub feels it at once. A
second dashboard (the ``websockets`` library) keeps reading. We measure the
hub's RSS from /proc before and after; the figures are printed for the notes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import pytest

from tests.support.clients import TcpDevice, dashboard
from tests.support.hubproc import HubProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READINGS = 100_000
PER_LINE = 100
SENSORS = 1000
FLOOD = "flood-" + "x" * 58  # long names make each frame ~170 bytes
# Without the bound, the stalled client alone would hold READINGS frames
# (~17 MB of JSON here) in the hub; with it, a transport buffer and one
# reading per sensor. Interpreter arenas add some noise, hence the margin.
MAX_GROWTH_KIB = 8 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # --store none: this measures the dashboard bound; the history queue has its own
    hub = HubProcess.start(
        tmp_path_factory.mktemp("stall"), "--stall-timeout", "3", "--store", "none"
    )
    yield hub
    hub.stop()


def stalled_client(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), key)
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: read nothing past the handshake
    assert response.startswith(b"HTTP/1.1 101")
    return sock


class Reader(threading.Thread):
    """A dashboard that keeps reading until it sees the end marker."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.ws = dashboard(url).__enter__()
        self.values: list[int] = []
        self.finished = threading.Event()

    def run(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("sensor") == "end":
                self.finished.set()
                return
            if message.get("device") == FLOOD:
                self.values.append(message["value"])


def test_stalled_dashboard_is_conflated_then_closed_and_memory_stays_bounded(hub):
    stalled = stalled_client(hub.host, hub.ports["http"])
    reader = Reader(hub.ws_url + f"?device={FLOOD}&device=marker")
    reader.start()
    time.sleep(0.3)
    rss_before = hub.rss_kib()

    device = TcpDevice(hub.host, hub.ports["tcp"])
    for start in range(0, READINGS, PER_LINE):
        batch = [
            {"device": FLOOD, "sensor": f"s{n % SENSORS}", "value": n, "unit": "rpm"}
            for n in range(start, start + PER_LINE)
        ]
        device.send(json.dumps(batch).encode() + b"\n")
    device.send(b'{"device":"marker","sensor":"end","value":1}\n')
    assert reader.finished.wait(60), "the reading dashboard kept receiving to the end"
    rss_after = hub.rss_kib()

    stats = hub.stats()
    print(
        f"\nstalled-client test: RSS before {rss_before} KiB, after {READINGS} readings "
        f"{rss_after} KiB (+{rss_after - rss_before} KiB); reader got {len(reader.values)} "
        f"readings; conflated {stats['conflated']}"
    )
    assert rss_after - rss_before < MAX_GROWTH_KIB
    assert stats["conflated"] > 0
    assert reader.values == sorted(reader.values), "what the reader got came in order"
    assert len(reader.values) >= SENSORS

    # Stalled past --stall-timeout (3 s): a 4001 close frame, and one second
    # later (no close reply can come) the connection is dropped.
    deadline = time.monotonic() + 15
    while hub.stats()["dashboards"] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = hub.stats()
    assert stats["clients_dropped"].get("stalled") == 1
    assert stats["dashboards"] == 1, "only the stalled one was closed"
    reader.ws.close()
    device.close()
    stalled.close()
