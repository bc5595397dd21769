"""WAMP clients at ``ws://host:port/wamp``: Autobahn's WAMP-over-WebSocket transport, our router.

Owns: the I/O side of the router. Autobahn does the WebSocket handshake,
subprotocol negotiation (``wamp.2.cbor.batched``, ``wamp.2.cbor``,
``wamp.2.msgpack.batched``, ``wamp.2.msgpack``, ``wamp.2.json.batched``,
``wamp.2.json``), framing, pings and the WAMP serializers. Each connection
turns bytes into ``autobahn.wamp.message`` objects for its
:class:`~tantra.wamp.session.RouterSession`, and sends that session's
messages through a bounded :class:`~tantra.wamp.outbox.MessageOutbox`.
A payload Autobahn cannot parse as WAMP is a protocol violation (ABORT), not
a bare WebSocket close as in Autobahn's own transport.

Does not own: WAMP semantics (``tantra.wamp.session`` and the modules it
uses), the hub (``tantra.wamp.bridge``), the HTTP tree (``tantra.web.site``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.lifecycle import IGoodbye
from tantra.transports.dashboard import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_SLOW_CONSUMER
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.outbox import DEFAULT_MAX_HELD_BYTES, MessageOutbox
from tantra.wamp.peer import IWampConnection
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession

CLOSE_NORMAL = 1000


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


@implementer(IWampConnection)
class _Connection:
    """What the router session may do with its WebSocket: send (bounded) and close."""

    def __init__(self, protocol: WampProtocol, outbox: MessageOutbox):
        self._protocol = protocol
        self._outbox = outbox
        self.peer = protocol.peer

    def send(self, msg: message.Message, conflation_key: Hashable | None = None) -> None:
        self._outbox.send(msg, conflation_key)

    def close(self, going_away: bool = False) -> None:
        self._outbox.flush()
        self._protocol.close_websocket(CLOSE_GOING_AWAY if going_away else CLOSE_NORMAL)


class WampProtocol(WampWebSocketServerProtocol):
    """One WAMP client connection."""

    # Autobahn owns ``self.log``.
    _log = Logger()

    factory: WampFactory
    transport: Any  # a TCP, TLS or UNIX transport behind twisted.web (twisted types it loosely)

    def __init__(self) -> None:
        super().__init__()
        self._router_session: RouterSession | None = None
        self._outbox: MessageOutbox | None = None
        self._is_closed = False
        self._close_waiters: list[defer.Deferred] = []

    def onConnect(self, request):
        # Autobahn picks the serializer (or refuses clients that speak no WAMP).
        chosen = super().onConnect(request)
        self._serializer = keeping_disclosure(self._serializer)
        return chosen

    def onOpen(self) -> None:
        # Not Autobahn's onOpen: that would build an Autobahn client-style session.
        try:
            self._start_session()
        except Exception:
            self._log.failure("could not start WAMP session for {peer}", peer=self.peer)
            self.factory.counters.hub.clients_dropped["internal_error"] += 1
            self.close_websocket(CLOSE_INTERNAL_ERROR)

    def _start_session(self) -> None:
        factory = self.factory
        outbox = MessageOutbox(
            write=self._write_message,
            serialize=self._serializer.serialize,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_stalled=self._on_stalled,
            counters=factory.counters,
            max_held_bytes=factory.max_held_bytes,
        )
        # Behind twisted.web the HTTP channel is still the registered producer.
        self.transport.unregisterProducer()
        self.transport.registerProducer(outbox, True)
        self._outbox = outbox
        self._router_session = RouterSession(factory.router, _Connection(self, outbox))
        factory.connections.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self._router_session
        if session is None:
            return
        try:
            messages = self._serializer.unserialize(payload, isBinary)
        except ProtocolError as error:
            session.protocol_violation(str(error))
            return
        for msg in messages:
            try:
                session.on_message(msg)
            except Exception:
                self._log.failure(
                    "WAMP router failed on {kind} from {peer}",
                    kind=type(msg).__name__,
                    peer=self.peer,
                )
                self.factory.counters.hub.clients_dropped["internal_error"] += 1
                session.connection_lost()
                self.close_websocket(CLOSE_INTERNAL_ERROR)
                return

    def _write_message(self, payload: bytes, is_binary: bool) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(payload, is_binary)

    def _on_stalled(self, reason: str) -> None:
        self._log.info("closing slow WAMP client {peer} ({reason})", peer=self.peer, reason=reason)
        if self._router_session is not None:
            self._router_session.connection_lost()
        self.close_websocket(CLOSE_SLOW_CONSUMER)

    def onAutoPingTimeout(self) -> None:
        self.factory.counters.hub.clients_dropped["ping_timeout"] += 1
        self._log.info("WAMP client {peer} did not answer a ping", peer=self.peer)
        super().onAutoPingTimeout()

    def close_websocket(self, code: int) -> None:
        if self.state == self.STATE_OPEN:
            # Autobahn's sendClose() refuses 1001 and 1011; use the frame-level call.
            self.sendCloseFrame(code, isReply=False)

    def go_away(self) -> defer.Deferred:
        """The hub is stopping: GOODBYE was sent by the router; close with 1001."""
        if self._outbox is not None:
            self._outbox.flush()
        self.close_websocket(CLOSE_GOING_AWAY)
        return self.when_closed()

    def when_closed(self) -> defer.Deferred:
        if self._is_closed:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._close_waiters.append(waiter)
        return waiter

    def onClose(self, wasClean: bool, code, reason) -> None:
        if self._router_session is not None:
            self._router_session.connection_lost()
            self._router_session = None
        if self._outbox is not None:
            self._outbox.close()
        self.factory.connections.discard(self)
        self._is_closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)


def _no_autobahn_sessions():
    raise RuntimeError("WampProtocol makes its own router sessions")


@implementer(IGoodbye)
class WampFactory(WampWebSocketServerFactory):
    """Builds WAMP connections onto one router, and knows the open ones (to close them on stop)."""

    protocol = WampProtocol

    def __init__(
        self,
        hub: Hub,
        router: Router,
        clock: IReactorTime,
        *,
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        max_message_size: int = 65536,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        counters: Counters | None = None,
    ):
        super().__init__(_no_autobahn_sessions, serializers=serializers(), server="Tantra")
        self.hub = hub
        self.counters = counters if counters is not None else hub.counters
        self.router = router
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.max_held_bytes = max_held_bytes
        self.connections: set[WampProtocol] = set()
        self.setProtocolOptions(
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
        )

    def go_away(self) -> defer.Deferred:
        """Say GOODBYE to every session and close every connection with 1001."""
        self.router.shut_down()
        return defer.DeferredList([c.go_away() for c in list(self.connections)])
