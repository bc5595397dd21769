"""One behaviour suite over TCP, UDP and WebSocket, in memory: same payload in, same replies out."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address

from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory
from tests.support.fakes import RecordingSink
from tests.support.wire import BufferedTransport, client_frame, handshake, server_frames

PEER = "10.1.2.3"


class FakeDatagramTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


class Tcp:
    def __init__(self, hub, clock):
        factory = DeviceLineFactory(hub, clock, max_line=65536, idle_timeout=300)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", PEER, 1))
        self.transport = BufferedTransport(PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, payload: bytes) -> list[dict]:
        self.protocol.dataReceived(payload + b"\n")
        return [json.loads(line) for line in self.transport.drain().splitlines()]


class Udp:
    def __init__(self, hub, clock):
        self.protocol = DeviceDatagramProtocol(hub, clock, error_rate=100)
        self.protocol.transport = FakeDatagramTransport()

    def send(self, payload: bytes) -> list[dict]:
        # Padded so that every reply fits the no-amplification budget.
        self.protocol.datagramReceived(payload + b" " * 400, (PEER, 1))
        sent, self.protocol.transport.sent = self.protocol.transport.sent, []
        return [json.loads(line) for data, _ in sent for line in data.split(b"\n")]


class WebSocket:
    def __init__(self, hub, clock):
        factory = DashboardFactory(hub, clock, ping_interval=0)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", PEER, 1))
        self.transport = BufferedTransport(PEER)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(handshake())
        self.transport.drain()

    def send(self, payload: bytes) -> list[dict]:
        try:
            payload.decode()
            opcode = 1
        except UnicodeDecodeError:
            opcode = 2  # a text frame must be UTF-8 (else 1007); binary frames are readings too
        self.protocol.dataReceived(client_frame(payload, opcode))
        return [json.loads(p) for _, p in server_frames(self.transport.drain())]


CASES = [
    (b'{"sensor":"a","value":1,"seq":7}', [{"ack": 7}]),
    (b'{"sensor":"a","value":1}', []),
    (b"[]", [{"error": "empty_batch"}]),
    (b"not json", [{"error": "invalid_json"}]),
    (b'{"sensor":"a","value":1}\xff', [{"error": "invalid_utf8"}]),
    (
        b'[{"sensor":"a","value":1,"seq":1},{"sensor":"b","value":"x"},{"sensor":"c","value":2,"seq":3}]',
        [{"ack": [1, 3]}, {"error": "invalid_reading", "index": 1}],
    ),
    (b'{"sensor":"a","value":1,"color":"red"}', [{"error": "invalid_reading", "index": 0}]),
]


@pytest.mark.parametrize("kind", [Tcp, Udp, WebSocket], ids=["tcp", "udp", "websocket"])
@pytest.mark.parametrize(("payload", "expected"), CASES)
def test_same_payload_same_replies_on_every_transport(clock, kind, payload, expected):
    hub = Hub(clock)
    watcher = RecordingSink()
    hub.subscribe(watcher)
    device = kind(hub, clock)
    replies = device.send(payload)
    # Compare the stable fields (detail texts are for people).
    assert [
        {key: value for key, value in reply.items() if key != "detail"} for reply in replies
    ] == expected
    # A good reading alongside goes through, and every device is named by its peer.
    assert device.send(b'{"sensor":"ok","value":1,"seq":99}') == [{"ack": 99}]
    clock.advance(0)
    assert watcher.readings[-1].sensor == "ok"
    assert {reading.device for reading in watcher.readings} == {"ip-10-1-2-3"}
