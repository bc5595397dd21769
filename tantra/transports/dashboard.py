"""WebSocket dashboards (and WebSocket publishers) at ``ws://host:port/``.

Owns: the translation between WebSocket messages and the hub. Each connection
is one subscriber (an :class:`~tantra.outbox.Outbox` with the filter from its
query string) and one publisher (whatever it sends is ingested as readings,
replies go back to it alone), exactly like the Node.js relay it replaces.

Autobahn does the handshake, incoming frames, pings and closing. Outgoing
readings skip Autobahn's per-message path: every reading is framed once
(:func:`frame_text`), the frames of one hub turn are joined once
per filter, and each client gets one ``transport.write`` per turn.

Does not own: validation, the cache, fan-out (``tantra.hub``), back-pressure
policy (``tantra.outbox``), closing, producers and factory options (the
WebSocket base both WebSocket kinds share, ``tantra.transports.websocket``),
or the HTTP resource tree (``tantra.web.site``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from tantra import replies
from tantra.hub import EVERYTHING, Filter, Hub, IngestOutcome, Subscription
from tantra.lifecycle import IGoodbye
from tantra.model import NAME_PATTERN, NAME_RULE, Reading, device_name_for_address
from tantra.outbox import Outbox
from tantra.resume import ResumeOutbox, parse_since, resume_fetch
from tantra.security.gate import FORBIDDEN, SENDERS, Ingress
from tantra.security.readers import origin_allowed, presented_token, subscribe_scoped
from tantra.security.tokens import Token
from tantra.store.query import StoredReading
from tantra.transports import compact
from tantra.transports.ordered import OrderedReplies
from tantra.transports.sendnow import line_for, writer_for
from tantra.transports.websocket import (
    CLOSE_RESUME_AGAIN,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_REVOKED,
    HubWebSocketFactory,
    HubWebSocketProtocol,
)

FILTER_PARAMETERS = ("device", "sensor")
#: Not a filter: the token (``?token=``), taken out before the filter is read.
TOKEN_PARAMETER = "token"
_OPEN = WebSocketServerProtocol.STATE_OPEN
_NO_HEADERS: Any = MappingProxyType({})  # read-only: shared by every open dashboard
_NONE_WHEN_OPEN = ("_perMessageCompress", "autoPingPending", "autoPingPendingSent",
    "autoPingTimeoutCall", "closeHandshakeTimeoutCall", "openHandshakeTimeoutCall",
    "serverConnectionDropTimeoutCall", "trackedTimings", "localCloseCode", "localCloseReason",
    "remoteCloseCode", "remoteCloseReason", "wasNotCleanReason", "current_frame",
    "websocket_protocol_in_use", "http_request_data", "http_response_data", "http_status_line",
    "_close_waiters", "_since", "_replies", "_token", "_release_token", "_presented",
    "_wskey", "http_request_host", "http_request_path", "http_request_uri",
    "websocket_origin")  # fmt: skip
_FALSE_WHEN_OPEN = ("closedByMe", "droppedByMe", "failedByMe", "triggered", "wasClean",
    "wasCloseHandshakeTimeout", "wasMaxFramePayloadSizeExceeded",
    "wasMaxMessagePayloadSizeExceeded", "wasOpenHandshakeTimeout",
    "wasServerConnectionDropTimeout", "wasServingFlashSocketPolicyFile", "inside_message",
    "_is_closed")  # fmt: skip
#: What every dashboard holds by the time it is open, at the value almost all
#: of them keep (set by Autobahn's connectionMade and handshake, or by this
#: class): kept once on the class, not per connection (``tantra.transports.compact``).
_OPEN_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(_NONE_WHEN_OPEN),
    **dict.fromkeys(_FALSE_WHEN_OPEN, False),
    "send_state": WebSocketServerProtocol.SEND_STATE_GROUND,
    "state": _OPEN,
    "data": b"",
    "autoPingPendingSeq": 0,
    "http_headers": _NO_HEADERS,
    "http_request_params": _NO_HEADERS,
    "websocket_protocols": (),
    "websocket_extensions": (),
    "websocket_extensions_in_use": (),
    "websocket_version": 13,
    "connected": 1,
}


def _autobahn_text_frame(payload: bytes) -> bytes:
    """Autobahn's own unmasked text frame for ``payload`` (the framing is the library's)."""
    return PreparedMessage(payload, False, False, True).payloadHybi


#: Autobahn's header of an unmasked text frame for each payload length below
#: 126 (almost every reading), read off its ``PreparedMessage`` once at import.
_SHORT_TEXT_HEADERS = tuple(_autobahn_text_frame(bytes(n))[: -n or None] for n in range(126))


def frame_text(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame (RFC 6455 section 5.2).

    The framing is Autobahn's: building a ``PreparedMessage`` per reading cost
    11 % of the hub's time per WebSocket reading (issue 14), so the headers of
    short frames, which depend on the length alone, are taken from it once
    and joined to the payload; longer payloads are framed by Autobahn each
    time. A test holds every length boundary equal to ``PreparedMessage``.
    """
    length = len(payload)
    if length < 126:
        return _SHORT_TEXT_HEADERS[length] + payload
    return _autobahn_text_frame(payload)


