"""The real ``twistd -n tantra`` end to end: start, relay TCP and UDP to a dashboard, SIGTERM."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.clients import TcpDevice, UdpDevice, dashboard, recv_json
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration


def test_twistd_relays_tcp_and_udp_then_stops_cleanly_on_sigterm(tmp_path):
    hub = HubProcess.start(tmp_path)
    try:
        log = hub.log_text()
        assert "🚀 WebSocket server running on port %d" % hub.ports["http"] in log
        assert (
            "📡 Ready to receive ESP8266 data (TCP %d, UDP %d)"
            % (
                hub.ports["tcp"],
                hub.ports["udp"],
            )
            in log
        )

        ws = dashboard(hub.ws_url).__enter__()
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(b'{"device":"esp-1","sensor":"soilMoisture","value":41,"unit":"%","seq":1}\n')
        assert tcp.reply() == {"ack": 1}
        udp = UdpDevice(hub.host, hub.ports["udp"])
        udp.send(b'{"device":"esp-2","sensor":"turbineVoltage","value":12.6,"unit":"V","seq":1}')
        assert udp.reply() == b'{"ack":1}'
        seen = {(m["device"], m["sensor"], m["value"]) for m in (recv_json(ws), recv_json(ws))}
        assert seen == {("esp-1", "soilMoisture", 41), ("esp-2", "turbineVoltage", 12.6)}

        # A device keeps sending while the hub is told to stop.
        acked: list[int] = []
        stop_sending = threading.Event()

        def keep_sending():
            seq = 100
            try:
                while not stop_sending.is_set():
                    tcp.send(
                        b'{"device":"esp-1","sensor":"rpm","value":%d,"seq":%d}\n' % (seq, seq)
                    )
                    acked.append(tcp.reply()["ack"])
                    seq += 1
            except (ConnectionError, OSError, ValueError):
                pass  # the hub closed the connection: expected

        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        time.sleep(0.3)
        hub.process.send_signal(signal.SIGTERM)

        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(recv_json(ws, timeout=10))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        status = hub.process.wait(15)
        stop_sending.set()
        sender.join(5)
    finally:
        hub.stop()

    # twistd re-raises SIGTERM after a clean stop (or exits 0): both are clean.
    assert status in (0, -signal.SIGTERM), hub.log_text()
    log = hub.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log
    assert "Server Shut Down" in log
    delivered = {m["value"] for m in received if m.get("sensor") == "rpm"}
    assert acked, "the device got acks before the stop"
    assert set(acked) <= delivered, "every acknowledged reading reached the dashboard"
    tcp.close()
    udp.close()


def test_port_in_use_is_one_clear_line_not_a_traceback(tmp_path):
    import socket
    import subprocess

    from tests.support.hubproc import twistd_path

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    result = subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "tantra", "--http", f"tcp:{port}:interface=127.0.0.1",
         "--tcp", "none", "--udp", "none"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    taken.close()
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert f"tantra: cannot listen for http on tcp:{port}:interface=127.0.0.1" in output
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_option_is_a_usage_error(tmp_path):
    import subprocess

    from tests.support.hubproc import twistd_path

    result = subprocess.run(
        [twistd_path(), "-n", "tantra", "--udp", "99999"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--udp: 99999 is not a port number (0-65535) or none" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
