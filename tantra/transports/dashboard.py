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
policy (``tantra.outbox``), closing, producers and factory options (the
WebSocket base both WebSocket kinds share, ``tantra.transports.websocket``),
or the HTTP resource tree (``tantra.web.site``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from tantra import replies
from tantra.hub import EVERYTHING, Filter, Hub, Subscription
from tantra.lifecycle import IGoodbye
from tantra.model import NAME_PATTERN, NAME_RULE, Reading, device_name_for_address
from tantra.outbox import Outbox
from tantra.transports.ordered import OrderedReplies
from tantra.transports.sendnow import writer_for
from tantra.transports.websocket import (
    CLOSE_SLOW_CONSUMER,
    HubWebSocketFactory,
    HubWebSocketProtocol,
)

FILTER_PARAMETERS = ("device", "sensor")
_OPEN = WebSocketServerProtocol.STATE_OPEN


def frame_text(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame (Autobahn's framing, done once)."""
    return PreparedMessage(payload, False, False, True).payloadHybi


def encode_text_frames(readings: Sequence[Reading]) -> bytes:
    """All readings of a batch as consecutive text frames, one reading per frame.

    A module-level function, so every dashboard shares the memo in
    :meth:`Batch.encoded` and a turn's frames are built once per filter. Each
    reading's frame is built once too (:meth:`Reading.framed`): a dashboard
    joining a hub with 100k sensors joins cached frames instead of framing
    the whole cache again.
    """
    return b"".join([reading.framed(frame_text) for reading in readings])


def query_of(uri: str) -> dict[str, list[str]]:
    """The query parameters of a request URI, blank and valueless ones kept.

    ``?device=`` and ``?device`` come back as ``{"device": [""]}``, so the
    filter check refuses them instead of reading them as "no filter".
    """
    return parse_qs(urlsplit(uri).query, keep_blank_values=True)


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


class DashboardProtocol(HubWebSocketProtocol, WebSocketServerProtocol):
    """One WebSocket client: a filtered subscriber and a publisher of readings."""

    kind = "dashboard"
    factory: DashboardFactory
    transport: Any  # a TCP, TLS or UNIX transport behind twisted.web (twisted types it loosely)

    def __init__(self) -> None:
        super().__init__()
        self._filter: Filter | None = None
        self._device = "unknown"
        self._replies: OrderedReplies | None = None  # with a store: acks wait for commits
        # Not ``_send``: Autobahn's own ``_send`` drains its send queue.
        self._write_through: Callable[[bytes], None] = self._not_connected
        self._subscription: Subscription | None = None

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
            # Autobahn's request.params drops blank values (``?device=``), which
            # would subscribe to everything: parse the raw query ourselves.
            self._filter = filter_from_query(query_of(self.http_request_uri))
        except ValueError as error:
            self.factory.hub.reject("bad_subscription", source=str(request.peer), detail=str(error))
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, str(error)) from None
        self._device = device_name_for_address(self.transport.getPeer())
        return None

    def onOpen(self) -> None:
        super().onOpen()
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

    def _start(self) -> None:
        """Subscribe with the filter of the handshake; the snapshot goes out first."""
        factory = self.factory
        self._write_through = writer_for(self.transport)
        outbox = Outbox(
            # Straight to the socket: the outbox is closed before any close frame
            # (see HubWebSocketProtocol.sendCloseFrame), so it never writes after one.
            write=self._write_through,
            encode=encode_text_frames,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_give_up=self._give_up,
            counters=factory.counters,
        )
        self._take_over_producer(outbox)
        self._subscription, snapshot = factory.hub.subscribe(outbox, self._filter or EVERYTHING)
        factory.connections.add(self)
        if snapshot:
            outbox.send_snapshot(snapshot)

    def _write_frames(self, data: bytes) -> None:
        if self.state == _OPEN:
            self._write_through(data)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        outcome = self.factory.hub.ingest(payload, default_device=self._device)
        ordered = self._replies
        if ordered is None:
            if outcome.settled is None:  # no store, nothing waiting: write now
                messages = replies.for_outcome(outcome)
                if messages:
                    self._write_replies(messages)
                return
            # Made on first need: idle dashboards pay nothing for it.
            ordered = self._replies = OrderedReplies(self._write_replies)
        ordered.add(outcome)

    def _write_replies(self, messages: list[dict[str, Any]]) -> None:
        # Same framing as broadcasts (one text frame per reply), without
        # Autobahn's per-message send path, which costs more than the ingest.
        self._write_frames(b"".join([frame_text(replies.encode(m)) for m in messages]))
        self._replies_written()

    def _give_up(self, reason: str) -> None:
        self._log.info("closing WebSocket client {peer}: {reason}", peer=self.peer, reason=reason)
        self.close_with(CLOSE_SLOW_CONSUMER, b"slow consumer")

    def _connection_gone(self) -> None:
        if self._replies is not None:
            self._replies.close()
        if self._subscription is not None:
            self.factory.hub.unsubscribe(self._subscription)
            self._subscription = None


@implementer(IGoodbye)
class DashboardFactory(HubWebSocketFactory, WebSocketServerFactory):
    """Builds dashboard connections and knows the open ones (to close them on stop)."""

    protocol = DashboardProtocol  # type: ignore[assignment]  # twisted's generic Factory

    def __init__(self, hub: Hub, clock: IReactorTime, **options: Any):
        """``options``: see :meth:`HubWebSocketFactory._setup`."""
        super().__init__(server="Tantra", reactor=clock)
        self._setup(hub, clock, **options)

    @property
    def clients(self) -> set[DashboardProtocol]:
        """The open dashboards (``/stats`` counts them)."""
        return self.connections
