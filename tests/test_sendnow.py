"""Write-through on real loopback sockets: immediate when idle, buffered otherwise."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.testing import StringTransport

from tantra.transports.sendnow import writer_for

pytestmark = pytest.mark.integration  # real loopback sockets


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
    writer_for(transport)(b"abc")
    assert transport.value() == b"abc"


@defer.inlineCallbacks
def connected_pair():
    """A real loopback TCP connection: (server-side protocol, client, listening port)."""
    server_side = Keeper()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(lambda: server_side)
    )
    client = Keeper()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
    yield server_side.made
    return server_side, client, port


@defer.inlineCallbacks
def received(client: Keeper, expected: bytes, timeout: float):
    deadline = reactor.seconds() + timeout
    while len(client.received) < len(expected) and reactor.seconds() < deadline:
        yield task.deferLater(reactor, 0.01, lambda: None)
    return bytes(client.received)


@pytest_twisted.inlineCallbacks
def test_idle_tcp_transport_sends_at_once_and_busy_one_queues_in_order():
    server_side, client, port = yield connected_pair()
    try:
        transport = server_side.transport
        write = writer_for(transport)
        write(b"first;")
        assert not transport.dataBuffer and not transport._tempDataBuffer, "sent, not queued"
        transport.write(b"queued;")  # Twisted now holds data for the next pass
        write(b"after;")
        assert transport._tempDataBuffer, "with data queued, write-through must not jump ahead"
        expected = b"first;queued;after;"
        assert (yield received(client, expected, 5)) == expected
    finally:
        client.transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_what_the_kernel_does_not_take_is_queued_and_arrives():
    server_side, client, port = yield connected_pair()
    try:
        big = bytes(range(256)) * 80_000  # 20 MB: more than any socket buffer
        writer_for(server_side.transport)(big)
        assert server_side.transport._tempDataBuffer, "the rest waits in Twisted's buffer"
        assert (yield received(client, big, 20)) == big
    finally:
        client.transport.loseConnection()
        yield port.stopListening()
