"""``twistd -n tantra --auth FILE`` end to end: real sockets, real restarts, logs read back."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.error
import urllib.request

import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from tantra.cli import main as cli_main
from tantra.security import signing
from tests.support.clients import TcpDevice, UdpDevice, drain, recv_json
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration


def add_token(capsys, path, *args) -> str:
    assert cli_main(["token", "add", "--auth", str(path), *args]) == 0
    return json.loads(capsys.readouterr().out)["token"]


def signed(token: str, seq: int, value: float = 1) -> bytes:
    payload = json.dumps({"device": "pump", "sensor": "flow", "value": value, "seq": seq})
    return signing.sign(payload.encode(), token)


def test_tokens_never_reach_the_log_and_refusals_are_counted(tmp_path, capsys):
    auth = tmp_path / "auth.json"
    device = add_token(capsys, auth, "--kind", "device", "pump")
    reader = add_token(capsys, auth, "--kind", "reader", "--scope", "pump/*", "ro")
    admin = add_token(capsys, auth, "--kind", "admin", "ops")
    hub = HubProcess.start(tmp_path, "--auth", str(auth))
    try:
        base = f"127.0.0.1:{hub.ports['http']}"
        with websockets.sync.client.connect(f"ws://{base}/?token={reader}") as ws:
            tcp = TcpDevice(hub.host, hub.ports["tcp"])
            tcp.send(json.dumps({"auth": device}).encode() + b"\n")
            assert tcp.reply() == {"ok": "auth", "device": "pump"}
            tcp.send(b'{"sensor":"flow","value":3,"seq":1}\n')
            assert tcp.reply() == {"ack": 1}
            assert recv_json(ws)["value"] == 3
            tcp.close()
        wrong = "tantra_" + "x" * 64
        with pytest.raises(InvalidStatus) as refused:
            websockets.sync.client.connect(f"ws://{base}/?token={wrong}")
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            websockets.sync.client.connect(
                f"ws://{base}/", additional_headers={"Authorization": f"Bearer {wrong}"}
            )
        # Plain HTTP requests with a token (the access log's path).
        for path in (
            f"/?token={reader}",
            f"/stats?token={device}",
            f"/nothing?token={wrong}",
            f"/api/v1/sensors?token={reader}",
        ):
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://{base}{path}", timeout=5).read()
        bad_tcp = TcpDevice(hub.host, hub.ports["tcp"])
        bad_tcp.send(json.dumps({"auth": wrong}).encode() + b"\n")
        assert bad_tcp.reply()["error"] == "unauthorized"
        assert bad_tcp.is_closed_by_peer()
        stats = hub.stats(admin)["auth"]
        assert stats["refused"] == {
            "websocket:bad_token": 2,
            "tcp:bad_token": 1,
            "http:wrong_kind": 1,
        }
        assert stats["logins"] == {"websocket": 1, "tcp": 1, "http": 3}
    finally:
        hub.stop()
    log = hub.log_text()
    assert '"GET /?token=REDACTED HTTP/1.1" 200' in log
    assert '"GET /stats HTTP/1.1" 403' in log, "a guarded path's token is taken out of the URI"
    for secret in (device, reader, wrong):
        assert secret not in log
        assert secret[20:40] not in log


def stored_seqs(hub: HubProcess, token: str) -> list[int]:
    """The seqs of pump's readings in the history store (the history API)."""
    base = f"http://127.0.0.1:{hub.ports['http']}"
    code, body = http_get(f"{base}/api/v1/readings?device=pump", token)
    assert code == 200, body
    return [r["seq"] for r in json.loads(body)["readings"]]


