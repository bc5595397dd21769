"""The whole service in this process on loopback ports, driven by pytest-twisted.

Clients are Autobahn's own WebSocket client and Twisted's TCP client endpoint,
so these tests see exactly what the service does on the real reactor: close
codes, keep-alive pings, the graceful stop.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import LineReceiver

from tests.support.inprocess import start_hub

pytestmark = pytest.mark.integration


def sleep(seconds: float) -> defer.Deferred:
    return defer.Deferred.fromCoroutine(_sleep(seconds))


async def _sleep(seconds: float) -> None:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d


class Dashboard(WebSocketClientProtocol):
    """Autobahn client that records messages and how it was closed."""

    def __init__(self):
        super().__init__()
        self.messages: list[dict] = []
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.waiting: list[tuple[int, defer.Deferred]] = []

    def onOpen(self):
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.messages.append(json.loads(payload))
        for count, waiter in list(self.waiting):
            if len(self.messages) >= count:
                self.waiting.remove((count, waiter))
                waiter.callback(self.messages)

    def wait_for(self, count: int) -> defer.Deferred:
        waiter: defer.Deferred = defer.Deferred()
        self.waiting.append((count, waiter))
        if len(self.messages) >= count:
            self.waiting.remove((count, waiter))
            waiter.callback(self.messages)
        return waiter.addTimeout(5, reactor)

    def onClose(self, wasClean, code, reason):
        if not self.closed.called:
            self.closed.callback((code, reason))


@defer.inlineCallbacks
def open_dashboard(port: int, query: str = ""):
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/{query}")
    factory.protocol = Dashboard
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = yield endpoint.connect(factory)
    yield client.opened.addTimeout(5, reactor)
    return client


class Device(LineReceiver):
    delimiter = b"\n"

    def __init__(self):
        self.replies: list[dict] = []
        self.lost: defer.Deferred = defer.Deferred()

    def lineReceived(self, line):
        self.replies.append(json.loads(line))

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_graceful_stop_sends_1001_and_flushes_device_acks():
    service, ports = yield start_hub()
    dashboard = yield open_dashboard(ports["http"])
    device = Device()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports["tcp"]), device)
    device.sendLine(b'{"device":"d","sensor":"a","value":1,"seq":1}')
    yield dashboard.wait_for(1)

    for seq in range(2, 50):
        device.sendLine(b'{"device":"d","sensor":"a","value":%d,"seq":%d}' % (seq, seq))
    yield sleep(0.2)
    yield service.stopService()
    code, _ = yield dashboard.closed.addTimeout(5, reactor)
    yield device.lost.addTimeout(5, reactor)

    assert code == 1001
    acked = [reply["ack"] for reply in device.replies]
    assert acked == list(range(1, 50)), "every ack reached the device before it was hung up"
    delivered = [m["value"] for m in dashboard.messages]
    assert delivered == list(range(1, 50)), "every acked reading reached the dashboard first"


@pytest_twisted.inlineCallbacks
def test_client_that_ignores_pings_is_dropped():
    service, ports = yield start_hub(**{"ping-interval": 0.5, "ping-timeout": 1.0})
    try:
        silent = yield open_dashboard(ports["http"])
        silent.transport.pauseProducing()  # stop reading: pings go unanswered
        alive = yield open_dashboard(ports["http"])
        yield sleep(2.5)
        silent.transport.resumeProducing()
        yield silent.closed.addTimeout(5, reactor)
        assert service.hub.stats.clients_dropped["ping_timeout"] == 1
        assert alive.closed.called is False, "a client that answers pings stays"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_oversized_message_closes_only_that_client_with_1009():
    service, ports = yield start_hub(**{"max-line": 1024})
    try:
        big = yield open_dashboard(ports["http"])
        other = yield open_dashboard(ports["http"])
        big.sendMessage(b"[" + b'{"sensor":"a","value":1},' * 100 + b'{"sensor":"a","value":1}]')
        code, _ = yield big.closed.addTimeout(5, reactor)
        assert code == 1009
        other.sendMessage(b'{"sensor":"still","value":1}')
        messages = yield other.wait_for(1)
        assert messages[-1]["sensor"] == "still"
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_invalid_utf8_in_a_text_frame_is_a_protocol_error_1007():
    service, ports = yield start_hub()
    try:
        client = yield open_dashboard(ports["http"])
        client.sendMessage(b'{"sensor":"\xff","value":1}', isBinary=False)
        code, _ = yield client.closed.addTimeout(5, reactor)
        assert code == 1007
        assert service.hub.stats.accepted == 0
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_snapshot_reaches_a_late_dashboard_through_the_real_stack():
    service, ports = yield start_hub()
    try:
        device = Device()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports["tcp"]), device)
        device.sendLine(
            b'[{"device":"x","sensor":"a","value":1},{"device":"y","sensor":"b","value":2}]'
        )
        yield sleep(0.1)
        late = yield open_dashboard(ports["http"], "?device=y")
        messages = yield late.wait_for(1)
        assert [(m["device"], m["value"]) for m in messages] == [("y", 2)]
        device.transport.loseConnection()
    finally:
        yield service.stopService()
