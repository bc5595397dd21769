"""``twistd tantra`` / ``twist tantra``: the options and the wiring of the whole hub.

Owns: the command line (:class:`Options`), and :func:`makeService`, the only
place that reads settings and connects concrete classes: one hub, the
dashboard WebSocket factory behind a twisted.web site, the raw TCP and UDP
device protocols, each listener a child service. Stopping the top service
stops the listeners, delivers what the hub still holds, closes dashboards
with 1001 and device connections after their pending acks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import failure, usage

from tantra import __version__
from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.settings import SPECS, Settings, SettingsError, load_toml, resolve
from tantra.store import backend_for
from tantra.store.sink import StoreService
from tantra.store.writer import Store
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory
from tantra.wamp import WampFactory, build_wamp
from tantra.web.api import build_api
from tantra.web.site import build_site

_log = Logger()

#: How long a clean stop waits for clients to go before the reactor drops them.
SHUTDOWN_GRACE_SECONDS = 5.0


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value) if value != "" else "all"


class Options(usage.Options):
    """Command line of the tantra plugin; ``--config FILE.toml`` takes the same keys."""

    synopsis = "[options]"
    longdesc = (
        "Tantra relays sensor readings from devices (raw TCP, UDP, WebSocket) to "
        "WebSocket dashboards. Listeners are Twisted endpoint strings; 'none' "
        "disables one. Settings may also come from a TOML file (--config); the "
        "command line wins."
    )
    optParameters = [
        ["config", "c", None, "TOML file with the same settings as these options"],
        *[
            [spec.name, None, None, f"{spec.help} [default: {_show_default(spec.default)}]"]
            for spec in SPECS
            if spec.name != "http"
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["http"] = []

    def opt_http(self, endpoint: str) -> None:
        """HTTP + WebSocket endpoint (dashboards at /), repeatable
        [default: tcp:8080]"""
        self["http"].append(endpoint)

    def opt_version(self) -> None:
        """Print the Tantra version and exit."""
        print(f"tantra {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        command_line = {spec.name: self.get(spec.name) for spec in SPECS}
        command_line["http"] = self["http"] or None
        try:
            config_file = load_toml(self["config"]) if self["config"] else {}
            self.settings = resolve(command_line, config_file)
        except SettingsError as error:
            raise usage.UsageError(str(error)) from None


class ListenerService(service.Service):
    """One listening port; logs where it listens, and fails start-up clearly if it cannot.

    Why not ``StreamServerEndpointService``: the hub must tell people (and
    tests, which listen on port 0) the address it really got, and a port that
    is taken must stop ``twistd`` with one readable line, not a traceback.
    """

    def __init__(self, kind: str, description: str, listen: Callable[[], defer.Deferred], reactor):
        self.kind = kind
        self.description = description
        self._listen = listen
        self._reactor = reactor
        self._port = None
        self.ready: defer.Deferred = defer.Deferred()
        self.address = ""
        self._fatal: str | None = None

    def startService(self) -> None:
        super().startService()
        defer.maybeDeferred(self._listen).addCallbacks(self._listening, self._cannot_listen)
        if self._fatal is not None:  # failed before the reactor runs: end twistd cleanly
            raise SystemExit(f"tantra: {self._fatal}")

    def _listening(self, port) -> None:
        self._port = port
        host = port.getHost()
        self.address = (
            f"{host.host}:{host.port}"
            if hasattr(host, "port")
            else str(getattr(host, "name", host))
        )
        _log.info("{kind} listening on {address}", kind=self.kind, address=self.address)
        self.ready.callback(self)

    def _cannot_listen(self, reason: failure.Failure) -> None:
        message = f"cannot listen for {self.kind} on {self.description}: {reason.getErrorMessage()}"
        if self._reactor.running:
            _log.critical("{message}", message=message)
            self._reactor.stop()
        else:
            self._fatal = message  # startService turns it into a one-line SystemExit

    def stopService(self):
        super().stopService()
        port, self._port = self._port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None


class TantraService(service.MultiService):
    """The hub and its listeners; announces readiness and stops gracefully."""

    def __init__(
        self,
        hub: Hub,
        dashboards: DashboardFactory,
        devices: DeviceLineFactory,
        reactor,
        wamp: WampFactory | None = None,
    ):
        super().__init__()
        self.hub = hub
        self.dashboards = dashboards
        self.devices = devices
        self.wamp = wamp
        self._reactor = reactor

    @property
    def listeners(self) -> list[ListenerService]:
        return [child for child in self if isinstance(child, ListenerService)]

    def startService(self) -> None:
        super().startService()
        defer.gatherResults([listener.ready for listener in self.listeners]).addCallback(
            self._announce
        )

    def _announce(self, listeners: list[ListenerService]) -> None:
        def port_of(listener: ListenerService) -> str:
            return listener.address.rsplit(":", 1)[-1]

        http = [port_of(lst) for lst in listeners if lst.kind == "http"]
        if http:
            _log.info("🚀 WebSocket server running on port {port}", port=", ".join(http))
        devices = [f"{lst.kind.upper()} {port_of(lst)}" for lst in listeners if lst.kind != "http"]
        _log.info(
            "📡 Ready to receive ESP8266 data ({devices}) and forward to dashboards",
            devices=", ".join(devices) or "WebSocket only",
        )

    def stopService(self):
        stopping = defer.maybeDeferred(super().stopService)
        stopping.addCallback(lambda _: self._close_connections())
        return stopping

    def _close_connections(self) -> defer.Deferred:
        self.hub.flush()
        going = [self.dashboards.go_away(), self.devices.close_all()]
        if self.wamp is not None:
            going.append(self.wamp.go_away())
        closing = defer.DeferredList(going)
        closing.addTimeout(SHUTDOWN_GRACE_SECONDS, self._reactor)

        def timed_out(reason: failure.Failure) -> None:
            reason.trap(defer.CancelledError)
            _log.warn("some clients did not close within {grace}s", grace=SHUTDOWN_GRACE_SECONDS)

        return closing.addErrback(timed_out)


def build_service(settings: Settings, reactor) -> TantraService:
    """Wire every part of the hub from checked settings."""
    hub = Hub(
        reactor,
        dedupe=SeqWindow(size=settings.dedupe_size, seconds=settings.dedupe_seconds),
        max_sensors=settings.max_sensors,
    )
    dashboards = DashboardFactory(
        hub,
        reactor,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        stall_timeout=settings.stall_timeout,
        max_message_size=settings.max_line,
    )
    devices = DeviceLineFactory(
        hub, reactor, max_line=settings.max_line, idle_timeout=settings.idle_timeout
    )
    wamp, wamp_resource = build_wamp(
        hub,
        reactor,
        realm=settings.realm,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        stall_timeout=settings.stall_timeout,
        max_message_size=settings.max_line,
    )
    top = TantraService(hub, dashboards, devices, reactor, wamp=wamp)

    # -- history (tantra.store): first child, so it opens before listeners start
    store = build_store(settings, reactor)
    children: dict[bytes, Any] = {b"wamp": wamp_resource}
    sections: dict[str, Callable[[], dict]] = {"wamp": wamp.router.stats.as_dict}
    if store is not None:
        StoreService(store, hub).setServiceParent(top)
        sections["store"] = store.stats
    children[b"api"] = build_api(store, reactor)
    # -- end history

    site = build_site(hub, dashboards, children, sections)
    for description in settings.http:
        endpoint = serverFromString(reactor, description)
        ListenerService(
            "http", description, lambda e=endpoint: e.listen(site), reactor
        ).setServiceParent(top)
    if settings.tcp is not None:
        endpoint = serverFromString(reactor, settings.tcp)
        ListenerService(
            "tcp", settings.tcp, lambda: endpoint.listen(devices), reactor
        ).setServiceParent(top)
    if settings.udp is not None:
        datagrams = DeviceDatagramProtocol(hub, reactor, error_rate=settings.udp_error_rate)
        udp_port, interface = settings.udp, settings.udp_interface
        ListenerService(
            "udp",
            f"{interface or '*'}:{udp_port}",
            lambda: reactor.listenUDP(udp_port, datagrams, interface=interface),
            reactor,
        ).setServiceParent(top)
    return top


def build_store(settings: Settings, reactor) -> Store | None:
    """The history store named by ``--store`` (not yet opened), or None."""
    if settings.store is None:
        return None
    return Store(
        backend_for(settings.store),
        reactor,
        commit_interval=settings.commit_interval / 1000.0,
        retention_ms=settings.retention,
    )


def makeService(options: Options, reactor=None) -> TantraService:
    """Entry point for twistd/twist (``ServiceMaker``)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    settings = getattr(options, "settings", None)
    if settings is None:
        settings = resolve({}, {})
    return build_service(settings, reactor)
