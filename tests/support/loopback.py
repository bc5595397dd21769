"""Real loopback TCP connections for tests of the write path (sendnow, fanout).

Why here: the write-through and the compiled broadcast loop are only worth
testing against Twisted's real ``tcp.Connection`` (the loop reads its
attributes and sends on its descriptor), and both test modules need the same
rig: a listening port, N clients, every byte each side received, and a
teardown that closes them all.
"""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol


class Keeper(protocol.Protocol):
    """Keeps every byte received; ``made`` fires once connected."""

    def __init__(self):
        self.made: defer.Deferred = defer.Deferred()
        self.received = bytearray()

    def connectionMade(self):
        self.made.callback(self)

    def dataReceived(self, data):
        self.received += data


class _Server(protocol.Factory):
    def __init__(self):
        self.made: list[Keeper] = []

    def buildProtocol(self, addr):
        keeper = Keeper()
        self.made.append(keeper)
        return keeper


@defer.inlineCallbacks
def connections(count: int):
    """``count`` real loopback connections: (server-side protocols, clients, port)."""
    server = _Server()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
    clients = []
    for _ in range(count):
        client = Keeper()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        clients.append(client)
    while len(server.made) < count:
        yield task.deferLater(reactor, 0.01, lambda: None)
    yield defer.gatherResults([keeper.made for keeper in server.made])
    return server.made, clients, port


@defer.inlineCallbacks
def close(clients, port):
    """Close every client and stop listening (the tests' ``finally``)."""
    for client in clients:
        client.transport.loseConnection()
    yield port.stopListening()


@defer.inlineCallbacks
def until(condition, timeout: float = 20):
    """Wait (bounded) until ``condition()`` holds; the caller asserts what it needs."""
    deadline = reactor.seconds() + timeout
    while not condition() and reactor.seconds() < deadline:
        yield task.deferLater(reactor, 0.01, lambda: None)
