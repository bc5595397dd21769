"""Raw device transports: newline-delimited JSON over TCP, one payload per UDP datagram.

Owns: framing (lines, datagrams), the per-connection limits (line length, idle
timeout), the UDP reply rules (replies to the source, never more bytes than
the request, error replies rate-limited per source address) and how replies
are written. Every payload goes to :meth:`tantra.hub.Hub.ingest`.

Does not own: validation or delivery (``tantra.hub``), reply wording
(``tantra.replies``), rate-limit arithmetic (``tantra.ratelimit``).
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from tantra import replies
from tantra.counters import Counters
from tantra.hub import Hub
from tantra.lifecycle import IGoodbye
from tantra.model import device_name_for_address, device_name_for_peer
from tantra.ratelimit import SourceRateLimiter
from tantra.security.gate import SENDERS, UNAUTHORIZED, Ingress
from tantra.security.tokens import Token
from tantra.transports.backpressure import ReplyGate
from tantra.transports.ordered import OrderedReplies
from tantra.transports.websocket import DEFAULT_REPLY_BUFFER

LINE_TOO_LONG = "line_too_long"
IDLE_TIMEOUT = "idle_timeout"
DATAGRAM_TOO_LONG = "datagram_too_long"

#: The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP header bytes).
MAX_DATAGRAM = 65507
#: What the UDP port reads at once: above any datagram, so none is truncated
#: (Twisted's default, 8192, silently cut larger ones).
UDP_READ_SIZE = 65536

_log = Logger()


def _nothing() -> None:
    """What a connection without a token releases."""


@implementer(IHalfCloseableProtocol)
class DeviceLineProtocol(LineOnlyReceiver, TimeoutMixin):
    """One TCP device: each line is a reading or a batch; replies are lines.

    ``LineOnlyReceiver`` rather than ``LineReceiver``: it splits a chunk into
    lines once, where ``LineReceiver`` re-copies the rest of the chunk for every
    line (quadratic in the lines per read at high ingest rates).

    Half-closeable because ``printf ... | nc host 9000`` and many devices send,
    then shut down their side and wait for the answer: end of input must not
    throw away the replies still to be written.
    """

    delimiter = b"\n"
    factory: DeviceLineFactory
    transport: Any  # TCP, TLS or UNIX: half-closeable (twisted types it as ITransport | None)

    def connectionMade(self) -> None:
        factory = self.factory
        # One byte over --max-line for the CR of a CRLF ending, which is not part
        # of the line; an LF-ended line that uses that byte is refused in _handle_line.
        self.MAX_LENGTH = factory.max_line + 1
        self.callLater = factory.clock.callLater  # type: ignore[method-assign,assignment]
        self._device = device_name_for_address(self.transport.getPeer())
        self._closing = False
        self._held: list[bytes] = []  # lines read but not handled while replies back up
        self._token: Token | None = None  # with --auth: set by the first line
        self._release_token = _nothing
        # Replies the device does not read stop us reading from it (see backpressure).
        self.transport.bufferSize = factory.reply_buffer
        self._gate = ReplyGate(
            self,
            clock=factory.clock,
            stall_timeout=factory.stall_timeout,
            on_give_up=self._replies_unread,
            counters=factory.counters,
        )
        self.transport.registerProducer(self._gate, True)
        # Replies waiting behind a commit stop us reading too (refusals and
        # payloads without seq would otherwise queue without bound).
        self._replies = OrderedReplies(
            self._write_replies, on_full=self.transport.pauseProducing, on_room=self.resumeProducing
        )
        factory.connections.add(self)
        self.setTimeout(factory.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._held or self._blocked():
            # The device has not read its replies, or too many wait for a
            # commit: keep the rest of this read (at most one read) for later.
            self._held.append(line)
            return
        self._handle_line(line)

    def _blocked(self) -> bool:
        """Two independent reasons not to read: unread replies (the gate) and
        replies waiting behind a commit (``OrderedReplies.full``)."""
        return self._gate.paused or self._replies.full

    def pauseProducing(self) -> None:
        """The gate's word that replies back up: stop reading from the device."""
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Replies drained (the gate's word) or waiting ones written (``on_room``):
        handle the held lines, then read again if neither reason still holds."""
        held, self._held = self._held, []
        for index, line in enumerate(held):
            if self._closing:
                return
            if self._blocked():
                self._held = held[index:]
                return
            self._handle_line(line)
        if not self._blocked():
            self.transport.resumeProducing()

    def _replies_unread(self, reason: str) -> None:
        _log.info(
            "dropping TCP device {device}: replies unread for {seconds:g} s",
            device=self._device,
            seconds=self.factory.stall_timeout,
        )
        self._closing = True
        self._held = []
        self.transport.abortConnection()

    def _handle_line(self, line: bytes) -> None:
        if self._closing:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        elif len(line) == self.MAX_LENGTH:  # the byte kept for a CR, without one
            self.lineLengthExceeded(line)
            return
        if not line or line.isspace():
            return  # an empty line is a keep-alive
        factory = self.factory
        if factory.ingress is None:
            outcome = factory.hub.ingest(line, default_device=self._device)
        elif factory.ingress.auth is not None and self._token is None:
            self._log_in(line)
            return
        else:
            outcome = factory.ingress.ingest(line, default_device=self._device, token=self._token)
        if outcome.settled is not None or outcome.acks or outcome.errors:
            self._replies.add(outcome)  # else it owes no reply (most lines): nothing to order

    def _write_replies(self, messages: list[dict[str, Any]]) -> None:
        self.transport.writeSequence(
            [part for message in messages for part in (replies.encode(message), b"\n")]
        )

    def _log_in(self, line: bytes) -> None:
        """The first line under ``--auth``: ``{"auth": TOKEN}``, else unauthorized and close."""
        auth = self.factory.ingress.auth  # type: ignore[union-attr]
        assert auth is not None
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            document = None
        secret = document.get("auth") if isinstance(document, dict) else None
        token = auth.login(secret if isinstance(secret, str) else None, "tcp")
        if token is not None and token.kind not in SENDERS:
            auth.stats.refused["tcp:wrong_kind"] += 1
            token = None
        if token is None:
            detail = 'the first line must be {"auth": TOKEN} with a device token'
            self._close_with_error(UNAUTHORIZED, detail)
            return
        self._token = token
        if token.device is not None:
            self._device = token.device
        self._release_token = auth.hold(token, self._revoked)
        self._replies.add_messages([{"ok": "auth", "device": token.device}])

    def _revoked(self) -> None:
        self._close_with_error(UNAUTHORIZED, "token revoked")

    def lineLengthExceeded(self, line: bytes) -> None:
        detail = f"line longer than {self.factory.max_line} bytes; closing the connection"
        self.factory.hub.reject(LINE_TOO_LONG, source=self._device, detail=detail)
        self._close_with_error(LINE_TOO_LONG, detail)

    def timeoutConnection(self) -> None:
        self.factory.counters.hub.clients_dropped[IDLE_TIMEOUT] += 1
        self._close_with_error(
            IDLE_TIMEOUT, f"no data for {self.factory.idle_timeout:g} s; closing the connection"
        )

    def _close_with_error(self, code: str, detail: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._take_partial_line()
        self.transport.write(replies.encode({"error": code, "detail": detail}) + b"\n")
        self.transport.loseConnection()

    def finish(self) -> None:
        """Stop taking readings, write what is owed, then signal end of data.

        A plain close while the device's next lines sit unread in our socket
        makes the kernel send a reset, and a reset can destroy acks the device
        has not read yet; it would then re-send readings that were accepted.
        So: shut down our sending side only (after the pending replies), keep
        reading and ignoring, and close when the device closes (or when the
        reactor stops).
        """
        self._closing = True
        self._take_partial_line()
        # Acks that wait for a commit are owed too (tantra.commits).
        self._replies.when_written().addCallback(lambda _: self.transport.loseWriteConnection())

    def readConnectionLost(self) -> None:
        """The device has sent everything: a last line without ``\n`` still counts."""
        rest = self._take_partial_line()
        if rest and not self._closing:
            self.lineReceived(rest)  # after any held lines
        self._closing = True
        # After the pending replies (those waiting for a commit too) are written.
        self._replies.when_written().addCallback(lambda _: self.transport.loseConnection())

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def _take_partial_line(self) -> bytes:
        """Empty LineOnlyReceiver's buffer of bytes not yet ended by a newline."""
        rest, self._buffer = self._buffer, b""
        return rest

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)
        self._release_token()
        self._gate.close()
        self._replies.close()
        self._held = []
        self.factory.connection_gone(self)


