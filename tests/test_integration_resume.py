"""Gap-free resume on the real ``twistd -n tantra`` (SQLite store), with ``websockets`` dashboards.

A device streams over raw TCP the whole time. A dashboard reads part of the
stream and hangs up; the device keeps streaming; the dashboard reconnects
with ``?since=<last id it got>``. What both sessions received together is
every reading the device sent, exactly once, in order, and the ids are the
ones the history API shows.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.clients import dashboard, recv_json
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

COUNT = 6000
HOLD_AT = 1000  # the device waits here until the first dashboard has hung up
DEVICE = "resumer"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = HubProcess.start(tmp_path_factory.mktemp("resume"))
    yield hub
    hub.stop()


SENT = [0]  # readings the device has sent so far


def stream(port: int, count: int, hung_up: threading.Event) -> None:
    """``count`` readings with seq in batches of 10, about 5k readings/s, acks read and ignored.

    At :data:`HOLD_AT` it waits for the first dashboard to hang up, so the
    rest (about a second of streaming) spans the reconnect.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = threading.Thread(target=lambda: _drain(sock), daemon=True)
        reader.start()
        for start in range(0, count, 10):
            batch = [
                {"device": DEVICE, "sensor": "rpm", "value": seq, "seq": seq}
                for seq in range(start, min(count, start + 10))
            ]
            sock.sendall(json.dumps(batch).encode() + b"\n")
            SENT[0] = start + len(batch)
            if SENT[0] == HOLD_AT:
                hung_up.wait(30)
            time.sleep(0.002)
        sock.shutdown(socket.SHUT_WR)
        reader.join(30)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            if not sock.recv(65536):
                return
        except OSError:
            return


def test_a_dashboard_resumes_with_since_and_gets_every_reading_once_in_order(hub):
    url = f"{hub.ws_url}?device={DEVICE}"
    first: list[dict] = []
    hung_up = threading.Event()
    device = threading.Thread(target=stream, args=(hub.ports["tcp"], COUNT, hung_up))
    with dashboard(url) as ws:  # a fresh device: an empty snapshot, then live
        device.start()
        while len(first) < 500:
            first.append(recv_json(ws))
    hung_up.set()
    # The device streams on while nobody listens: wait (bounded) until it has, so a
    # loaded machine that is slow to schedule its thread cannot skip the gap.
    deadline = time.monotonic() + 10
    while SENT[0] < HOLD_AT + 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    last_id = first[-1]["id"]
    second: list[dict] = []
    with dashboard(f"{url}&since={last_id}") as ws:
        sent_at_reconnect = SENT[0]
        while not second or second[-1]["seq"] < COUNT - 1:
            second.append(recv_json(ws, timeout=30))
    device.join(30)
    assert HOLD_AT < sent_at_reconnect < COUNT, "the reconnect happened mid-stream"
    union = first + second
    assert [r["seq"] for r in union] == list(range(COUNT)), "every reading once, in order"
    ids = [r["id"] for r in union]
    assert ids == sorted(ids) and len(set(ids)) == COUNT
    api = f"http://127.0.0.1:{hub.ports['http']}/api/v1/readings?device={DEVICE}&limit=10000"
    with urllib.request.urlopen(api, timeout=10) as response:
        stored = json.load(response)["readings"]
    assert {r["seq"]: r["id"] for r in stored} == {r["seq"]: r["id"] for r in union}


def test_a_bad_since_is_refused_and_a_well_behaved_dashboard_alongside_loses_nothing(hub):
    device = "bystander"
    with dashboard(f"{hub.ws_url}?device={device}") as ws:
        for bad in ("x", "-1", "1.5", "", "99999999999999", "1&since=2"):
            with pytest.raises(InvalidStatus) as raised:
                dashboard(f"{hub.ws_url}?since={bad}")
            assert raised.value.response.status_code == 400
            assert "since" in raised.value.response.reason_phrase
        with socket.create_connection(("127.0.0.1", hub.ports["tcp"]), timeout=10) as sock:
            sock.sendall(b'{"device":"bystander","sensor":"t","value":1}\n')
            got = recv_json(ws)
    assert got["value"] == 1 and isinstance(got["id"], int)


def test_since_without_a_store_is_a_400_with_the_reason(tmp_path):
    plain = HubProcess.start(tmp_path, "--store", "none")
    try:
        with pytest.raises(InvalidStatus) as raised:
            dashboard(f"{plain.ws_url}?since=1")
        assert raised.value.response.status_code == 400
        assert "keeps history" in raised.value.response.reason_phrase
        with (
            dashboard(plain.ws_url) as ws,
            socket.create_connection(("127.0.0.1", plain.ports["tcp"]), timeout=10) as sock,
        ):
            sock.sendall(b'{"device":"d","sensor":"t","value":1}\n')
            assert "id" not in recv_json(ws), "no store: no id"
    finally:
        plain.stop()


def test_tantra_tail_since_an_id_prints_every_reading_after_it(hub):
    import subprocess
    import sys
    from pathlib import Path

    with socket.create_connection(("127.0.0.1", hub.ports["tcp"]), timeout=10) as sock:
        sock.sendall(
            json.dumps([{"device": "tailer", "sensor": "n", "value": v} for v in range(5)]).encode()
            + b"\n"
        )
    api = f"http://127.0.0.1:{hub.ports['http']}/api/v1/readings?device=tailer"
    for _ in range(100):
        with urllib.request.urlopen(api, timeout=10) as response:
            stored = json.load(response)["readings"]
        if len(stored) == 5:
            break
        time.sleep(0.05)
    tantra = str(Path(sys.executable).with_name("tantra"))
    for since in (f"id:{stored[1]['id']}", str(stored[1]["id"])):
        done = subprocess.run(
            [tantra, "tail", "--url", hub.ws_url, "--device", "tailer", "--json", "--count", "3",
             "--since", since],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert [json.loads(line)["value"] for line in done.stdout.splitlines()] == [2, 3, 4]
