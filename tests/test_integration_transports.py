"""Loopback tests against a real ``twistd -n tantra`` with clients nobody here wrote.

Dashboards are ``websockets`` clients; devices are plain TCP and UDP sockets.
Each test uses its own device names (and filters on them) so tests sharing
the module's hub never see each other's readings.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.clients import (
    TcpDevice,
    UdpDevice,
    dashboard,
    drain,
    recv_json,
    require,
    wait_for,
)

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hub(hub_process):
    return hub_process


def test_seed_client_gets_plain_reading_objects(hub):
    device = unique("farm")
    with dashboard(f"ws://127.0.0.1:{hub.ports['http']}") as ws:  # no path, as the seed's clients
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(json.dumps({"device": device, "sensor": "soilMoisture", "value": 42,
                             "unit": "%"}).encode() + b"\n")  # fmt: skip
        message, _ = wait_for(ws, lambda m: m.get("device") == device)
        tcp.close()
    assert message["sensor"] == "soilMoisture"
    assert message["value"] == 42
    assert message["unit"] == "%"
    assert isinstance(message["ts"], int)


def test_tcp_udp_and_websocket_all_reach_the_dashboard(hub):
    device = unique("d")
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(b'{"device":"%s","sensor":"a","value":1,"seq":1}\n' % device.encode())
        assert tcp.reply() == {"ack": 1}
        udp = UdpDevice(hub.host, hub.ports["udp"])
        udp.send(b'{"device":"%s","sensor":"b","value":2,"seq":2}' % device.encode())
        assert udp.reply() == b'{"ack":2}'
        with dashboard(hub.ws_url) as publisher:
            publisher.send(json.dumps({"device": device, "sensor": "c", "value": 3}))
        got = [recv_json(ws) for _ in range(3)]
        tcp.close()
        udp.close()
    assert sorted((m["sensor"], m["value"]) for m in got) == [("a", 1), ("b", 2), ("c", 3)]


def test_default_device_is_the_peer_address(hub):
    sensor = unique("s")
    with dashboard(hub.ws_url + f"?sensor={sensor}") as ws:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(b'{"sensor":"%s","value":1}\n' % sensor.encode())
        assert recv_json(ws)["device"] == "ip-127-0-0-1"
        tcp.close()


def test_snapshot_first_then_live_with_filters(hub):
    device = unique("snap")
    tcp = TcpDevice(hub.host, hub.ports["tcp"])
    for sensor, value in [("a", 1), ("a", 2), ("b", 3)]:
        tcp.send(b'{"device":"%s","sensor":"%s","value":%d,"seq":%d}\n'
                 % (device.encode(), sensor.encode(), value, value))  # fmt: skip
        tcp.reply()
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        snapshot = drain(ws)
        assert sorted((m["sensor"], m["value"]) for m in snapshot) == [("a", 2), ("b", 3)]
        tcp.send(b'{"device":"%s","sensor":"b","value":4}\n' % device.encode())
        assert recv_json(ws)["value"] == 4
    with dashboard(hub.ws_url + f"?device={device}&sensor=b") as ws:
        assert [(m["sensor"], m["value"]) for m in drain(ws)] == [("b", 4)]
    tcp.close()


def test_websocket_sender_gets_its_own_reading_and_its_errors_alone(hub):
    device = unique("ws")
    url = hub.ws_url + f"?device={device}"
    with dashboard(url) as sender, dashboard(url) as watcher:
        sender.send('{"device":"%s","sensor":"a","value":1,"seq":5}' % device)
        sender.send('{"device":"%s","sensor":"a","value":"wet"}' % device)
        sender.send("not json")
        sender.send('[{"device":"%s","sensor":"b","value":2}, {"device":"%s","rssi":1}]'
                    % (device, device))  # fmt: skip
        to_sender = drain(sender)
        to_watcher = drain(watcher)
    readings = [m for m in to_sender if "sensor" in m]
    assert [(m["sensor"], m["value"]) for m in readings] == [("a", 1), ("b", 2)]
    assert {"ack": 5} in to_sender
    errors = [m for m in to_sender if "error" in m]
    assert errors == [
        {"error": "invalid_reading", "detail": "value must be a finite number or boolean",
         "index": 0},
        {"error": "invalid_json", "detail": "payload is not valid JSON: Expecting value: "
         "line 1 column 1 (char 0)"},
        {"error": "invalid_reading", "detail": "unknown field(s) 'rssi'; allowed: device, "
         "sensor, value, unit, ts, seq (send other measurements as readings of their own)",
         "index": 1},
    ]  # fmt: skip
    assert [(m["sensor"], m["value"]) for m in to_watcher] == [("a", 1), ("b", 2)]


def test_binary_websocket_messages_are_readings_too(hub):
    device = unique("bin")
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        ws.send(b'{"device":"%s","sensor":"a","value":1}' % device.encode())
        ws.send(b"\xff\xfe")
        got = drain(ws)
    # Replies go out at once; readings on the hub's next turn: compare as sets.
    assert [m["value"] for m in got if "sensor" in m] == [1]
    assert [m for m in got if "error" in m] == [
        {"error": "invalid_utf8", "detail": "payload is not valid UTF-8 (byte 0)"}
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"sensor":"a","value":NaN}', {"error": "invalid_reading", "index": 0,
                                         "detail": "value must be a finite number or boolean"}),
        (b'{"sensor":"a","value":Infinity}', {"error": "invalid_reading", "index": 0,
                                              "detail": "value must be a finite number or boolean"}),
        (b'{"sensor":"a b","value":1}', {"error": "invalid_reading", "index": 0,
                                         "detail": "sensor must be 1-64 characters of A-Z a-z 0-9 _ -"}),
        (b'{"sensor":"a","value":1,"unit":"kilowatt-hours-ish"}',
         {"error": "invalid_reading", "index": 0,
          "detail": "unit must be a text string of at most 16 characters"}),
        (b"[]", {"error": "empty_batch", "detail": "a batch must hold at least one reading"}),
        (b"\xc3\x28", {"error": "invalid_utf8", "detail": "payload is not valid UTF-8 (byte 0)"}),
        (b"[1,", {"error": "invalid_json",
                  "detail": "payload is not valid JSON: Expecting value: line 1 column 4 (char 3)"}),
    ],
)  # fmt: skip
def test_every_bad_line_class_over_tcp_keeps_the_connection(hub, line, expected):
    device = unique("bad")
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        before = hub.stats()["rejected_total"]
        tcp.send(line + b"\n")
        assert tcp.reply() == expected
        tcp.send(b'{"device":"%s","sensor":"ok","value":1,"seq":1}\n' % device.encode())
        assert tcp.reply() == {"ack": 1}, "the connection is still up"
        assert [m["sensor"] for m in drain(ws)] == ["ok"], "nothing bad reached the dashboard"
        tcp.close()
    assert hub.stats()["rejected_total"] == before + 1


def test_batch_over_tcp_keeps_good_neighbours(hub):
    device = unique("batch")
    batch = [
        {"device": device, "sensor": "a", "value": 1, "seq": 10},
        {"device": device, "sensor": "b", "value": "x", "seq": 11},
        {"device": device, "sensor": "c", "value": 3, "seq": 12},
    ]
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(json.dumps(batch).encode() + b"\r\n")
        assert tcp.reply() == {"ack": [10, 12]}
        assert tcp.reply()["index"] == 1
        assert sorted(m["sensor"] for m in drain(ws)) == ["a", "c"]
        tcp.close()


def test_duplicate_seq_is_acked_but_delivered_once(hub):
    device = unique("dup")
    line = b'{"device":"%s","sensor":"a","value":1,"seq":77}\n' % device.encode()
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        tcp = TcpDevice(hub.host, hub.ports["tcp"])
        tcp.send(line)
        assert tcp.reply() == {"ack": 77}
        udp = UdpDevice(hub.host, hub.ports["udp"])
        udp.send(line.strip())
        assert udp.reply() == b'{"ack":77}'
        assert len(drain(ws)) == 1
        tcp.close()
        udp.close()


def test_overlong_tcp_line_gets_error_then_close(hub):
    tcp = TcpDevice(hub.host, hub.ports["tcp"])
    tcp.send(b'{"sensor":"a","value":1,"seq":1}\n')
    assert tcp.reply() == {"ack": 1}
    tcp.send(b"x" * 70_000)
    assert tcp.reply() == {
        "error": "line_too_long",
        "detail": "line longer than 65536 bytes; closing the connection",
    }
    assert tcp.is_closed_by_peer()
    tcp.close()


def test_empty_tcp_lines_are_keepalives(hub):
    tcp = TcpDevice(hub.host, hub.ports["tcp"])
    tcp.send(b"\n\r\n\n")
    tcp.send(b'{"sensor":"ka","value":1,"seq":3}\n')
    assert tcp.reply() == {"ack": 3}, "no replies to the empty lines came first"
    tcp.close()


def test_udp_errors_go_back_and_never_exceed_the_request(hub):
    udp = UdpDevice(hub.host, hub.ports["udp"])
    request = b'{"sensor": "a", "value": "wet"}' + b" " * 64  # room for the full error
    udp.send(request)
    reply = udp.reply()
    assert len(reply) <= len(request)
    assert json.loads(reply) == {
        "error": "invalid_reading",
        "detail": "value must be a finite number or boolean",
        "index": 0,
    }
    udp.send(b"{")
    assert udp.no_reply(), "any reply to a 1-byte datagram would amplify it"
    udp.close()


def test_bad_filter_is_refused_at_handshake(hub):
    with pytest.raises(InvalidStatus) as raised:
        dashboard(hub.ws_url + "?devcie=x")
    assert raised.value.response.status_code == 400


def test_legacy_path_still_gets_the_dashboard_socket(hub):
    device = unique("legacy")
    with dashboard(f"ws://127.0.0.1:{hub.ports['http']}/some/old/path?device={device}") as ws:
        ws.send('{"device":"%s","sensor":"a","value":1}' % device)
        assert recv_json(ws)["device"] == device


def test_browser_page_and_stats(hub):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{hub.ports['http']}/", timeout=5) as page:
        assert b"Tantra telemetry hub" in page.read()
    tcp = TcpDevice(hub.host, hub.ports["tcp"])
    tcp.send(b'{"sensor":"counted","value":1,"seq":1}\nnot json\n')
    assert tcp.reply() == {"ack": 1}
    assert tcp.reply()["error"] == "invalid_json"
    tcp.close()
    stats = hub.stats()
    assert stats["accepted"] >= 1 and stats["rejected"]["invalid_json"] >= 1
    assert "sessions_opened" in stats["wamp"]


def test_websocket_protocol_error_closes_only_that_client(hub):
    device = unique("proto")
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        raw = socket.create_connection((hub.host, hub.ports["http"]), timeout=5)
        raw.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in raw.recv(4096).split(b"\r\n", 1)[0]
        raw.sendall(b"\x81\x05hello")  # unmasked client frame: a protocol error
        received = b""
        try:
            while chunk := raw.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # the hub may abort instead of waiting for our close frame
        raw.close()
        assert not received or received[0] == 0x88, "a close frame, if anything"
        ws.send('{"device":"%s","sensor":"a","value":1}' % device)
        assert recv_json(ws)["device"] == device, "other clients are unaffected"


# -- the same bad-input behaviour on every transport ---------------------------


class TcpSender:
    def __init__(self, hub):
        self.device = TcpDevice(hub.host, hub.ports["tcp"])

    def send(self, payload: bytes) -> None:
        self.device.send(payload + b"\n")

    def reply(self) -> dict:
        return self.device.reply()

    def close(self) -> None:
        self.device.close()


class UdpSender:
    def __init__(self, hub):
        self.device = UdpDevice(hub.host, hub.ports["udp"])

    def send(self, payload: bytes) -> None:
        self.device.send(payload + b" " * 200)  # room for full error texts

    def reply(self) -> dict:
        return json.loads(self.device.reply())

    def close(self) -> None:
        self.device.close()


class WebSocketSender:
    def __init__(self, hub):
        # A publisher that filters itself out, so it only hears replies.
        self.ws = dashboard(hub.ws_url + "?device=nobody-listens-here").__enter__()

    def send(self, payload: bytes) -> None:
        self.ws.send(payload)  # bytes: a binary message, so any byte sequence gets through

    def reply(self) -> dict:
        return recv_json(self.ws)

    def close(self) -> None:
        self.ws.close()


SENDERS = {"tcp": TcpSender, "udp": UdpSender, "websocket": WebSocketSender}

BAD_INPUTS = {
    "not utf-8": (
        b"\xff\xfe\xfd",
        {"error": "invalid_utf8", "detail": "payload is not valid UTF-8 (byte 0)"},
    ),
    "not json": (
        b"{sensor}",
        {
            "error": "invalid_json",
            "detail": "payload is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        },
    ),
    "not an object": (
        b'"soil=42"',
        {
            "error": "invalid_reading",
            "detail": "a reading must be a JSON object, not string",
            "index": 0,
        },
    ),
    "empty batch": (
        b"[]",
        {"error": "empty_batch", "detail": "a batch must hold at least one reading"},
    ),
    "NaN value": (
        b'{"sensor":"a","value":NaN}',
        {
            "error": "invalid_reading",
            "detail": "value must be a finite number or boolean",
            "index": 0,
        },
    ),
    "string value": (
        b'{"sensor":"a","value":"42"}',
        {
            "error": "invalid_reading",
            "detail": "value must be a finite number or boolean",
            "index": 0,
        },
    ),
    "missing sensor": (
        b'{"value":1}',
        {"error": "invalid_reading", "detail": "missing required field 'sensor'", "index": 0},
    ),
    "bad sensor name": (
        b'{"sensor":"soil moisture","value":1}',
        {
            "error": "invalid_reading",
            "detail": "sensor must be 1-64 characters of A-Z a-z 0-9 _ -",
            "index": 0,
        },
    ),
    "unit too long": (
        b'{"sensor":"a","value":1,"unit":"degrees-celsius-x"}',
        {
            "error": "invalid_reading",
            "detail": "unit must be a text string of at most 16 characters",
            "index": 0,
        },
    ),
    "bad device": (
        b'{"sensor":"a","value":1,"device":"farm 1"}',
        {
            "error": "invalid_reading",
            "detail": "device must be 1-64 characters of A-Z a-z 0-9 _ -",
            "index": 0,
        },
    ),
    "negative seq": (
        b'{"sensor":"a","value":1,"seq":-1}',
        {
            "error": "invalid_reading",
            "detail": "seq must be an integer from 0 to 9007199254740991",
            "index": 0,
        },
    ),
    "unknown field": (
        b'{"sensor":"a","value":1,"rssi":-70}',
        {
            "error": "invalid_reading",
            "detail": "unknown field(s) 'rssi'; allowed: device, sensor, value, unit, ts, seq (send other measurements as readings of their own)",
            "index": 0,
        },
    ),
}


@pytest.mark.parametrize("transport", SENDERS)
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_the_exact_error_on_every_transport(hub, transport, case):
    payload, expected = BAD_INPUTS[case]
    device = unique("every")
    sender = SENDERS[transport](hub)
    with dashboard(hub.ws_url + f"?device={device}&device=ip-127-0-0-1") as watcher:
        drain(watcher, 0.1)  # the snapshot
        sender.send(payload)
        assert sender.reply() == expected
        sender.send(b'{"device":"%s","sensor":"after","value":1,"seq":1}' % device.encode())
        assert sender.reply() == {"ack": 1}, "the sender can go on after an error"
        seen = drain(watcher)
    sender.close()
    assert [(m["device"], m["sensor"]) for m in seen] == [(device, "after")], (
        "the good reading arrived and nothing of the bad one"
    )


def test_send_and_shut_down_like_nc_still_gets_the_replies(hub):
    for line in (
        b'{"sensor":"half","value":1,"seq":41}\n',
        b'{"sensor":"half","value":1,"seq":42}',
    ):
        sock = socket.create_connection((hub.host, hub.ports["tcp"]), timeout=5)
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        sock.close()
        assert json.loads(answer) == {"ack": json.loads(line)["seq"]}


def test_readme_socat_examples(hub):
    import subprocess

    socat = require("socat")
    tcp = subprocess.run(
        [socat, "-t1", "-", f"TCP:127.0.0.1:{hub.ports['tcp']}"],
        input=b'{"sensor":"soilMoisture","value":"wet"}\n', capture_output=True, timeout=10,
    )  # fmt: skip
    assert json.loads(tcp.stdout) == {
        "error": "invalid_reading",
        "detail": "value must be a finite number or boolean",
        "index": 0,
    }
    udp = subprocess.run(
        [socat, "-t1", "-", f"UDP:127.0.0.1:{hub.ports['udp']}"],
        input=b'{"sensor":"turbineVoltage","value":12.6,"unit":"V","seq":2}',
        capture_output=True, timeout=10,
    )  # fmt: skip
    assert json.loads(udp.stdout) == {"ack": 2}
