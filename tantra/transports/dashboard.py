"""WebSocket dashboards (and WebSocket publishers) at ``ws://host:port/``.

Owns: the translation between WebSocket messages and the hub. Each connection
is one subscriber (an :class:`~tantra.outbox.Outbox` with the filter from its
query string) and one publisher (whatever it sends is ingested as readings,
replies go back to it alone), exactly like the Node.js relay it replaces.

Autobahn does the handshake, incoming frames, pings and closing. Outgoing
readings skip Autobahn's per-message path: every reading is framed once
(Autobahn's ``PreparedMessage``), the frames of one hub turn are joined once
per filter, and each client gets one ``transport.write`` per turn.

Does not own: validation, the cache, fan-out (``tantra.hub``), back-pressure
policy (``tantra.outbox``), or the HTTP resource tree (``tantra.web.site``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from tantra import replies
from tantra.counters import Counters
from tantra.hub import EVERYTHING, Batch, Filter, Hub, Subscription
from tantra.lifecycle import IGoodbye
from tantra.model import NAME_PATTERN, NAME_RULE, Reading, device_name_for_address
from tantra.outbox import Outbox
from tantra.transports.sendnow import writer_for

# Close codes (RFC 6455 1001; 4000-4999 are ours; docs/protocol.md lists them).
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SLOW_CONSUMER = 4001

FILTER_PARAMETERS = ("device", "sensor")
_OPEN = WebSocketServerProtocol.STATE_OPEN


def frame_text(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame (Autobahn's framing, done once)."""
    return PreparedMessage(payload, False, False, True).payloadHybi


def encode_text_frames(readings: Sequence[Reading]) -> bytes:
    """All readings of a batch as consecutive text frames, one reading per frame.

    A module-level function, so every dashboard shares the memo in
    :meth:`Batch.encoded` and a turn's frames are built once per filter.
    """
    return b"".join([frame_text(reading.json) for reading in readings])


def filter_from_query(params: Mapping[str, Sequence[str]]) -> Filter:
    """The subscription filter of ``?device=..&sensor=..`` (each repeatable).

    Raises ``ValueError`` naming the problem: an unknown parameter (a typo must
    not silently subscribe to everything) or a value that is not a valid name.
    """
    unknown = sorted(name for name in params if name not in FILTER_PARAMETERS)
    if unknown:
        raise ValueError(
            f"unknown query parameter(s) {', '.join(unknown)}; use device= and sensor="
        )
    for name in FILTER_PARAMETERS:
        for value in params.get(name, ()):
            if NAME_PATTERN.fullmatch(value) is None:
                raise ValueError(f"{name} filter {value!r} must be {NAME_RULE}")
    return Filter.of(params.get("device", ()), params.get("sensor", ()))


