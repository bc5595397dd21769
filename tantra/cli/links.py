"""What the ``tantra`` commands share: hub addresses, readings checked before sending, device links.

Owns: :func:`parse_url` (``tcp://host:port``, ``udp://host:port``,
``ws://host:port/path``), :func:`make_reading` (a reading built from command
line values and checked by the hub's own validator, ``tantra.model``, so a
mistake is reported before anything is sent), and the device links
:class:`TcpLink`, :class:`UdpLink` and :class:`WsLink`: one connection each,
sending one payload and firing with the reply lines, on Twisted (TCP lines,
UDP datagrams, Autobahn's WebSocket client). :data:`LINKS` maps a scheme to
its link; an MQTT link joins it when the bus lands (``mqtt://``: a link whose
``send`` publishes and fires with the hub's reply on the device's reply topic).

Does not own: the commands (``tantra.cli.send``, ``simulate``, ``tail``).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import attrs

from tantra.cli import CommandError

SCHEMES = ("tcp", "udp", "ws")
DEFAULT_PORTS = {"tcp": 9000, "udp": 9000, "ws": 8080, "wss": 443, "http": 8080, "https": 443}


@attrs.frozen
class HubUrl:
    scheme: str
    host: str
    port: int
    path: str = "/"

    def __str__(self) -> str:
        return (
            f"{self.scheme}://{self.host}:{self.port}{self.path if self.scheme[:2] == 'ws' else ''}"
        )


def parse_url(text: str, schemes: tuple[str, ...] = SCHEMES) -> HubUrl:
    """A hub address; :class:`CommandError` names what is wrong with it."""
    parts = urlsplit(text)
    if parts.scheme not in schemes:
        raise CommandError(f"--url {text!r}: the scheme must be one of {', '.join(schemes)}")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise CommandError(f"--url {text!r}: {error}") from None
    if not parts.hostname:
        raise CommandError(f"--url {text!r}: no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HubUrl(parts.scheme, parts.hostname, port, path)


def parse_value(text: str) -> int | float | bool:
    """A reading's value from the command line: a number, ``true`` or ``false``."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"value {text!r}: must be a number, true or false") from None


def make_reading(
    sensor: str,
    value: int | float | bool,
    *,
    device: str | None = None,
    unit: str | None = None,
    seq: int | None = None,
    ts: int | None = None,
    now_ms: int = 0,
) -> dict[str, Any]:
    """The reading as a device would send it, checked by the hub's validator first."""
    from tantra.model import parse_payload

    reading: dict[str, Any] = {"sensor": sensor, "value": value}
    for name, given in (("device", device), ("unit", unit), ("seq", seq), ("ts", ts)):
        if given is not None:
            reading[name] = given
    parsed = parse_payload(json.dumps(reading), default_device="cli", now_ms=now_ms)
    if parsed.errors:
        raise CommandError(f"the hub would refuse this reading: {parsed.errors[0].detail}")
    return reading


def encode(reading: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return json.dumps(reading, separators=(",", ":")).encode()


class LinkClosed(Exception):
    """The hub closed the connection (or never opened it)."""


class _Replies:
    """Reply lines arriving on a link, handed to whoever waits for the next one."""

    def __init__(self) -> None:
        self.waiting: deque[Any] = deque()
        self.closed: str | None = None

    def next(self) -> Any:
        from twisted.internet import defer

        if self.closed is not None:
            return defer.fail(LinkClosed(self.closed))
        waiter: defer.Deferred = defer.Deferred()
        self.waiting.append(waiter)
        return waiter

    def arrived(self, line: bytes) -> None:
        if self.waiting:
            self.waiting.popleft().callback(line)

    def close(self, why: str) -> None:
        self.closed = why
        while self.waiting:
            self.waiting.popleft().errback(LinkClosed(why))


class TcpLink:
    """One TCP connection speaking the hub's newline-delimited JSON."""

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float) -> Any:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.protocols.basic import LineOnlyReceiver

        replies = _Replies()

        class Lines(LineOnlyReceiver):
            delimiter = b"\n"
            MAX_LENGTH = 1 << 20

            def lineReceived(self, line: bytes) -> None:
                replies.arrived(line)

            def connectionLost(self, reason: Any = None) -> None:
                replies.close("the hub closed the connection")

        endpoint = TCP4ClientEndpoint(reactor, url.host, url.port, timeout=timeout)
        protocol = Lines()
        return connectProtocol(endpoint, protocol).addCallback(lambda _: cls(protocol, replies))

    def __init__(self, protocol: Any, replies: _Replies):
        self._protocol = protocol
        self.replies = replies

    def send(self, payload: bytes) -> None:
        self._protocol.sendLine(payload)

    def close(self) -> None:
        self._protocol.transport.loseConnection()