@pytest.mark.parametrize("store", ["sqlite:h.sqlite3", "none"])
def test_udp_replay_refused_across_clean_and_crashed_restarts(tmp_path, capsys, store):
    """A captured datagram is never accepted again, across a SIGTERM and a kill -9.

    With a store the new hub knows what was stored (its de-dup window is
    rebuilt from the store), so a re-send of a stored reading (a device whose
    ack was lost in the stop) is acked as a duplicate: neither stored nor
    broadcast again. A seq under the floor that was never stored, or any
    under it without a store, is ``replayed``. After the crash the floor is the
    store's replay mark, committed with the readings (exact); without a store,
    the state file's mark + 2^20.
    """
    auth = tmp_path / "auth.json"
    token = add_token(capsys, auth, "--kind", "device", "pump")
    admin = add_token(capsys, auth, "--kind", "admin", "ops")
    args = ("--auth", str(auth), "--store", store)
    hub = HubProcess.start(tmp_path, *args)
    ports = hub.ports
    captured = signed(token, seq=7)
    try:
        udp = UdpDevice(hub.host, ports["udp"])
        udp.send(captured)
        assert json.loads(udp.reply()) == {"ack": 7}
        udp.send(signed("tantra_" + "y" * 64, seq=8))  # forged: never answered
        assert udp.no_reply()
        udp.send(captured[:-70])  # unsigned
        assert udp.no_reply()
        auth_stats = hub.stats(admin)["auth"]
        assert (auth_stats["udp_bad_signature"], auth_stats["udp_unsigned"]) == (1, 1)
    finally:
        assert hub.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM, 1)
    state = json.loads((tmp_path / "tantra-replay.json").read_text())
    assert state == {"version": 1, "clean": True, "devices": {"pump": 7}}
    with_store = store != "none"

    hub = HubProcess.start(tmp_path, *args, ports=ports)
    try:
        udp = UdpDevice(hub.host, ports["udp"])
        with websockets.sync.client.connect(f"ws://127.0.0.1:{ports['http']}/?token={admin}") as ws:
            udp.send(captured)
            if with_store:
                assert json.loads(udp.reply()) == {"ack": 7}, "stored before: a duplicate"
            else:
                assert json.loads(udp.reply())["error"] == "replayed"
            udp.send(signed(token, seq=6))  # under the floor, never stored
            assert json.loads(udp.reply())["error"] == "replayed"
            udp.send(signed(token, seq=8, value=8))
            assert json.loads(udp.reply()) == {"ack": 8}
            live = [m for m in drain(ws) if "seq" in m]
        assert [(m["seq"], m["value"]) for m in live] == [(8, 8)], "seq 7 not broadcast again"
        stats = hub.stats(admin)
        assert (stats["accepted"], stats["duplicates"]) == ((1, 1) if with_store else (1, 0))
        assert (stats["auth"]["replayed"], stats["auth"]["replayed_acked"]) == (
            (1, 1) if with_store else (2, 0)
        )
        if with_store:
            assert stored_seqs(hub, admin) == [7, 8], "seq 7 stored once"
        time.sleep(1.5)  # the state file's timer writes seq 8
        hub.process.kill()  # a crash: no clean stop
        hub.process.wait(10)
    finally:
        hub.stop()

    hub = HubProcess.start(tmp_path, *args, ports=ports)
    try:
        udp = UdpDevice(hub.host, ports["udp"])
        udp.send(signed(token, seq=6, value=2))  # never stored, under every floor
        assert json.loads(udp.reply())["error"] == "replayed"
        for seq in (7, 8, 9, 1000):
            udp.send(signed(token, seq=seq, value=2))
            reply = json.loads(udp.reply())
            if with_store:
                # 7 and 8 were stored: duplicates. The floor is the mark committed
                # with them (8), exact even after a crash: 9 and 1000 are new.
                assert reply == {"ack": seq}, seq
            else:  # the file's floor after a crash: its mark + 2^20
                assert reply["error"] == "replayed", seq
        udp.send(signed(token, seq=(1 << 32) + 1))  # the device's next boot epoch
        reply = json.loads(udp.reply())
        if reply.get("error") == "retry":  # ahead of the file: written now, then accepted
            time.sleep(0.5)
            udp.send(signed(token, seq=(1 << 32) + 1))
            reply = json.loads(udp.reply())
        assert reply == {"ack": (1 << 32) + 1}
        if with_store:
            assert stored_seqs(hub, admin) == [7, 8, 9, 1000, (1 << 32) + 1], "none twice"
    finally:
        hub.stop()