class _SendQueue(list):
    """The part of ``collections.deque`` Autobahn's send queue uses, at list size."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


class DashboardProtocol(WebSocketServerProtocol):
    """One WebSocket client: a filtered subscriber and a publisher of readings."""

    # Autobahn owns ``self.log``.
    _log = Logger()

    factory: DashboardFactory
    transport: Any  # a TCP, TLS or UNIX transport behind twisted.web (twisted types it loosely)

    def __init__(self) -> None:
        super().__init__()
        self._filter: Filter | None = None
        self._device = "unknown"
        self._outbox: Outbox | None = None
        # Not ``_send``: Autobahn's own ``_send`` drains its send queue.
        self._write_through: Callable[[bytes], None] = self._not_connected
        self._subscription: Subscription | None = None
        self._is_closed = False
        self._close_waiters: list[defer.Deferred] | None = None  # made on demand

    def connectionMade(self) -> None:
        super().connectionMade()
        # Autobahn keeps an (almost always empty) deque per connection for
        # chopped or synchronous sends, which the hub never makes; a deque
        # costs 760 bytes even when empty, a list subclass 56. Per idle
        # dashboard that is the difference between beating the Node relay's
        # memory per client and not.
        self.send_queue = _SendQueue()  # type: ignore[assignment]  # deque's popleft only

    def onConnect(self, request):
        try:
            self._filter = filter_from_query(request.params)
        except ValueError as error:
            self.factory.hub.reject("bad_subscription", source=str(request.peer), detail=str(error))
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, str(error)) from None
        self._device = device_name_for_address(self.transport.getPeer())
        return None

    def onOpen(self) -> None:
        try:
            self._start_subscription()
        except Exception:
            self._log.failure("could not start WebSocket client {peer}", peer=self.peer)
            self.sendCloseFrame(CLOSE_INTERNAL_ERROR, b"internal error", isReply=False)
        self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Drop the raw handshake Autobahn keeps (~1 KB a client; unused once open).

        A hub holds thousands of idle dashboards: per-client memory is what
        limits it, so nothing is kept that only the handshake needed.
        """
        forgotten: Any = None
        self.http_request_data = self.http_response_data = forgotten
        self.http_headers = {}
        self.http_request_params = {}
        self.http_status_line = forgotten

    def _not_connected(self, data: bytes) -> None:
        raise RuntimeError("no transport yet")

    def _start_subscription(self) -> None:
        factory = self.factory
        self._write_through = writer_for(self.transport)
        outbox = Outbox(
            # Straight to the socket: the outbox is closed before any close frame
            # (see sendCloseFrame), so it never writes after one.
            write=self._write_through,
            encode=encode_text_frames,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_give_up=self._give_up,
            counters=factory.counters,
        )
        # Behind twisted.web the HTTP channel is still the registered producer.
        if _registered_producer(self.transport) is not None:
            self.transport.unregisterProducer()
        self.transport.registerProducer(outbox, True)
        self._outbox = outbox
        self._subscription, snapshot = factory.hub.subscribe(outbox, self._filter or EVERYTHING)
        factory.clients.add(self)
        if snapshot:
            outbox.deliver(Batch(snapshot))

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False) -> None:
        """Every close frame, ours or Autobahn's, ends the broadcast stream first."""
        if self._outbox is not None:
            self._outbox.close()
        super().sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=isReply)

    def _write_frames(self, data: bytes) -> None:
        if self.state == _OPEN:
            self._write_through(data)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        outcome = self.factory.hub.ingest(payload, default_device=self._device)
        messages = replies.for_outcome(outcome)
        if messages:
            # Same framing as broadcasts (one text frame per reply), without
            # Autobahn's per-message send path, which costs more than the ingest.
            self._write_frames(b"".join([frame_text(replies.encode(m)) for m in messages]))

    def _give_up(self, reason: str) -> None:
        self._log.info("closing WebSocket client {peer}: {reason}", peer=self.peer, reason=reason)
        self.sendCloseFrame(CLOSE_SLOW_CONSUMER, b"slow consumer", isReply=False)

    def onAutoPingTimeout(self) -> None:
        self.factory.counters.hub.clients_dropped["ping_timeout"] += 1
        self._log.info("WebSocket client {peer} did not answer a ping", peer=self.peer)
        super().onAutoPingTimeout()

    def go_away(self) -> defer.Deferred:
        """Close with 1001 (the hub is stopping); fires once the connection is gone."""
        if self.state == self.STATE_OPEN:
            # Autobahn's sendClose() refuses 1001, so use the frame-level call.
            self.sendCloseFrame(CLOSE_GOING_AWAY, b"hub shutting down", isReply=False)
        return self.when_closed()

    def when_closed(self) -> defer.Deferred:
        if self._is_closed:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        if self._close_waiters is None:
            self._close_waiters = []
        self._close_waiters.append(waiter)
        return waiter

    def onClose(self, wasClean: bool, code, reason) -> None:
        if self._subscription is not None:
            self.factory.hub.unsubscribe(self._subscription)
            self._subscription = None
        if self._outbox is not None:
            self._outbox.close()
        self.factory.clients.discard(self)
        self._is_closed = True
        waiters, self._close_waiters = self._close_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)


@implementer(IGoodbye)
class DashboardFactory(WebSocketServerFactory):
    """Builds dashboard connections and knows the open ones (to close them on stop)."""

    protocol = DashboardProtocol  # type: ignore[assignment]  # twisted's generic Factory

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        max_message_size: int = 65536,
        counters: Counters | None = None,
    ):
        super().__init__(server="Tantra")
        self.hub = hub
        self.clock = clock
        self.counters = counters if counters is not None else hub.counters
        self.stall_timeout = stall_timeout
        self.clients: set[DashboardProtocol] = set()
        self.setProtocolOptions(
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            # Tell a client why it is being disconnected (1002/1007/1009)
            # instead of dropping the TCP connection silently.
            failByDrop=False,
        )

    def go_away(self) -> defer.Deferred:
        """Close every client with 1001; fires when all are gone."""
        return defer.DeferredList([client.go_away() for client in list(self.clients)])


def _registered_producer(transport):
    """The producer a transport has, if any (TCP says ``producer``, TLS ``_producer``)."""
    return getattr(transport, "producer", None) or getattr(transport, "_producer", None)