def encode_text_frames(readings: Sequence[Reading]) -> bytes:
    """All readings of a batch as consecutive text frames, one reading per frame.

    A module-level function, so every dashboard shares the memo in
    :meth:`Batch.encoded` and a turn's frames are built once per filter. Each
    reading's frame is built once too (:meth:`Reading.framed`): a dashboard
    joining a hub with 100k sensors joins cached frames instead of framing
    the whole cache again.
    """
    return b"".join([reading.framed(frame_text) for reading in readings])


def encode_stored_frames(rows: Sequence[StoredReading]) -> bytes:
    """History rows (a resume's replay) as text frames, one reading per frame."""
    return b"".join([frame_text(orjson.dumps(row.to_dict())) for row in rows])


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
        self._since: int | None = None  # ?since=ID: history first (tantra.resume)
        self._device = "unknown"
        self._replies: OrderedReplies | None = None  # with a store: acks wait for commits
        # Not ``_send``: Autobahn's own ``_send`` drains its send queue.
        self._write_through: Callable[[bytes], None] = self._not_connected
        self._subscription: Subscription | None = None
        self._token: Token | None = None
        self._release_token: Callable[[], None] | None = None
        self._presented: str | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Through the HTTP site the token was taken out of the request already
        # (tantra.security.web), so no log line can show it.
        self._presented = getattr(self.factory, "presented_secret", None)
        # Autobahn keeps an (almost always empty) deque per connection for
        # chopped or synchronous sends, which the hub never makes; a deque
        # costs 760 bytes even when empty, a list subclass 56. Per idle
        # dashboard that is the difference between beating the Node relay's
        # memory per client and not.
        self.send_queue = _SendQueue()  # type: ignore[assignment]  # deque's popleft only

    def onConnect(self, request):
        factory = self.factory
        # Autobahn's request.params drops blank values (``?device=``), which
        # would subscribe to everything: parse the raw query ourselves.
        query = query_of(self.http_request_uri)
        secret = query.pop(TOKEN_PARAMETER, None)
        if not origin_allowed(request.headers.get("origin"), factory.allowed_origins):
            factory.counters.auth.origin_refused += 1
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        auth = factory.ingress.auth if factory.ingress is not None else None
        if auth is not None:
            presented = self._presented
            if presented is None:  # a WebSocket port of our own, without the HTTP site
                presented = presented_token(request.headers, {"token": secret} if secret else {})
            self._presented = None
            self._token = auth.login(presented, "websocket")
            if self._token is None:
                raise ConnectionDeny(401, "unauthorized")
        try:
            since = query.pop("since", None)
            self._filter = filter_from_query(query)
            if since is not None:
                self._since = parse_since(since, self.factory.hub)
        except ValueError as error:  # BadSince too
            self.factory.hub.reject("bad_subscription", source=str(request.peer), detail=str(error))
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, str(error)) from None
        self._device = device_name_for_address(self.transport.getPeer())
        return None

    def onOpen(self) -> None:
        super().onOpen()
        self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Drop the raw handshake Autobahn keeps (~1 KB a client; unused once open),
        then keep on the class what every open dashboard holds alike (~2.5 KB).

        A hub holds thousands of idle dashboards: per-client memory is what
        limits it, so nothing is kept that only the handshake needed.
        """
        forgotten: Any = None
        self.http_request_data = self.http_response_data = forgotten
        self.http_headers = self.http_request_params = _NO_HEADERS
        self.http_status_line = forgotten
        # the request line, key, origin and offers: read while the handshake is judged
        self._wskey = self.websocket_origin = forgotten
        self.http_request_host = self.http_request_path = self.http_request_uri = forgotten
        no_offers: Any = ()  # shared and immutable: nothing appends to them once open
        self.websocket_protocols = self.websocket_extensions = no_offers
        if not self.websocket_extensions_in_use:  # permessage-deflate keeps its own
            self.websocket_extensions_in_use = no_offers
        # Autobahn's TransportDetails (~350 bytes with its dict) serves the
        # handshake and WAMP; a dashboard reads only ``peer``, copied at connect.
        self._transport_details = forgotten
        compact.compact(self, _SHARED_NAMES)

    def _not_connected(self, data: bytes) -> None:
        raise RuntimeError("no transport yet")

    def _start(self) -> None:
        """Subscribe with the filter of the handshake; the snapshot goes out first."""
        factory = self.factory
        self._write_through = writer_for(self.transport)
        if self._since is not None:
            self._resume(self._since)
            return
        outbox = Outbox(
            # Straight to the socket: the outbox is closed before any close frame
            # (see HubWebSocketProtocol.sendCloseFrame), so it never writes after one.
            write=self._write_through,
            encode=encode_text_frames,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_give_up=self._give_up,
            counters=factory.counters,
            line=line_for(self.transport),
        )
        self._take_over_producer(outbox)
        token = self._token
        if token is not None:
            auth = factory.ingress.auth  # type: ignore[union-attr]
            self._release_token = auth.hold(token, self._revoked)  # type: ignore[union-attr]
        scope = token.scope if token is not None else None
        self._subscription, snapshot = subscribe_scoped(
            factory.hub, outbox, self._filter or EVERYTHING, scope
        )
        factory.connections.add(self)
        if snapshot:
            outbox.send_snapshot(snapshot)

    def _resume(self, since: int) -> None:
        """``?since=ID``: the stored readings after it, then live, each once (``tantra.resume``)."""
        factory = self.factory
        filter_ = self._filter or EVERYTHING
        encode, encode_stored = encode_text_frames, encode_stored_frames
        token = self._token
        if token is not None:
            auth = factory.ingress.auth  # type: ignore[union-attr]
            self._release_token = auth.hold(token, self._revoked)  # type: ignore[union-attr]
            scope = token.scope
            if not scope.everything:
                # A reader resumes within its scope, history and live alike.
                narrowed, check = scope.narrow(filter_)
                if narrowed is None:  # nothing it may see: an empty, live-only stream
                    self._since = None
                    self._release_token()
                    self._release_token = None
                    self._start()
                    return
                filter_ = narrowed
                if check:

                    def encode(readings, scope=scope):
                        return encode_text_frames(scope.restrict(readings))

                    def encode_stored(rows, scope=scope):
                        return encode_stored_frames(scope.restrict(rows))

        outbox = ResumeOutbox(
            write=self._write_through,
            encode=encode,
            encode_stored=encode_stored,
            fetch=resume_fetch(factory.hub, filter_),
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_give_up=self._give_up,
            counters=factory.counters,
        )
        self._take_over_producer(outbox)
        self._subscription = outbox.join(factory.hub, filter_, since)
        factory.connections.add(self)

    def _write_frames(self, data: bytes) -> None:
        if self.state == _OPEN:
            self._write_through(data)

    def _revoked(self) -> None:
        self._release_token = None
        self.close_with(CLOSE_TOKEN_REVOKED, b"token revoked")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        ingress = self.factory.ingress
        token = self._token
        if ingress is None:
            outcome = self.factory.hub.ingest(payload, default_device=self._device)
        elif token is not None and token.kind not in SENDERS:
            self.factory.counters.auth.forbidden += 1
            detail = f"a {token.kind} token may not send readings"
            self._reply_now_or_in_order([{"error": FORBIDDEN, "detail": detail}])
            return
        else:
            outcome = ingress.ingest(payload, default_device=self._device, token=token)
        self._reply_to(outcome)

    def _reply_to(self, outcome: IngestOutcome) -> None:
        """Write a payload's replies now, or in payload order once any waits for a commit."""
        ordered = self._replies
        if ordered is None:
            if outcome.settled is None:  # nothing to wait for: write now
                if outcome.acks or outcome.errors:  # most devices ask for no reply
                    self._write_replies(replies.for_outcome(outcome))
                return
            # Made on first need: idle dashboards pay nothing for it; from now
            # on replies keep payload order.
            ordered = self._replies = OrderedReplies(
                self._write_replies, on_full=self._replies_full, on_room=self._replies_room
            )
        ordered.add(outcome)

    def _replies_full(self) -> None:
        """Too many payloads wait behind a commit: stop reading (as TCP does)."""
        if self._gate is not None:
            self._gate.replies_full()

    def _replies_room(self) -> None:
        if self._gate is not None:
            self._gate.replies_room()

    def _onMessages(self, payloads: list[bytes]) -> None:
        """The whole messages of one receive (``tantra.transports.wholeframes``), in order.

        Without devices checks or commits to wait for, one hub call ingests
        them all (:meth:`Hub.ingest_many`); otherwise each goes through
        :meth:`onMessage`, as a message Autobahn delivered would.
        """
        if self.factory.ingress is not None or self._replies is not None:
            for payload in payloads:
                if self.state != _OPEN:
                    return  # as the per-message path: nothing after a close
                self.onMessage(payload, False)  # isBinary: the hub reads both alike
            return
        for outcome in self.factory.hub.ingest_many(payloads, default_device=self._device):
            self._reply_to(outcome)  # as onMessage replies to each

    # Autobahn's ``_onMessage`` (the adapter's hook that every received message
    # passes, ``tantra.transports.wholeframes`` included) only calls ``onMessage``:
    # one Python call less per reading (issue 14).
    _onMessage = onMessage

    def _reply_now_or_in_order(self, messages: list[dict[str, Any]]) -> None:
        """Replies that wait for no commit, behind any that do (payload order is kept)."""
        if self._replies is None:
            self._write_replies(messages)
        else:
            self._replies.add_messages(messages)

    def _write_replies(self, messages: list[dict[str, Any]]) -> None:
        # Same framing as broadcasts (one text frame per reply), without
        # Autobahn's per-message send path, which costs more than the ingest.
        self._write_frames(b"".join([frame_text(replies.encode(m)) for m in messages]))
        self._replies_written()

    def _give_up(self, reason: str) -> None:
        self._log.info("closing WebSocket client {peer}: {reason}", peer=self.peer, reason=reason)
        if self._since is None:
            self.close_with(CLOSE_SLOW_CONSUMER, b"slow consumer")
        else:  # a resuming client reconnects with since = the last id it got
            self.close_with(CLOSE_RESUME_AGAIN, f"resume again: {reason}".encode())

    def _connection_gone(self) -> None:
        if self._release_token is not None:
            self._release_token()
            self._release_token = None
        if self._replies is not None:
            self._replies.close()
        if self._subscription is not None:
            self.factory.hub.unsubscribe(self._subscription)
            self._subscription = None


