"""WAMP clients at ``ws://host:port/wamp``: Autobahn's WAMP-over-WebSocket transport, our router.

Owns: the I/O side of the router. Autobahn does the WebSocket handshake,
subprotocol negotiation (``wamp.2.cbor.batched``, ``wamp.2.cbor``,
``wamp.2.msgpack.batched``, ``wamp.2.msgpack``, ``wamp.2.json.batched``,
``wamp.2.json``), framing, pings and the WAMP serializers. Each connection
turns bytes into ``autobahn.wamp.message`` objects for its
:class:`~tantra.wamp.session.RouterSession`, and sends that session's
messages through a bounded :class:`~tantra.wamp.outbox.MessageOutbox`.
A payload that is not WAMP is a protocol violation (ABORT), not a bare
WebSocket close as in Autobahn's own transport; ``tantra.wamp.parse`` decides
what each message of a payload gets. The incoming message limit is
Autobahn's (``maxMessagePayloadSize``, close 1009); the outgoing one is the
outbox's (``max_outgoing_bytes``), so a large answer fails as a WAMP ERROR.

Does not own: WAMP semantics (``tantra.wamp.session`` and the modules it
uses), the hub (``tantra.wamp.bridge``), the HTTP tree (``tantra.web.site``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.wamp import message
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.websocket.protocol import PreparedMessage
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from tantra.hub import Hub
from tantra.lifecycle import IGoodbye
from tantra.security.readers import origin_allowed
from tantra.transports.sendnow import writer_for
from tantra.transports.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_SLOW_CONSUMER,
    HubWebSocketFactory,
    HubWebSocketProtocol,
)
from tantra.wamp.events import Encoded
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.outbox import BACKLOG, DEFAULT_MAX_HELD_BYTES, MessageOutbox
from tantra.wamp.parse import parse
from tantra.wamp.peer import IWampConnection
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession


def serializers() -> list:
    """Every serializer we offer, preferred first (Autobahn's own default order).

    Chosen explicitly rather than by Autobahn's import probing, so the set does
    not change with what else is installed (UBJSON and FlatBuffers are not offered).
    """
    return [
        CBORSerializer(batched=True),
        CBORSerializer(),
        MsgPackSerializer(batched=True),
        MsgPackSerializer(),
        JsonSerializer(batched=True),
        JsonSerializer(),
    ]


def frame(payload: bytes, is_binary: bool) -> bytes:
    """One unmasked server-to-client WebSocket message (Autobahn's framing)."""
    return PreparedMessage(payload, is_binary, False, True).payloadHybi


def frame_all(items: Sequence[Encoded]) -> bytes:
    """Encoded WAMP messages as consecutive WebSocket messages, one each.

    Module-level, so an :class:`EventGroup` memoizes one framing for every
    connection of a serializer kind (like dashboards' ``encode_text_frames``).
    """
    return b"".join([PreparedMessage(p, b, False, True).payloadHybi for p, b, _ in items])


@implementer(IWampConnection)
class _Connection:
    """What the router session may do with its WebSocket: send (bounded) and close."""

    def __init__(self, protocol: WampProtocol, outbox: MessageOutbox):
        self._protocol = protocol
        self._outbox = outbox
        self.peer = protocol.peer
        # Once per subscriber per fan-out turn: no extra call level in between.
        self.send_events = outbox.send_events

    def send(self, msg: message.Message, conflation_key: Hashable | None = None) -> None:
        self._outbox.send(msg, conflation_key)

    def close(self, going_away: bool = False) -> None:
        self._outbox.flush()
        self._protocol.close_with(CLOSE_GOING_AWAY if going_away else CLOSE_NORMAL)

    def internal_error(self) -> None:
        self._protocol.factory.counters.hub.clients_dropped["internal_error"] += 1
        self._protocol.close_with(CLOSE_INTERNAL_ERROR)

    def writable(self) -> bool:
        return self._outbox.writable

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._outbox.on_writable = callback

    def pause_reading(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            transport.pauseProducing()

    def resume_reading(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            transport.resumeProducing()


class WampProtocol(HubWebSocketProtocol, WampWebSocketServerProtocol):
    """One WAMP client connection."""

    kind = "WAMP"
    factory: WampFactory
    transport: Any  # a TCP, TLS or UNIX transport behind twisted.web (twisted types it loosely)
    # Set once the WebSocket is open (onOpen).
    _router_session: RouterSession | None = None
    _outbox: MessageOutbox | None = None
    _write_through: Callable[[bytes], None] | None = None
    maxMessagePayloadSize: int  # copied from the factory's options by Autobahn (untyped there)

    def onConnect(self, request):
        allowed = self.factory.allowed_origins
        if allowed and not origin_allowed(request.headers.get("origin"), allowed):
            self.factory.counters.auth.origin_refused += 1
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        # Autobahn picks the serializer (or refuses clients that speak no WAMP).
        chosen = super().onConnect(request)
        self._serializer = keeping_disclosure(self._serializer)
        return chosen

    def _start(self) -> None:
        """Our router session on a bounded outbox (the base's onOpen, not Autobahn's,
        which would build an Autobahn client-style session)."""
        factory = self.factory
        # Straight to the socket (as dashboards): the outbox is closed before any
        # close frame (HubWebSocketProtocol.sendCloseFrame), and writes check the state.
        self._write_through = writer_for(self.transport)
        outbox = MessageOutbox(
            write=self._write_message,
            # Straight to the socket: the outbox only exists while the connection is
            # open, and it is closed before any close frame goes out.
            write_framed=self._write_through,
            frame_all=frame_all,
            serialize=self._serializer.serialize,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_stalled=self._on_stalled,
            counters=factory.counters,
            max_held_bytes=factory.max_held_bytes,
            max_message_bytes=factory.router.limits.max_outgoing_bytes,
        )
        self._take_over_producer(outbox)
        self._outbox = outbox
        self._router_session = RouterSession(factory.router, _Connection(self, outbox))
        factory.connections.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self._router_session
        if session is None:
            return
        max_uri_bytes = self.factory.router.limits.max_uri_bytes
        session.receive(parse(self._serializer, payload, isBinary, max_uri_bytes=max_uri_bytes))

    def _write_message(self, payload: bytes, is_binary: bool) -> None:
        # Framed here, not by Autobahn's sendMessage: that path checks outgoing
        # messages against the *incoming* limit and costs more than the message;
        # the outbox has applied the outgoing one (max_outgoing_bytes).
        self._write_framed(frame(payload, is_binary))

    def _write_framed(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN and self._write_through is not None:
            self._write_through(data)

    def _on_stalled(self, reason: str) -> None:
        self._log.info("closing slow WAMP client {peer} ({reason})", peer=self.peer, reason=reason)
        if self._router_session is not None:
            self._router_session.connection_lost()
        if reason == BACKLOG:
            # This client reads, but the 4001 frame sits behind what its socket
            # buffers hold: give it as long to reach it as a paused client gets,
            # not the close timeout, after which the connection would be dropped
            # without the frame ever arriving.
            self.closeHandshakeTimeout = max(self.closeHandshakeTimeout, self.factory.stall_timeout)
        self.close_with(CLOSE_SLOW_CONSUMER)

    def go_away(self) -> defer.Deferred:
        """The hub is stopping: GOODBYE was sent by the router; close with 1001."""
        if self._outbox is not None:
            self._outbox.flush()
        return super().go_away()

    def _connection_gone(self) -> None:
        if self._router_session is not None:
            self._router_session.connection_lost()
            self._router_session = None


def _no_autobahn_sessions():
    raise RuntimeError("WampProtocol makes its own router sessions")


@implementer(IGoodbye)
class WampFactory(HubWebSocketFactory, WampWebSocketServerFactory):
    """Builds WAMP connections onto one router, and knows the open ones (to close them on stop)."""

    protocol = WampProtocol

    def __init__(
        self,
        hub: Hub,
        router: Router,
        clock: IReactorTime,
        *,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        allowed_origins: tuple[str, ...] = (),
        **options: Any,
    ):
        """``options``: see :meth:`HubWebSocketFactory._setup`; ``allowed_origins``:
        browser origins allowed to connect (``--allowed-origins``; empty: any)."""
        self.allowed_origins = allowed_origins
        super().__init__(
            _no_autobahn_sessions, serializers=serializers(), server="Tantra", reactor=clock
        )
        self._setup(hub, clock, **options)
        self.router = router
        self.max_held_bytes = max_held_bytes

    def go_away(self) -> defer.Deferred:
        """Say GOODBYE to every session and close every connection with 1001."""
        self.router.shut_down()
        return super().go_away()
