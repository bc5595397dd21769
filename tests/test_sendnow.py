"""Write-through on real loopback sockets: immediate when idle, buffered otherwise."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.testing import StringTransport

from tantra.sendnow import write_now


class Keeper(protocol.Protocol):
    def __init__(self):
        self.made: defer.Deferred = defer.Deferred()
        self.received = bytearray()

    def connectionMade(self):
        self.made.callback(self)

    def dataReceived(self, data):
        self.received += data


def test_other_transports_just_get_write():
    transport = StringTransport()
    write_now(transport, b"abc")
    assert transport.value() == b"abc"


@pytest_twisted.inlineCallbacks
def test_idle_tcp_transport_sends_at_once_and_busy_one_queues_in_order():
    server_side = Keeper()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(lambda: server_side)
    )
    try:
        client = Keeper()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        yield server_side.made
        transport = server_side.transport
        write_now(transport, b"first;")
        assert not transport.dataBuffer and not transport._tempDataBuffer, "sent, not queued"
        transport.write(b"queued;")  # Twisted now holds data for the next pass
        write_now(transport, b"after;")
        assert transport._tempDataBuffer, "with data queued, write-through must not jump ahead"
        deadline = reactor.seconds() + 5
        while client.received != b"first;queued;after;" and reactor.seconds() < deadline:
            yield deferLater(0.01)
        assert client.received == b"first;queued;after;"
        client.transport.loseConnection()
    finally:
        yield port.stopListening()


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_what_the_kernel_does_not_take_is_queued_and_arrives():
    server_side = Keeper()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(lambda: server_side)
    )
    try:
        client = Keeper()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        yield server_side.made
        big = bytes(range(256)) * 80_000  # 20 MB: more than any socket buffer
        write_now(server_side.transport, big)
        assert server_side.transport._tempDataBuffer, "the rest waits in Twisted's buffer"
        deadline = reactor.seconds() + 20
        while len(client.received) < len(big) and reactor.seconds() < deadline:
            yield deferLater(0.01)
        assert client.received == big
        client.transport.loseConnection()
    finally:
        yield port.stopListening()
