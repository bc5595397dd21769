"""An MQTT 5 client on Tantra's reactor: paho-mqtt's packets, Twisted's sockets and timers.

Owns: the connection to one broker (``mqtt://`` or ``mqtts://``, user and
password from the URL), its state (``connecting``, ``connected``,
``reconnecting`` with the reason, in :class:`~tantra.counters.MqttStats`),
reconnecting with exponential back-off, and re-subscribing after every
connect. paho-mqtt 2.x encodes and decodes MQTT through its external-loop
API (``on_socket_open``/``on_socket_close``/``on_socket_register_write``/
``on_socket_unregister_write``, ``loop_read``/``loop_write`` on readiness,
``loop_misc`` on a timer): no thread, no second event loop.

Nothing here blocks the reactor. paho's own ``connect`` resolves the name
and connects (and does the TLS handshake) synchronously, so this module
never lets paho make the socket: the name is resolved with the reactor's
resolver (an IP literal is used as is), the TCP connect is a non-blocking
``connect_ex`` finished when the reactor reports the socket writable, the
TLS handshake is driven by readiness too, each step under a deadline; only
then does paho get the connected socket (:meth:`_PahoClient._create_socket`
hands it over). A broker that accepts TCP and never answers costs a
deadline (no CONNACK in ``connect_timeout`` seconds), never a stall.

QoS 1 publishing is bounded twice: at most ``max_inflight`` messages wait
for their PUBACK, at most ``max_queued`` are held in all (also while
disconnected; paho re-sends them after a reconnect); a publish beyond that
is refused, and counted by the caller. :meth:`MqttClient.capacity` says how
many more the window takes now, and ``on_room`` is called whenever that may
have grown (after reads: PUBACKs, CONNACK; after writes), so an owner that
holds messages back (``tantra.bus.latest``) sends them as the broker takes them.

Does not own: what the topics mean (``tantra.bus.bridge``, ``.cluster``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import implementer

from tantra.counters import MqttStats

_log = Logger()

#: Bytes read from the socket per readiness event (then parsed by paho in memory).
READ_CHUNK = 256 * 1024


class BrokerUrlError(ValueError):
    """A broker URL the client cannot use; the message says why."""


@attrs.frozen
class BrokerUrl:
    """Where the broker is: ``mqtt[s]://[user[:password]@]host[:port]``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerUrlError(f"{url!r}: the scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise BrokerUrlError(f"{url!r}: no broker host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BrokerUrlError(f"{url!r}: only mqtt[s]://[user:password@]host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise BrokerUrlError(f"{url!r}: the port must be 1-65535") from None
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def __str__(self) -> str:
        """The URL without the password (for logs and /stats)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class _Socket:
    """The connected socket as paho sees it: reads come from a buffer the reactor fills.

    paho reads a packet a few bytes at a time (one ``recv`` for the command
    byte, one per length byte, one for the body); reading 256 KiB per
    readiness event into this buffer turns that into one system call for
    many packets. ``recv`` on an empty buffer says "would block" so paho
    stops and returns to the reactor; after end of stream (or :meth:`abort`)
    it returns ``b""`` so paho reports the connection lost.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()
        self._offset = 0
        self.eof = False
        self.error: str | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def fill(self) -> None:
        """Read what the socket holds (up to :data:`READ_CHUNK`); note end of stream."""
        wanted = READ_CHUNK
        while wanted > 0:
            try:
                data = self.sock.recv(min(wanted, 65536))
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as error:
                self.error = str(error) or type(error).__name__
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            if self._offset:
                del self._buffer[: self._offset]
                self._offset = 0
            self._buffer += data
            wanted -= len(data)

    def recv(self, size: int) -> bytes:
        available = len(self._buffer) - self._offset
        if available <= 0:
            if self.eof:
                return b""
            raise BlockingIOError(errno.EAGAIN, "no buffered data")
        start = self._offset
        end = start + min(size, available)
        data = bytes(self._buffer[start:end])
        self._offset = end
        if end == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        return data

    def send(self, data: bytes | bytearray) -> int:
        return self.sock.send(data)

    def abort(self, reason: str) -> None:
        """Make the next ``recv`` end the stream, whatever is buffered."""
        self._buffer.clear()
        self._offset = 0
        self.eof = True
        self.error = reason

    def close(self) -> None:
        self.sock.close()