@implementer(IGoodbye)
class DeviceLineFactory(Factory):
    """Makes TCP device connections and closes them gracefully on stop."""

    protocol = DeviceLineProtocol  # type: ignore[assignment]  # twisted's generic Factory

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        max_line: int,
        idle_timeout: float,
        reply_buffer: int = DEFAULT_REPLY_BUFFER,
        stall_timeout: float = 30.0,
        counters: Counters | None = None,
        ingress: Ingress | None = None,
    ):
        self.hub = hub
        self.clock = clock
        self.counters = counters if counters is not None else hub.counters
        #: Device checks and rate limits (``tantra.security``); None: straight to the hub.
        self.ingress = ingress
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.reply_buffer = reply_buffer
        self.stall_timeout = stall_timeout
        self.connections: set[DeviceLineProtocol] = set()
        self._gone_waiters: dict[DeviceLineProtocol, defer.Deferred] = {}

    def connection_gone(self, connection: DeviceLineProtocol) -> None:
        self.connections.discard(connection)
        waiter = self._gone_waiters.pop(connection, None)
        if waiter is not None:
            waiter.callback(None)

    def go_away(self) -> defer.Deferred:
        """Hang up on every device once its pending replies (acks) are written.

        Fires when all are gone. See :meth:`DeviceLineProtocol.finish` for why
        this is a half-close rather than a plain close.
        """
        waiters = []
        for connection in list(self.connections):
            waiter = self._gone_waiters.setdefault(connection, defer.Deferred())
            waiters.append(waiter)
            connection.finish()
        return defer.DeferredList(waiters)


