"""The one Autobahn WebSocket base that dashboards and WAMP connections share.

Owns what every WebSocket connection of the hub does the same way: the close
codes, whole single-frame messages without Autobahn's per-frame path
(``tantra.transports.wholeframes``), closing (``close_with``, ``go_away``
with 1001, which Autobahn's ``sendClose`` refuses), the close waiters
(``when_closed``), counting ping timeouts, taking over the transport's
producer from twisted.web's HTTP channel
(:meth:`HubWebSocketProtocol._take_over_producer`), not reading from a
client whose replies back up (:class:`~tantra.transports.backpressure.ReadGate`),
and the factory options (limits, pings, ``failByDrop=False``, Autobahn's timers
on the injected reactor).

Does not own: what a connection does with messages (``tantra.transports.dashboard``,
``tantra.wamp.transport``) or its outgoing queue (``tantra.outbox``,
``tantra.wamp.outbox``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txaio._common import _BatchedTimer

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.outbox import BoundedSender
from tantra.security.connlimit import release_transport
from tantra.transports.backpressure import ReadGate
from tantra.transports.wholeframes import WholeFrameReceiver

# Close codes (RFC 6455 1000-1011; 4000-4999 are ours; docs/protocol.md lists them).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SLOW_CONSUMER = 4001
#: A resuming dashboard (``?since=``) fell too far behind, or its history could not be read:
#: reconnect with ``?since=`` the last id received.
CLOSE_RESUME_AGAIN = 4002
#: The token this connection was admitted with was revoked or changed.
CLOSE_TOKEN_REVOKED = 4003

#: ``clients_dropped`` reason for a client that did not answer a ping in time.
PING_TIMEOUT = "ping_timeout"

#: Default for ``--reply-buffer``: unwritten bytes per connection before the hub
#: stops writing (conflating) and, if the client keeps sending, stops reading.
#: Twisted's own default, so a well-behaved client sees no change.
DEFAULT_REPLY_BUFFER = 65536

#: Seconds a client gets to read our close frame before the connection is dropped.
DEFAULT_CLOSE_TIMEOUT = 5.0


class HubWebSocketProtocol(WholeFrameReceiver):
    """Mixin (first in the MRO) for an Autobahn server protocol of the hub.

    Subclasses implement :meth:`_start` (join the hub once open) and
    :meth:`_connection_gone` (forget the subscription or session) and set
    ``kind`` (for log lines). The outgoing queue, once made,
    is handed to :meth:`_take_over_producer`.
    """

    # Autobahn owns ``self.log``.
    _log = Logger()
    kind = "WebSocket"

    factory: HubWebSocketFactory
    # Autobahn's attributes this mixin uses (for type checkers).
    state: int
    transport: Any
    # Autobahn's own bases type these two differently (with and without None);
    # as the first base, this mixin's declaration is the one mypy compares.
    peer: Any
    _transport_details: Any
    STATE_OPEN: int
    closeHandshakeTimeout: float

    def __init__(self) -> None:
        super().__init__()
        self._sender: BoundedSender | None = None
        self._gate: ReadGate | None = None
        self._is_closed = False
        self._close_waiters: list[defer.Deferred] | None = None  # made on demand

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[misc]
        # The bound on unwritten bytes; Twisted pauses our producer above it.
        self.transport.bufferSize = self.factory.reply_buffer

    def onOpen(self) -> None:
        """Start the connection's part in the hub; a bug closes it with 1011, logged."""
        try:
            self._start()
        except Exception:
            self._log.failure(
                "could not start {kind} client {peer}", kind=self.kind, peer=self.peer
            )
            self.factory.counters.hub.clients_dropped["internal_error"] += 1
            self.close_with(CLOSE_INTERNAL_ERROR, b"internal error")

    def _start(self) -> None:
        """Make the outgoing queue (hand it to :meth:`_take_over_producer`) and join the hub."""
        raise NotImplementedError

    def _take_over_producer(self, sender: BoundedSender) -> None:
        """Make ``sender`` hear the transport's buffer signals, through a read gate.

        Behind twisted.web the HTTP channel is still the transport's registered
        producer, so it goes first; a transport that never had one (a plain
        WebSocket port, tests) has nothing to unregister.
        """
        transport = self.transport
        if registered_producer(transport) is not None:
            transport.unregisterProducer()
        self._sender = sender
        self._gate = ReadGate(transport, sender)
        transport.registerProducer(self._gate, True)

    def _replies_written(self) -> None:
        """After writing replies: stop reading if the client does not read them."""
        if self._gate is not None:
            self._gate.replies_written()

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False) -> None:
        """Every close frame, ours or Autobahn's, ends the outgoing queue first.

        Nothing queued may follow a close frame, and whatever a slow client had
        not taken yet is not worth more to it than the close itself.
        """
        if self._sender is not None:
            self._sender.close()
        super().sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=isReply)  # type: ignore[misc]

    def close_with(self, code: int, reason: bytes | None = None) -> None:
        """Start the closing handshake with ``code`` (any code: 1001 and 1011 too)."""
        if self.state == self.STATE_OPEN:
            # Autobahn's sendClose() accepts only 1000 and 3000-4999.
            self.sendCloseFrame(code, reason, isReply=False)

    def go_away(self) -> defer.Deferred:
        """Close with 1001 (the hub is stopping); fires once the connection is gone.

        The client gets the whole stop deadline to read the close frame, which
        sits behind whatever its socket buffer still holds; the caller aborts
        what is left after that deadline.
        """
        self.closeHandshakeTimeout = self.factory.close_timeout
        if self._gate is not None:  # its answering close frame must get in
            self._gate.resume_reading()
            self._gate.replies_room()
        self.close_with(CLOSE_GOING_AWAY, b"hub shutting down")
        return self.when_closed()

    def when_closed(self) -> defer.Deferred:
        if self._is_closed:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        if self._close_waiters is None:
            self._close_waiters = []
        self._close_waiters.append(waiter)
        return waiter

    def onAutoPingTimeout(self) -> None:
        self.factory.counters.hub.clients_dropped[PING_TIMEOUT] += 1
        self._log.info("{kind} client {peer} did not answer a ping", kind=self.kind, peer=self.peer)
        super().onAutoPingTimeout()  # type: ignore[misc]

    def connectionLost(self, reason: Any = None) -> None:
        release_transport(self.transport)  # its --max-connections-per-address slot
        super().connectionLost(reason)  # type: ignore[misc]

    def onClose(self, wasClean: bool, code, reason) -> None:
        self._connection_gone()
        if self._sender is not None:
            self._sender.close()
        self.factory.connections.discard(self)
        self._is_closed = True
        waiters, self._close_waiters = self._close_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)

    def _connection_gone(self) -> None:
        """Forget what this connection had in the hub (subscription, session)."""
        raise NotImplementedError