@implementer(IReadDescriptor, IWriteDescriptor)
class _Watcher:
    """Tells the reactor about one socket and calls back on readiness."""

    def __init__(
        self,
        sock: socket.socket,
        on_read: Callable[[], None],
        on_write: Callable[[], None],
        on_lost: Callable[[str], None],
    ):
        self._fileno = sock.fileno()
        self._on_read = on_read
        self._on_write = on_write
        self._on_lost = on_lost

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return "mqtt"

    def doRead(self) -> None:
        self._on_read()

    def doWrite(self) -> None:
        self._on_write()

    def connectionLost(self, reason: failure.Failure) -> None:
        self._on_lost(reason.getErrorMessage())


class _PahoClient(paho.Client):
    """paho's client, given an already connected socket instead of connecting itself.

    ``_create_socket`` is the one method of paho's reconnect path that
    blocks (name resolution, ``socket.create_connection``, the TLS
    handshake); everything else in ``reconnect`` queues bytes.
    """

    prepared: _Socket | None = None

    def _create_socket(self) -> Any:
        sock, self.prepared = self.prepared, None
        if sock is None:
            raise ConnectionError("no connected socket prepared")
        return sock


@attrs.define
class Subscription:
    """A subscription to keep across reconnects: filter, options and where messages go."""

    topic: str
    options: SubscribeOptions


MessageHandler = Callable[[paho.MQTTMessage], None]