class DeviceDatagramProtocol(DatagramProtocol):
    """UDP devices: each datagram is a reading or a batch; ONE reply datagram goes to its source.

    UDP sources can be forged, so a reply must never amplify a request: at
    most one reply datagram per request datagram, never larger than it, and
    error replies limited per source (``--udp-error-rate``). What it sends
    back is counted in ``counters.udp`` (``/stats`` section ``udp``).
    """

    transport: Any  # the UDP port once listening (twisted types it as IUDPTransport | None)

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        *,
        error_rate: float,
        counters: Counters | None = None,
        ingress: Ingress | None = None,
    ):
        self.hub = hub
        self.clock = clock
        self.counters = counters if counters is not None else hub.counters
        #: With ``--auth`` every datagram must be signed (``tantra.security.signing``).
        self.ingress = ingress
        self.limiter = SourceRateLimiter(error_rate)

    def datagramReceived(self, data: bytes, addr) -> None:
        host = addr[0]
        if not data or data.isspace():
            return  # an empty datagram is a keep-alive; any reply would be bigger
        if len(data) > MAX_DATAGRAM:
            detail = f"datagram longer than {MAX_DATAGRAM} bytes"
            self.hub.reject(DATAGRAM_TOO_LONG, source=host, detail=detail)
            self._reply([{"error": DATAGRAM_TOO_LONG, "detail": detail}], True, len(data), addr)
            return
        if self.ingress is None:
            outcome = self.hub.ingest(data, default_device=device_name_for_peer(host))
        elif self.ingress.auth is not None:
            signed = self.ingress.ingest_signed(data)
            if signed is None:
                return  # unsigned or forged: never answered (the source may be forged too)
            outcome = signed
        else:
            outcome = self.ingress.ingest(data, default_device=device_name_for_peer(host))
        has_errors = bool(outcome.errors)
        if outcome.settled is None:
            if has_errors or outcome.acks:  # most datagrams owe no reply
                self._reply(replies.for_outcome(outcome), has_errors, len(data), addr)
            return
        # The ack waits for the commit (a history store) or for the broadcast
        # (none; tantra.commits); readings that were not stored get errors, no ack.
        outcome.settled.addCallbacks(
            lambda _: self._reply(replies.for_outcome(outcome), has_errors, len(data), addr),
            lambda reason: self._reply(
                replies.for_outcome(outcome._replace(acks=())), has_errors, len(data), addr
            ),
        )

    def _reply(self, messages: list[dict[str, Any]], has_errors: bool, size: int, addr) -> None:
        """At most one datagram, never larger than the request (``size``), errors rate-limited."""
        host = addr[0]
        if has_errors and not self.limiter.allow(host, self.clock.seconds()):
            kept = [message for message in messages if "error" not in message]
            self.counters.hub.replies_suppressed += len(messages) - len(kept)
            messages = kept
        if not messages:
            return
        datagram, dropped = replies.one_datagram(messages, size)
        self.counters.hub.replies_suppressed += dropped
        if not datagram or self.transport is None:
            return
        try:
            self.transport.write(datagram, addr)
        except OSError as error:
            _log.info("could not reply to {addr}: {error}", addr=addr, error=error)
            return
        self.counters.udp.reply_datagrams += 1
        self.counters.udp.reply_bytes += len(datagram)