class HubWebSocketFactory:
    """Mixin (first in the MRO) for the factories of :class:`HubWebSocketProtocol`.

    ``_setup`` sets the options both kinds share; the Autobahn factory's own
    ``__init__`` must get ``reactor=`` (see :func:`autobahn_factory_args`).
    """

    hub: Hub
    counters: Counters
    connections: set

    def _setup(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        max_message_size: int = 65536,
        reply_buffer: int = DEFAULT_REPLY_BUFFER,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        counters: Counters | None = None,
    ) -> None:
        """The options both kinds share (``--ping-interval`` and the other settings).

        ``reply_buffer`` bounds a connection's unwritten bytes (Twisted's
        ``bufferSize``: above it the outbox conflates and a client that keeps
        sending is not read); ``close_timeout`` is how long a client has to
        complete the opening handshake and to read our close frame;
        ``counters`` default to the hub's.
        """
        self.hub = hub
        self.clock = clock
        self.counters = counters if counters is not None else hub.counters
        self.stall_timeout = stall_timeout
        self.reply_buffer = reply_buffer
        self.close_timeout = close_timeout
        self.connections = set()
        # Autobahn's ping and handshake timers on our reactor (tests: a Clock),
        # batched as Autobahn does (one timer per 200 ms bucket, not per client).
        self._batched_timer = _BatchedTimer(
            200.0, 1000, seconds_provider=clock.seconds, delayed_call_creator=clock.callLater
        )
        self.setProtocolOptions(  # type: ignore[attr-defined]
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            # Tell a client why it is being disconnected (1002/1007/1009)
            # instead of dropping the TCP connection silently.
            failByDrop=False,
            # A client has this long to finish the opening handshake.
            openHandshakeTimeout=close_timeout,
            closeHandshakeTimeout=close_timeout,
        )

    def go_away(self) -> defer.Deferred:
        """Close every connection with 1001; fires when all are gone."""
        return defer.DeferredList([client.go_away() for client in list(self.connections)])


def registered_producer(transport):
    """The producer a transport has, if any (TCP says ``producer``, TLS ``_producer``)."""
    return getattr(transport, "producer", None) or getattr(transport, "_producer", None)