def test_revoking_closes_connections_within_a_second_and_new_tokens_work(tmp_path, capsys):
    auth = tmp_path / "auth.json"
    token = add_token(capsys, auth, "--kind", "device", "pump")
    admin = add_token(capsys, auth, "--kind", "admin", "ops")
    hub = HubProcess.start(tmp_path, "--auth", str(auth))
    try:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(json.dumps({"auth": token}).encode() + b"\n")
        assert tcp.reply()["ok"] == "auth"
        fresh = add_token(capsys, auth, "--kind", "device", "--device", "pump", "pump-2")
        assert cli_main(["token", "revoke", "--auth", str(auth), "pump"]) == 0
        started = time.monotonic()
        assert tcp.reply() == {"error": "unauthorized", "detail": "token revoked"}
        assert tcp.is_closed_by_peer()
        assert time.monotonic() - started < 2.0
        again = TcpDevice(hub.host, hub.ports["tcp"])
        again.send(json.dumps({"auth": fresh}).encode() + b"\n")
        assert again.reply() == {"ok": "auth", "device": "pump"}
        assert hub.stats(admin)["auth"]["revoked_closed"] == 1
    finally:
        hub.stop()


def test_connections_per_address_are_limited_across_tcp_http_and_websocket(tmp_path):
    hub = HubProcess.start(tmp_path, "--max-connections-per-address", "2")
    try:
        first, second = (TcpDevice(hub.host, hub.ports["tcp"]) for _ in range(2))
        first.send(b'{"sensor":"t","value":1,"seq":1}\n')
        assert first.reply() == {"ack": 1}
        third = TcpDevice(hub.host, hub.ports["tcp"])
        assert third.is_closed_by_peer()
        with pytest.raises((InvalidStatus, OSError, EOFError, Exception)):
            websockets.sync.client.connect(hub.ws_url, open_timeout=5)
        second.close()
        time.sleep(0.2)
        with websockets.sync.client.connect(hub.ws_url) as ws:  # the freed slot, via HTTP
            assert recv_json(ws)["sensor"] == "t"
            refused = TcpDevice(hub.host, hub.ports["tcp"])
            assert refused.is_closed_by_peer()
        # The WebSocket's close releases its slot (once the hub sees the TCP close).
        deadline = time.monotonic() + 5
        while True:
            again = TcpDevice(hub.host, hub.ports["tcp"])
            try:
                again.send(b'{"sensor":"t","value":2,"seq":2}\n')
                assert again.reply() == {"ack": 2}
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the WebSocket's slot was never released"
                time.sleep(0.1)
        first.send(b'{"sensor":"t","value":3,"seq":3}\n')
        assert first.reply() == {"ack": 3}
        again.close()
        time.sleep(0.3)  # the hub sees the close
        # A WAMP WebSocket holds a slot too, and gives it back when it closes.
        wamp_url = f"ws://127.0.0.1:{hub.ports['http']}/wamp"
        with websockets.sync.client.connect(wamp_url, subprotocols=["wamp.2.json"]):
            crowded = TcpDevice(hub.host, hub.ports["tcp"])
            assert crowded.is_closed_by_peer()
        first.close()
        time.sleep(0.3)  # /stats is a connection too
        assert hub.stats()["auth"]["connections_refused"] >= 3
    finally:
        hub.stop()


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_history_api_metrics_and_probes_under_auth(tmp_path, capsys):
    auth = tmp_path / "auth.json"
    pump = add_token(capsys, auth, "--kind", "device", "pump")
    fan = add_token(capsys, auth, "--kind", "device", "fan")
    reader = add_token(capsys, auth, "--kind", "reader", "--scope", "pump/*", "ro")
    prometheus = add_token(capsys, auth, "--kind", "reader", "--scope", "*", "prometheus")
    hub = HubProcess.start(tmp_path, "--auth", str(auth))
    try:
        for token, seq in ((pump, 1), (fan, 2)):
            tcp = TcpDevice(hub.host, hub.ports["tcp"])
            tcp.send(json.dumps({"auth": token}).encode() + b"\n")
            assert tcp.reply()["ok"] == "auth"
            tcp.send(b'{"sensor":"flow","value":3,"seq":%d}\n' % seq)
            assert tcp.reply() == {"ack": seq}, "acked once stored"
            tcp.close()
        base = f"http://127.0.0.1:{hub.ports['http']}"
        code, body = http_get(f"{base}/api/v1/readings")
        assert (code, json.loads(body)["error"]) == (401, "unauthorized")
        code, body = http_get(f"{base}/api/v1/readings", reader)
        assert code == 200
        assert [(r["device"], r["seq"]) for r in json.loads(body)["readings"]] == [("pump", 1)]
        code, body = http_get(f"{base}/api/v1/readings?token={prometheus}")
        assert {r["device"] for r in json.loads(body)["readings"]} == {"pump", "fan"}
        assert http_get(f"{base}/metrics")[0] == 401
        assert http_get(f"{base}/metrics", reader)[0] == 403
        code, metrics = http_get(f"{base}/metrics", prometheus)
        assert code == 200
        assert b'tantra_auth_logins_total{transport="tcp"} 2.0' in metrics
        assert b'tantra_auth_refused_total{reason="no_token",transport="http"}' in metrics
        assert http_get(f"{base}/healthz") == (200, b'{"status":"ok"}')
        code, body = http_get(f"{base}/readyz")
        assert code == 200 and json.loads(body)["status"] == "ready"
    finally:
        hub.stop()