class UdpLink:
    """A connected UDP socket: one payload per datagram, the reply datagram's lines back."""

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float) -> Any:
        import socket

        from twisted.internet import defer
        from twisted.internet.protocol import DatagramProtocol

        replies = _Replies()

        class Datagrams(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                for line in data.splitlines():
                    if line.strip():
                        replies.arrived(line)

            def connectionRefused(self) -> None:
                replies.close("nothing listens on that UDP port")

        try:
            host = socket.gethostbyname(url.host)  # connect() wants an address
        except OSError as error:
            return defer.fail(CommandError(f"{url.host}: {error}"))
        protocol = Datagrams()
        port = reactor.listenUDP(0, protocol)
        port.connect(host, url.port)
        return defer.succeed(cls(protocol, port, replies))

    def __init__(self, protocol: Any, port: Any, replies: _Replies):
        self._protocol = protocol
        self._port = port
        self.replies = replies

    def send(self, payload: bytes) -> None:
        self._protocol.transport.write(payload)

    def close(self) -> None:
        self._port.stopListening()


class WsLink:
    """A WebSocket client (Autobahn): a device publishing readings as text messages.

    The hub also broadcasts every reading (the sender's own included) to it;
    those are handed to ``on_reading`` (``tantra tail``) and are not replies.
    """

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float, on_reading: Any = None) -> Any:
        from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
        from twisted.internet import defer
        from twisted.internet.endpoints import TCP4ClientEndpoint

        replies = _Replies()
        opened: defer.Deferred = defer.Deferred()

        class Client(WebSocketClientProtocol):
            def onOpen(self) -> None:
                opened.callback(cls(self, replies))

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                try:
                    message = json.loads(payload)
                except ValueError:
                    return
                if isinstance(message, dict) and "sensor" in message:
                    if on_reading is not None:
                        on_reading(message)
                    return
                replies.arrived(payload)

            def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
                why = f"the hub closed the WebSocket ({code}{': ' + reason if reason else ''})"
                replies.close(why)
                if not opened.called:
                    opened.errback(LinkClosed(why))

        address = f"{url.scheme}://{url.host}:{url.port}{url.path}"
        factory = WebSocketClientFactory(address)
        factory.protocol = Client
        factory.setProtocolOptions(openHandshakeTimeout=timeout, maxMessagePayloadSize=0)
        endpoint = TCP4ClientEndpoint(reactor, url.host, url.port, timeout=timeout)
        connecting = endpoint.connect(factory)

        def failed(failure: Any) -> None:
            if not opened.called:
                opened.errback(failure)

        connecting.addErrback(failed)
        return opened

    def __init__(self, protocol: Any, replies: _Replies):
        self._protocol = protocol
        self.replies = replies

    def send(self, payload: bytes) -> None:
        self._protocol.sendMessage(payload)

    def close(self) -> None:
        self._protocol.sendClose(1000)


#: Scheme -> link. ``mqtt`` joins here when the MQTT bus lands.
LINKS: dict[str, Any] = {"tcp": TcpLink, "udp": UdpLink, "ws": WsLink}


def connection_error(error: BaseException, url: HubUrl) -> CommandError:
    """One line for a link that could not open (refused, timed out, closed)."""
    if isinstance(error, CommandError):
        return error
    text = str(error).strip() or type(error).__name__
    return CommandError(f"cannot reach the hub at {url}: {text}", status=1)


def run_reactor(main: Any, *args: Any) -> Any:
    """Run ``await main(reactor, *args)`` on Twisted's reactor and return its result.

    Why not ``task.react``: it ends the process with ``sys.exit``, and the
    commands print and choose their exit status after the reactor stops.
    Ctrl-C stops the reactor; the command then sees ``KeyboardInterrupt``.
    """
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    result: list[Any] = []

    def start() -> None:
        running = defer.ensureDeferred(main(reactor, *args))
        running.addBoth(result.append)
        running.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if not result:
        raise KeyboardInterrupt
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
