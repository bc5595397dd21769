"""What the ``tantra`` commands share: hub addresses, readings checked before sending, device links.

Owns: :func:`parse_url` (``tcp://host:port``, ``udp://host:port``,
``ws://host:port/path``), :func:`make_reading` (a reading built from command
line values and checked by the hub's own validator, ``tantra.model``, so a
mistake is reported before anything is sent), and the device links
:class:`TcpLink`, :class:`UdpLink` and :class:`WsLink`: one connection each,
sending one payload and firing with the reply lines, on Twisted (TCP lines,
UDP datagrams, Autobahn's WebSocket client), and :class:`MqttLink` (a
device on a broker the hub bridges: ``mqtt://broker:1883/PREFIX?device=D``
publishes on ``PREFIX/in/D`` and reads ``PREFIX/ack/D`` and
``PREFIX/error/D``). :data:`LINKS` maps a scheme to its link.

Does not own: the commands (``tantra.cli.send``, ``simulate``, ``tail``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import attrs

from tantra.cli import CommandError

SCHEMES = ("tcp", "udp", "ws", "mqtt")
DEFAULT_PORTS = {
    "tcp": 9000, "udp": 9000, "ws": 8080, "wss": 443, "http": 8080, "https": 443, "mqtt": 1883,
}  # fmt: skip


@attrs.frozen
class HubUrl:
    scheme: str
    host: str
    port: int
    path: str = "/"
    #: Only MQTT uses credentials (the broker's); never printed.
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    def __str__(self) -> str:
        return (
            f"{self.scheme}://{self.host}:{self.port}{self.path if self.scheme[:2] == 'ws' else ''}"
        )


def parse_url(text: str, schemes: tuple[str, ...] = SCHEMES) -> HubUrl:
    """A hub address; :class:`CommandError` names what is wrong with it."""
    try:
        parts = urlsplit(text)
    except ValueError as error:  # "Invalid IPv6 URL": an unclosed [
        raise CommandError(f"--url {text!r}: {error}") from None
    if parts.scheme not in schemes:
        raise CommandError(f"--url {text!r}: the scheme must be one of {', '.join(schemes)}")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise CommandError(f"--url {text!r}: {error}") from None
    if not parts.hostname:
        raise CommandError(f"--url {text!r}: no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HubUrl(parts.scheme, parts.hostname, port, path, parts.username, parts.password)


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
    """One TCP connection speaking the hub's newline-delimited JSON.

    With a ``token`` (a hub started with ``--auth``) the first line is
    ``{"auth": TOKEN}`` and the link opens once the hub said ``ok``.
    """

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float, token: str | None = None) -> Any:
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
        opened = connectProtocol(endpoint, protocol).addCallback(lambda _: cls(protocol, replies))
        if token is not None:
            opened.addCallback(_log_in, token, reactor, timeout)
        return opened

    def __init__(self, protocol: Any, replies: _Replies):
        self._protocol = protocol
        self.replies = replies

    def send(self, payload: bytes) -> None:
        self._protocol.sendLine(payload)

    def close(self) -> None:
        self._protocol.transport.loseConnection()


def _log_in(link: TcpLink, token: str, reactor: Any, timeout: float) -> Any:
    """Send the auth line; the link once the hub accepted it, else a one-line CommandError."""
    from twisted.internet import defer

    waiting = link.replies.next()
    link.send(encode({"auth": token}))
    waiting.addTimeout(timeout, reactor)

    def answered(line: bytes) -> TcpLink:
        try:
            reply = json.loads(line)
        except ValueError:
            reply = {}
        if isinstance(reply, dict) and reply.get("ok") == "auth":
            return link
        link.close()
        text = line.decode(errors="replace")
        detail = reply.get("detail", text) if isinstance(reply, dict) and reply else text
        raise CommandError(f"the hub refused the token: {detail}", 1)

    def failed(reason: Any) -> Any:
        link.close()
        if reason.check(defer.TimeoutError):
            raise CommandError(f"the hub did not answer the auth line in {timeout:g} s", 1)
        return reason

    return waiting.addCallbacks(answered, failed)


class UdpLink:
    """A connected UDP socket: one payload per datagram, the reply datagram's lines back.

    With a ``token`` every datagram is signed (HMAC-SHA256, ``tantra.security.signing``):
    a hub with ``--auth`` drops unsigned datagrams without a word. The
    token must be the device's own, and each reading must name the device
    and carry a seq.
    """

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float, token: str | None = None) -> Any:
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

            def stopProtocol(self) -> None:
                # The reactor also drops the socket on an ICMP error (epoll's
                # EPOLLERR) without a connectionRefused: the same news.
                if replies.closed is None:
                    replies.close("nothing listens on that UDP port")

        try:
            host = socket.gethostbyname(url.host)  # connect() wants an address
        except OSError as error:
            return defer.fail(CommandError(f"{url.host}: {error}"))
        protocol = Datagrams()
        port = reactor.listenUDP(0, protocol)
        port.connect(host, url.port)
        return defer.succeed(cls(protocol, port, replies, token))

    def __init__(self, protocol: Any, port: Any, replies: _Replies, token: str | None = None):
        self._protocol = protocol
        self._port = port
        self.replies = replies
        self._token = token

    def send(self, payload: bytes) -> None:
        if self._token is not None:
            from tantra.security.signing import sign

            payload = sign(payload, self._token)
        if self._protocol.transport is None:  # the socket is gone (see stopProtocol)
            raise LinkClosed(self.replies.closed or "the UDP socket is closed")
        self._protocol.transport.write(payload)

    def close(self) -> None:
        if self.replies.closed is None:
            self.replies.close("the link was closed")
        self._port.stopListening()


class WsLink:
    """A WebSocket client (Autobahn): a device publishing readings as text messages.

    The hub also broadcasts every reading (the sender's own included) to it;
    those are handed to ``on_reading`` (``tantra tail``) and are not replies.
    A ``token`` goes in ``Authorization: Bearer`` (never in the URL, which
    ends up in logs); a hub that refuses it answers the handshake with 401.
    """

    @classmethod
    def open(
        cls,
        reactor: Any,
        url: HubUrl,
        timeout: float,
        on_reading: Any = None,
        token: str | None = None,
    ) -> Any:
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
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        factory = WebSocketClientFactory(address, headers=headers)
        factory.protocol = Client
        factory.setProtocolOptions(openHandshakeTimeout=timeout, maxMessagePayloadSize=0)
        endpoint = TCP4ClientEndpoint(reactor, url.host, url.port, timeout=timeout)
        connecting = endpoint.connect(factory)

        def failed(failure: Any) -> None:
            if not opened.called:
                opened.errback(failure)

        connecting.addErrback(failed)
        return opened.addErrback(_refused_handshake)

    def __init__(self, protocol: Any, replies: _Replies):
        self._protocol = protocol
        self.replies = replies

    def send(self, payload: bytes) -> None:
        self._protocol.sendMessage(payload)

    def close(self) -> None:
        self._protocol.sendClose(1000)


class MqttLink:
    """A device on the broker a hub bridges (``--mqtt``): publishes readings, reads its replies.

    The URL is ``mqtt://[user:password@]broker[:1883][/PREFIX]?device=NAME``:
    ``PREFIX`` is the hub's ``--mqtt-prefix`` (default ``tantra``) and the
    device name is part of the topic, so it is required. Readings go out
    QoS 1 on ``PREFIX/in/NAME``; the hub's replies arrive on
    ``PREFIX/ack/NAME`` and ``PREFIX/error/NAME`` (subscribed before the
    link counts as open, so no reply is missed).

    paho runs its own network thread (``loop_start``) here: this is a
    command-line tool, not the hub, so a thread per device is fine; every
    callback is handed to the reactor with ``callFromThread``. MQTT 5, clean
    start, a random client id.
    """

    @classmethod
    def open(cls, reactor: Any, url: HubUrl, timeout: float, token: str | None = None) -> Any:
        import secrets
        from urllib.parse import parse_qs

        from paho.mqtt.client import CallbackAPIVersion, Client
        from paho.mqtt.enums import MQTTProtocolVersion
        from twisted.internet import defer

        path, _, query = url.path.partition("?")
        prefix = path.strip("/") or "tantra"
        device = (parse_qs(query).get("device") or [""])[0]
        if not device:
            return defer.fail(CommandError(f"{url}: name the device (--device, or ?device=NAME)"))
        if token is not None:  # the broker authenticates MQTT devices, not the hub
            return defer.fail(
                CommandError(
                    "--token is for the hub; over mqtt:// give the broker's user:password@"
                )
            )
        replies = _Replies()
        opened: defer.Deferred = defer.Deferred()
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"tantra-cli-{secrets.token_hex(6)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if url.username is not None:
            client.username_pw_set(url.username, url.password)
        link = cls(client, f"{prefix}/in/{device}", replies)

        def in_reactor(function: Any, *args: Any) -> Any:
            return lambda *_: reactor.callFromThread(function, *args)

        def connected(_client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                reactor.callFromThread(failed, f"the broker refused the connection: {reason}")
                return
            client.subscribe([(f"{prefix}/ack/{device}", 1), (f"{prefix}/error/{device}", 1)])

        def failed(why: str) -> None:
            if not opened.called:
                opened.errback(LinkClosed(why))
                link.close()

        def message(_client: Any, _userdata: Any, msg: Any) -> None:
            reactor.callFromThread(replies.arrived, msg.payload)

        def disconnected(*args: Any) -> None:
            reactor.callFromThread(replies.close, f"the broker closed the connection ({args[3]})")

        client.on_connect = connected

        def subscribed() -> None:
            if not opened.called:
                opened.callback(link)

        client.on_subscribe = in_reactor(subscribed)
        client.on_message = message
        client.on_disconnect = disconnected
        client.on_connect_fail = in_reactor(
            failed, f"cannot connect to the broker at {url.host}:{url.port}"
        )
        try:
            client.connect_async(url.host, url.port, keepalive=30)
        except (OSError, ValueError) as error:
            return defer.fail(CommandError(f"{url.host}: {error}"))
        client.loop_start()  # connects in paho's thread, retrying until closed

        def too_late(result: Any, _timeout: float) -> Any:
            link.close()
            return result

        opened.addTimeout(timeout, reactor, onTimeoutCancel=too_late)
        return opened

    def __init__(self, client: Any, topic: str, replies: _Replies):
        self._client = client
        self._topic = topic
        self.replies = replies
        self._closed = False

    def send(self, payload: bytes) -> None:
        self._client.publish(self._topic, payload, qos=1)

    def close(self) -> None:
        """Disconnect after what is queued; waits for paho's thread (a CLI may block)."""
        if self._closed:
            return
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()


def _refused_handshake(reason: Any) -> Any:
    """Autobahn's 'handshake failed: 401' as one line that says what to do."""
    text = reason.getErrorMessage()
    for status, meaning in (
        ("401", "the hub wants a token (--token) or refused this one"),
        ("403", "the hub refused this origin or token kind"),
    ):
        if f"[{status}]" in text:  # Autobahn: "WebSocket connection upgrade failed [401]"
            raise CommandError(f"{meaning} (HTTP {status})", 1)
    return reason


def bearer(token: str | None) -> dict[str, str]:
    """The HTTP header a ``--token`` becomes (``tail --since``, ``export``)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def add_token_argument(parser: Any, what: str) -> None:
    parser.add_argument(
        "--token",
        default=os.environ.get("TANTRA_TOKEN"),
        help=f"token for a hub started with --auth ({what}) [default: $TANTRA_TOKEN]",
    )


#: Scheme -> link.
LINKS: dict[str, Any] = {"tcp": TcpLink, "udp": UdpLink, "ws": WsLink, "mqtt": MqttLink}


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
    Ctrl-C (SIGINT) or SIGTERM stops the reactor and the command then sees
    :class:`~tantra.cli.Interrupted`, whatever ``main`` did meanwhile: a
    connection the stopping reactor closed is not an error to report.
    """
    import signal

    from twisted.internet import defer, reactor
    from twisted.internet.error import ReactorNotRunning
    from twisted.python.failure import Failure

    from tantra.cli import Interrupted, _terminated

    result: list[Any] = []
    signalled: list[int] = []

    def stop() -> None:
        with contextlib.suppress(ReactorNotRunning):  # already stopping (a signal came first)
            reactor.stop()

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signum)
        reactor.callFromThread(stop)  # type: ignore[attr-defined]  # safe in a signal handler

    def start() -> None:
        running = defer.ensureDeferred(main(reactor, *args))
        running.addBoth(result.append)  # consumes a failure: no "Unhandled error"
        running.addBoth(lambda _: stop())

    # Only where nobody else chose (as Twisted does): an ignored SIGINT (nohup,
    # a background job) stays ignored, a debugger keeps its own.
    unchosen = {
        signal.SIGINT: (signal.default_int_handler,),
        signal.SIGTERM: (signal.SIG_DFL, _terminated),
    }
    previous = {}
    try:
        for signum, defaults in unchosen.items():
            if signal.getsignal(signum) in defaults:
                previous[signum] = signal.signal(signum, on_signal)
    except ValueError:  # not the main thread: no signals here anyway
        pass
    try:
        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]  # ours, above
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signalled or not result:
        raise Interrupted(signalled[0] if signalled else signal.SIGINT)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