def test_a_scoped_reader_resumes_within_its_scope(tmp_path, capsys):
    """``?since=`` replays history and goes live through the reader's scope, nothing else."""
    auth = tmp_path / "auth.json"
    pumps = {
        name: add_token(capsys, auth, "--kind", "device", name) for name in ("farm-1", "farm-2")
    }
    reader = add_token(capsys, auth, "--kind", "reader", "--scope", "farm-1/*", "ro")
    hub = HubProcess.start(tmp_path, "--auth", str(auth), "--store", "sqlite:h.sqlite3")
    devices = {}
    try:
        for name, token in pumps.items():
            devices[name] = TcpDevice(hub.host, hub.ports["tcp"])
            devices[name].send(json.dumps({"auth": token}).encode() + b"\n")
            assert devices[name].reply() == {"ok": "auth", "device": name}
        for seq in (1, 2):
            for device in devices.values():
                device.send(b'{"sensor":"flow","value":%d,"seq":%d}\n' % (seq, seq))
                assert device.reply() == {"ack": seq}  # acked: stored
        base = f"ws://127.0.0.1:{hub.ports['http']}/?since=0&token={reader}"
        with websockets.sync.client.connect(base) as ws:
            replayed = [recv_json(ws) for _ in range(2)]
            assert [(r["device"], r["value"]) for r in replayed] == [("farm-1", 1), ("farm-1", 2)]
            for device in devices.values():
                device.send(b'{"sensor":"flow","value":3,"seq":3}\n')
                assert device.reply() == {"ack": 3}
            live = recv_json(ws)
            assert (live["device"], live["value"]) == ("farm-1", 3)
            assert live["id"] > replayed[-1]["id"]
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)  # farm-2's readings never come
    finally:
        for device in devices.values():
            device.close()
        hub.stop()


def test_auth_in_a_missing_directory_is_one_line_and_no_start(tmp_path):
    """A typo in --auth's directory: one line and exit 1, not a traceback from the replay state."""
    import subprocess

    from tests.support.hubproc import twistd_path

    path = tmp_path / "missing" / "auth.json"
    done = subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "tantra", "--http", "tcp:0:interface=127.0.0.1",
         "--tcp", "none", "--udp", "none", "--store", "none", "--auth", str(path)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"tantra: --auth {path}: no directory {tmp_path / 'missing'}\n",
    )


def test_auth_file_not_there_yet_starts_with_one_warning(tmp_path):
    path = tmp_path / "auth.json"
    hub = HubProcess.start(tmp_path, "--auth", str(path), "--store", "none")
    try:
        warnings = [line for line in hub.log_text().splitlines() if "no tokens yet" in line]
        assert len(warnings) == 1 and warnings[0].endswith(
            f"every client will be refused until `tantra token add --auth {path} ...`"
            f" creates {path}"
        )
    finally:
        hub.stop()
