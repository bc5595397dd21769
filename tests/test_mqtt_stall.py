"""A broker that misbehaves never stalls dashboards: TCP -> WebSocket p99 while it does.

paho's own ``connect`` resolves, connects and does the TLS handshake with
blocking calls (up to its timeout); the hub must never let it. Three brokers
that do not work: one accepts TCP and never says a word (plain and TLS: a
blocking handshake would hold the reactor for the whole connect timeout),
one port is closed. Each hub retries every ~1 s (``--mqtt-connect-timeout
1``) during the measurement, so every retry path runs while readings flow.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.broker import free_port
from tests.support.clients import TcpDevice, dashboard, recv_json
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

READINGS = 150
#: Far above a healthy p99 (~1-5 ms) and far below one blocked connect (1 s).
P99_LIMIT = 0.5


class SilentServer:
    """Accepts TCP connections and never reads or writes (a hung broker)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.parametrize("kind", ["silent", "silent-tls", "closed"])
def test_dashboard_latency_while_the_broker_misbehaves(tmp_path, kind):
    server = SilentServer() if kind.startswith("silent") else None
    port = server.port if server else free_port()
    scheme = "mqtts" if kind == "silent-tls" else "mqtt"
    hub = HubProcess.start(
        tmp_path, "--mqtt", f"{scheme}://127.0.0.1:{port}", "--mqtt-connect-timeout", "1"
    )
    try:
        device = TcpDevice(hub.host, hub.ports["tcp"])
        latencies = []
        with dashboard(hub.ws_url) as ws:
            for n in range(READINGS):
                started = time.monotonic()
                device.send(b'{"device":"d","sensor":"s","value":%d}\n' % n)
                assert recv_json(ws)["value"] == n
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)  # ~3 s in all: several connect attempts
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        stats = hub.stats()["mqtt"]
        assert stats["state"] in ("connecting", "reconnecting")
        assert stats["connect_failures"] >= 2, stats
        assert stats["reason"], stats
        status, ready = hub.readyz()
        assert status == 503, ready
        broker = ready["checks"]["broker"]
        assert broker["ok"] is False
        assert broker["reason"].startswith(f"broker {stats['state']}: "), broker
        assert f"127.0.0.1:{port}" in broker["reason"], broker
        assert ready["checks"]["listeners"]["ok"] is True
        assert p99 < P99_LIMIT, (p99, latencies[-5:], stats)
        if server:
            assert len(server.accepted) >= 2  # it really reached the silent broker, twice
    finally:
        hub.stop()
        if server:
            server.close()