class MqttClient:
    """One MQTT 5 connection, kept up: connect, subscribe, publish, reconnect, stop.

    ``on_connected(session_present)`` runs after every successful CONNACK,
    after the subscriptions were re-sent (when the broker kept no session).
    Messages go to ``on_message``.
    """

    def __init__(
        self,
        reactor: Any,
        url: BrokerUrl,
        *,
        client_id: str,
        stats: MqttStats,
        on_message: MessageHandler,
        on_connected: Callable[[bool], None] = lambda session_present: None,
        on_room: Callable[[], int] = lambda: 0,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        max_inflight: int = 100,
        max_queued: int = 10_000,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        session_expiry: int = 0,
        tls_context: ssl.SSLContext | None = None,
        receive_maximum: int = 1000,
    ):
        self._reactor = reactor
        self.url = url
        self.client_id = client_id
        self._stats = stats
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_room = on_room
        #: Messages the owner holds back until there is room (what ``on_room`` last returned).
        self._waiting = 0
        self._acked = False
        self._max_inflight = max_inflight
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._backoff = min_backoff
        self._tls_context = tls_context
        self._session_expiry = session_expiry
        self._subscriptions: dict[str, Subscription] = {}
        self._running = False
        self._attempt: Any = None  # the connect in progress (a _ConnectAttempt)
        self._socket: _Socket | None = None
        self._watcher: _Watcher | None = None
        self._writing = False
        self._reconnect_call: Any = None
        self._connack_call: Any = None
        self._connected = False
        self._misc = LoopingCall(self._loop_misc)
        self._misc.clock = reactor
        self._stopped: defer.Deferred | None = None

        client = self._paho = _PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(max_queued)
        client.suppress_exceptions = True
        if url.username is not None:
            client.username_pw_set(url.username, url.password)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_connect = self._paho_connected
        client.on_disconnect = self._paho_disconnected
        client.on_message = self._paho_message
        client.on_publish = self._published
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry
        properties.ReceiveMaximum = receive_maximum
        client.connect_async(
            url.host,
            url.port,
            keepalive=keepalive,
            clean_start=session_expiry == 0,
            properties=properties,
        )

    # -- public ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect now, and keep reconnecting until :meth:`stop`."""
        self._running = True
        self._misc.start(1.0, now=False)
        self._connect()

    def stop(self, drain_timeout: float = 5.0) -> defer.Deferred:
        """Send what is queued (at most ``drain_timeout`` s), DISCONNECT, close; stop retrying."""
        self._running = False
        if self._misc.running:
            self._misc.stop()
        for call in (self._reconnect_call, self._connack_call):
            if call is not None and call.active():
                call.cancel()
        self._reconnect_call = self._connack_call = None
        if self._attempt is not None:
            self._attempt.cancel("stopping")
        if not self._connected:
            self._close("stopping")
            return defer.succeed(None)
        stopped = self._stopped = defer.Deferred()
        deadline = self._reactor.seconds() + drain_timeout

        def drain() -> None:
            if self._connected and self.pending() and self._reactor.seconds() < deadline:
                self._reactor.callLater(0.02, drain)
                return
            if self._connected:
                self._paho.disconnect()
            if self._stopped is not None:  # the broker did not close: close ourselves soon
                self._connack_call = self._reactor.callLater(0.5, self._close, "stopped")

        drain()
        return stopped

    def pending(self) -> int:
        """QoS 1 messages sent or queued and not yet acknowledged, plus those held for room."""
        return len(self._paho._out_messages) + self._waiting

    def capacity(self) -> int:
        """Messages the connection takes now without waiting in paho's queue (0 if disconnected).

        The free places of the QoS 1 in-flight window (``max_inflight`` less
        what is in flight or queued); for QoS 0, which has no window, the
        packets not yet written to the socket count instead.
        """
        if not self._connected:
            return 0
        paho_client = self._paho
        busy = max(len(paho_client._out_messages), len(paho_client._out_packet))
        return self._max_inflight - busy if busy < self._max_inflight else 0

    def subscribe(self, topic: str, options: SubscribeOptions) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        self._subscriptions[topic] = Subscription(topic, options)
        if self._connected:
            self._paho.subscribe([(topic, options)])

    def unsubscribe(self, topic: str) -> None:
        if self._subscriptions.pop(topic, None) is not None and self._connected:
            self._paho.unsubscribe(topic)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> bool:
        """Queue one message; False when the bounded queue is full (the message is lost)."""
        info = self._paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    # -- connecting ------------------------------------------------------------

    def _set_state(self, state: str, reason: str = "") -> None:
        self._stats.state = state
        if reason:
            self._stats.reason = reason

    def _connect(self) -> None:
        self._reconnect_call = None
        if not self._running:
            return
        self._set_state("connecting" if self._stats.connects == 0 else "reconnecting")
        attempt = self._attempt = _ConnectAttempt(
            self._reactor, self.url, self._tls_context, self._connect_timeout
        )
        attempt.done.addCallbacks(self._tcp_ready, self._attempt_failed)

    def _attempt_failed(self, reason: failure.Failure) -> None:
        self._attempt = None
        if not self._running:
            return
        self._stats.connect_failures += 1
        self._retry_later(f"cannot connect to {self.url}: {reason.getErrorMessage()}")

    def _retry_later(self, reason: str) -> None:
        if not self._running or self._reconnect_call is not None:
            return
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._set_state("reconnecting", reason)
        _log.warn("MQTT: {reason}; retrying in {delay:.1f}s", reason=reason, delay=delay)
        self._reconnect_call = self._reactor.callLater(delay, self._connect)

    def _tcp_ready(self, sock: socket.socket) -> None:
        """Hand the connected socket to paho; it queues CONNECT; CONNACK within the deadline."""
        self._attempt = None
        if not self._running:
            sock.close()
            return
        wrapped = _Socket(sock)
        self._paho.prepared = wrapped
        try:
            self._paho.reconnect()  # only queues bytes: the socket is ours
        except Exception as error:
            sock.close()
            self._stats.connect_failures += 1
            self._retry_later(f"MQTT connect failed: {error}")
            return
        self._connack_call = self._reactor.callLater(
            self._connect_timeout, self._no_connack, wrapped
        )

    def _no_connack(self, wrapped: _Socket) -> None:
        self._connack_call = None
        if wrapped is self._socket and not self._connected:
            self._stats.connect_failures += 1
            self._drop(f"no CONNACK from {self.url} within {self._connect_timeout:g}s")

    def _drop(self, reason: str) -> None:
        """End the current connection the way paho expects: its next read sees end of stream.

        Called from the reactor (timers, readiness), never from a paho
        callback: paho's locks are not re-entrant.
        """
        wrapped = self._socket
        if wrapped is None:
            return
        wrapped.abort(reason)
        self._paho.loop_read()  # -> connection lost -> on_socket_close, on_disconnect

    def _close(self, reason: str) -> None:
        """Close without reconnecting (stop); never called from inside a paho callback."""
        if self._socket is not None:
            self._drop(reason)  # paho's on_disconnect then calls _finish_stop
        self._finish_stop(reason)

    def _finish_stop(self, reason: str) -> None:
        if self._connack_call is not None and self._connack_call.active():
            self._connack_call.cancel()
        self._connack_call = None
        self._connected = False
        self._set_state("disconnected", reason)
        if self._stopped is not None:
            stopped, self._stopped = self._stopped, None
            # Fired on the next turn: this may run inside a paho callback, and
            # whatever waits on the stop must not run there (paho holds its locks).
            self._reactor.callLater(0, stopped.callback, None)

    # -- paho's socket callbacks ---------------------------------------------------

    def _socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._socket = sock
        self._watcher = _Watcher(sock.sock, self._readable, self._writable, self._lost)
        self._writing = False
        self._reactor.addReader(self._watcher)

    def _socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if sock is self._socket and self._watcher is not None:
            self._reactor.removeReader(self._watcher)
            self._reactor.removeWriter(self._watcher)
            self._watcher = None
            self._socket = None
            self._writing = False

    def _register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._watcher is not None and not self._writing:
            self._writing = True
            self._reactor.addWriter(self._watcher)

    def _unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._watcher is not None and self._writing:
            self._writing = False
            self._reactor.removeWriter(self._watcher)

    def _readable(self) -> None:
        sock = self._socket
        if sock is None:
            return
        sock.fill()
        # Parse every complete packet buffered; paho stops at "would block".
        while self._socket is sock and (sock.buffered() or sock.eof):
            before = sock.buffered()
            self._paho.loop_read()
            if self._acked:
                # Refill the window at once, not after the whole buffer (which
                # may hold hundreds of device messages to ingest first).
                self._room()
            if sock.buffered() == before and not sock.eof:
                break  # a partial packet: wait for more bytes
        self._room()

    def _writable(self) -> None:
        if self._socket is not None:
            self._paho.loop_write()
            self._room()

    def _published(self, client: Any, userdata: Any, mid: int, code: Any, props: Any) -> None:
        self._acked = True  # inside paho's callback: only note it (see _room)

    def _room(self) -> None:
        """PUBACKs, a CONNACK or a write may have freed the window: let the owner send what waits.

        Runs from the reactor after paho returned, never inside a paho
        callback (paho's locks are not re-entrant).
        """
        self._acked = False
        if not self._connected:
            return
        try:
            self._waiting = self._on_room()
        except Exception:
            _log.failure("MQTT: on_room failed")

    def _lost(self, reason: str) -> None:
        if self._socket is not None:
            self._drop(reason)

    def _loop_misc(self) -> None:
        if self._socket is not None:
            self._paho.loop_misc()  # keepalive pings; a broker silent past it is dropped

    # -- paho's MQTT callbacks ----------------------------------------------------

    def _paho_connected(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self._connack_call is not None and self._connack_call.active():
            self._connack_call.cancel()
        self._connack_call = None
        if reason_code.is_failure:
            self._stats.connect_failures += 1
            # Never re-enter paho from its own callback (its locks are not re-entrant).
            self._reactor.callLater(0, self._drop, f"broker refused the connection: {reason_code}")
            return
        self._connected = True
        self._backoff = self._min_backoff
        self._stats.connects += 1
        self._set_state("connected", "")
        self._stats.reason = ""
        _log.info(
            "MQTT: connected to {url} as {client_id}", url=str(self.url), client_id=self.client_id
        )
        if self._subscriptions and not flags.session_present:
            self._paho.subscribe([(s.topic, s.options) for s in self._subscriptions.values()])
        try:
            self._on_connected(bool(flags.session_present))
        except Exception:
            _log.failure("MQTT: on_connected failed")

    def _paho_disconnected(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected, self._connected = self._connected, False
        if was_connected:
            self._stats.disconnects += 1
        reason = self._socket.error if self._socket is not None and self._socket.error else None
        reason = reason or f"connection to {self.url} lost ({reason_code})"
        if not self._running:
            self._finish_stop("stopped")
            return
        self._retry_later(reason)

    def _paho_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(message)
        except Exception:
            _log.failure("MQTT: handling a message on {topic} failed", topic=message.topic)


class _ConnectAttempt:
    """Resolve, connect (non-blocking), maybe TLS-handshake: all driven by the reactor.

    ``done`` fires with the connected socket, or fails with why; the whole
    attempt has ``timeout`` seconds.
    """

    def __init__(self, reactor: Any, url: BrokerUrl, tls: ssl.SSLContext | None, timeout: float):
        self._reactor = reactor
        self._url = url
        self._tls = tls if tls is not None else (ssl.create_default_context() if url.tls else None)
        self.done: defer.Deferred = defer.Deferred()
        self._sock: Any = None
        self._watcher: _Watcher | None = None
        self._reading = self._writing = False
        self._step: Callable[[], None] = lambda: None
        self._deadline = reactor.callLater(timeout, self.cancel, f"timed out after {timeout:g}s")
        try:
            ipaddress.ip_address(url.host)
        except ValueError:
            reactor.resolve(url.host).addCallbacks(self._resolved, self._failed)
        else:
            self._resolved(url.host)

    def cancel(self, reason: str) -> None:
        if not self.done.called:
            self._fail(ConnectionError(reason))

    def _failed(self, reason: failure.Failure) -> None:
        if not self.done.called:
            self._fail(
                ConnectionError(f"cannot resolve {self._url.host}: {reason.getErrorMessage()}")
            )

    def _fail(self, error: Exception) -> None:
        self._unwatch()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._deadline.active():
            self._deadline.cancel()
        self.done.errback(failure.Failure(error))

    def _succeed(self) -> None:
        self._unwatch()
        if self._deadline.active():
            self._deadline.cancel()
        sock, self._sock = self._sock, None
        self.done.callback(sock)

    def _resolved(self, address: str) -> None:
        if self.done.called:
            return
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = self._sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((address, self._url.port))
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._fail(
                ConnectionError(f"{address}:{self._url.port}: {errno.errorcode.get(code, code)}")
            )
            return
        self._watcher = _Watcher(sock, self._on_ready, self._on_ready, self._on_lost)
        self._step = self._connected
        self._want(write=True)

    def _want(self, *, read: bool = False, write: bool = False) -> None:
        assert self._watcher is not None
        if read and not self._reading:
            self._reactor.addReader(self._watcher)
        if not read and self._reading:
            self._reactor.removeReader(self._watcher)
        if write and not self._writing:
            self._reactor.addWriter(self._watcher)
        if not write and self._writing:
            self._reactor.removeWriter(self._watcher)
        self._reading, self._writing = read, write

    def _unwatch(self) -> None:
        if self._watcher is not None:
            self._want()
            self._watcher = None

    def _on_ready(self) -> None:
        if not self.done.called:
            self._step()

    def _on_lost(self, reason: str) -> None:
        self.cancel(reason)

    def _connected(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(
                ConnectionError(
                    f"{self._url.host}:{self._url.port}: {errno.errorcode.get(code, code)}"
                )
            )
            return
        if self._tls is None:
            self._succeed()
            return
        # The handshake happens on readiness, like everything else.
        self._sock = self._tls.wrap_socket(
            self._sock, server_hostname=self._url.host, do_handshake_on_connect=False
        )
        self._step = self._handshake
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(read=True)
        except ssl.SSLWantWriteError:
            self._want(write=True)
        except (ssl.SSLError, OSError) as error:
            self._fail(ConnectionError(f"TLS with {self._url.host}: {error}"))
        else:
            self._succeed()