compact.share(DashboardProtocol, _OPEN_DEFAULTS)
_SHARED_NAMES = tuple(_OPEN_DEFAULTS)


@implementer(IGoodbye)
class DashboardFactory(HubWebSocketFactory, WebSocketServerFactory):
    """Builds dashboard connections and knows the open ones (to close them on stop)."""

    protocol = DashboardProtocol  # type: ignore[assignment]  # twisted's generic Factory

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        ingress: Ingress | None = None,
        allowed_origins: Sequence[str] = (),
        **options: Any,
    ):
        """``options``: see :meth:`HubWebSocketFactory._setup`.

        ``ingress``: device checks, and with auth its tokens (``tantra.security``);
        ``allowed_origins``: the browser origins allowed to connect (empty: any).
        """
        super().__init__(server="Tantra", reactor=clock)
        self._setup(hub, clock, **options)
        self.ingress = ingress
        self.allowed_origins = tuple(allowed_origins)
        #: The token of the request being upgraded (``tantra.security.web``).
        self.presented_secret: str | None = None

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        """Autobahn's, then the options on a protocol class of this factory's own.

        Autobahn copies every option onto each connection unless its class
        has it already: with the options on the class, a connection holds
        none of them (``tantra.transports.compact``).
        """
        super().setProtocolOptions(**options)
        self.protocol = compact.with_options(  # type: ignore[assignment]
            DashboardProtocol, self, DashboardProtocol.CONFIG_ATTRS
        )

    @property
    def clients(self) -> set[DashboardProtocol]:
        """The open dashboards (``/stats`` counts them)."""
        return self.connections
