"""``twistd tantra`` / ``twist tantra``: the options and the wiring of the whole hub.

Owns: the command line (:class:`Options`), and :func:`build_service`, the
only place that reads settings and connects concrete classes. It is one call
per part, each a builder that adds the part to the top service: the hub
(:func:`build_hub`), HTTP with dashboards and ``/stats`` (:func:`build_http`),
raw TCP and UDP devices (:func:`build_devices`), the WAMP router
(:func:`build_wamp_part`), history with its API (:func:`build_history`),
the MQTT bus (:func:`build_bus`), and the operator's endpoints
``/metrics``, ``/healthz``, ``/readyz`` (:func:`build_operations`, last).
A new part is one more builder and one more line.

Does not own: the start and stop order (``tantra.lifecycle``): stopping the
top service stops the listeners, delivers what the hub still holds, then
every component lets its clients go (dashboards 1001, WAMP GOODBYE, devices
after their pending acks), then the store commits what it was handed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from tantra import __version__
from tantra.counters import Counters, StoreStats
from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.lifecycle import SHUTDOWN_GRACE_SECONDS, ListenerService, TantraService
from tantra.security.connlimit import AddressLimit, limit_factory
from tantra.security.gate import Auth, Ingress
from tantra.security.http import HttpGate
from tantra.security.replay import ReplayGuard, ReplayStateFile, load_floors, state_path_for
from tantra.security.tokens import TokenFileError, read_tokens
from tantra.security.watcher import TokenFileWatcher
from tantra.settings import SPECS, Settings, SettingsError, load_toml, resolve
from tantra.store import backend_for
from tantra.store.sink import StoreService
from tantra.store.writer import Store
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.endpoints import with_backlog
from tantra.transports.raw import UDP_READ_SIZE, DeviceDatagramProtocol, DeviceLineFactory
from tantra.wamp import WampLimits, build_wamp
from tantra.web.api import build_api
from tantra.web.site import build_site

_log = Logger()

__all__ = ["SHUTDOWN_GRACE_SECONDS", "ListenerService", "Options", "TantraService", "makeService"]


def _with_default(help_text: str, value: Any) -> str:
    """``help_text`` and its default; an empty one (off, or all) is said by the text itself."""
    if value == "" or value == ():
        return help_text
    shown = ", ".join(value) if isinstance(value, tuple) else "none" if value is None else value
    return f"{help_text} [default: {shown}]"


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
            [spec.name, None, None, _with_default(spec.help, spec.default)]
            for spec in SPECS
            if spec.name != "http" and spec.default is not False
        ],
    ]
    optFlags = [[spec.name, None, spec.help] for spec in SPECS if spec.default is False]

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
        for spec in SPECS:
            if spec.default is False:  # a flag: absent means "as the file says"
                command_line[spec.name] = True if self.get(spec.name) else None
        command_line["http"] = self["http"] or None
        try:
            config_file = load_toml(self["config"]) if self["config"] else {}
            self.settings = resolve(command_line, config_file)
        except SettingsError as error:
            raise usage.UsageError(str(error)) from None


def build_hub(settings: Settings, reactor: Any) -> TantraService:
    """The hub with its counters, in the top service every other part is added to."""
    hub = Hub(
        reactor,
        dedupe=SeqWindow(
            size=settings.dedupe_size,
            seconds=settings.dedupe_seconds,
            max_devices=settings.dedupe_devices,
        ),
        max_sensors=settings.max_sensors,
        counters=Counters(),
    )
    return TantraService(hub, reactor)


def _websocket_options(settings: Settings) -> dict[str, Any]:
    """The options dashboards and WAMP connections share (one WebSocket base)."""
    return {
        "ping_interval": settings.ping_interval,
        "ping_timeout": settings.ping_timeout,
        "stall_timeout": settings.stall_timeout,
        "max_message_size": settings.max_line,
        "reply_buffer": settings.reply_buffer,
    }


def build_auth(top: TantraService, settings: Settings, reactor: Any) -> None:
    """Tokens, signed UDP replay state and per-device rates (``tantra.security``), if asked for.

    Sets ``top.ingress``, which every device transport hands its payloads to;
    with neither ``--auth`` nor ``--device-rate`` it stays None and nothing
    changes on the ingest path.
    """
    top.http_gate = HttpGate(None, settings.allowed_origins, top.hub.counters.auth)
    if settings.max_connections_per_address:
        top.address_limit = AddressLimit(
            settings.max_connections_per_address, top.hub.counters.auth
        )
    auth = None
    replay = None
    if settings.auth:
        try:
            table = read_tokens(settings.auth)
        except TokenFileError as error:
            raise SystemExit(f"tantra: {error}") from None
        auth = Auth(table, top.hub.counters)
        top.http_gate.auth = auth
        TokenFileWatcher(settings.auth, auth, reactor, reactor=reactor).setServiceParent(top)
        margin = ReplayGuard().margin
        path = settings.replay_state or state_path_for(settings.auth)
        replay = ReplayGuard(margin=margin, floors=load_floors(path, margin))
        state = ReplayStateFile(path, replay, reactor)
        state.setServiceParent(top)
    elif not settings.device_rate:
        return
    top.ingress = Ingress(
        top.hub,
        auth=auth,
        device_rate=settings.device_rate,
        replay=replay,
        on_ahead=(lambda: reactor.callLater(0, state.save_soon)) if replay else (lambda: None),
    )


def build_http(top: TantraService, settings: Settings, reactor: Any) -> None:
    """Dashboards (WebSocket at ``/``), the status page and ``/stats`` on every HTTP endpoint."""
    hub = top.hub
    dashboards = DashboardFactory(
        hub,
        reactor,
        counters=hub.counters,
        ingress=top.ingress,
        allowed_origins=settings.allowed_origins,
        **_websocket_options(settings),
    )
    top.add_component("dashboards", dashboards)
    site = build_site(hub, dashboards)
    if top.address_limit is not None:
        limit_factory(site, top.address_limit)
    top.http_root = site.resource
    top.mount(b"stats", _guarded(top, top.http_root.children[b"stats"], operator=True))
    for description in settings.http:
        endpoint = serverFromString(reactor, with_backlog(description, settings.backlog))
        top.listen("http", description, partial(endpoint.listen, site))


def build_devices(top: TantraService, settings: Settings, reactor: Any) -> None:
    """Raw TCP lines and UDP datagrams from devices."""
    hub = top.hub
    if settings.tcp is not None:
        devices = DeviceLineFactory(
            hub,
            reactor,
            max_line=settings.max_line,
            idle_timeout=settings.idle_timeout,
            reply_buffer=settings.reply_buffer,
            stall_timeout=settings.stall_timeout,
            counters=hub.counters,
            ingress=top.ingress,
        )
        top.add_component("devices", devices)
        if top.address_limit is not None:
            limit_factory(devices, top.address_limit)
        endpoint = serverFromString(reactor, with_backlog(settings.tcp, settings.backlog))
        top.listen("tcp", settings.tcp, lambda: endpoint.listen(devices))
    if settings.udp is not None:
        datagrams = DeviceDatagramProtocol(
            hub,
            reactor,
            error_rate=settings.udp_error_rate,
            counters=hub.counters,
            ingress=top.ingress,
        )
        udp_port, interface = settings.udp, settings.udp_interface
        top.listen(
            "udp",
            f"{interface or '*'}:{udp_port}",
            lambda: reactor.listenUDP(
                udp_port, datagrams, interface=interface, maxPacketSize=UDP_READ_SIZE
            ),
        )


def build_wamp_part(top: TantraService, settings: Settings, reactor: Any) -> None:
    """The WAMP router bridged to the hub, at ``/wamp`` on the HTTP endpoints."""
    wamp, resource = build_wamp(
        top.hub,
        reactor,
        realm=settings.realm,
        limits=WampLimits(
            max_subscriptions=settings.wamp_max_subscriptions,
            max_registrations=settings.wamp_max_registrations,
            max_pending_calls=settings.wamp_max_pending_calls,
            call_timeout=settings.wamp_call_timeout,
            max_outgoing_bytes=settings.wamp_max_outgoing,
        ),
        auth=top.ingress.auth if top.ingress is not None else None,
        allowed_origins=settings.allowed_origins,
        **_websocket_options(settings),
    )
    top.add_component("wamp", wamp)
    top.mount(b"wamp", resource)


_LOOPBACK = ("127.", "::1", "localhost")
_INTERFACE = re.compile(r"(?:^|:)interface=((?:\\:|[^:])*)")


def beyond_loopback(settings: Settings) -> list[str]:
    """The listeners reachable from other machines (UNIX sockets and loopback are not)."""
    found = []
    for description in (*settings.http, settings.tcp):
        if description is None or description.split(":", 1)[0] in ("unix", "systemd"):
            continue
        found_interface = _INTERFACE.search(description)
        interface = found_interface.group(1).replace("\\:", ":") if found_interface else ""
        if not interface.startswith(_LOOPBACK):
            found.append(description)
    if settings.udp is not None and not settings.udp_interface.startswith(_LOOPBACK):
        found.append(f"udp:{settings.udp}")
    return found


def warn_if_open(settings: Settings) -> None:
    """One warning line at start-up: reachable beyond loopback, with auth off (SPEC Security)."""
    if not settings.auth:
        exposed = beyond_loopback(settings)
        if exposed:
            _log.warn(
                "authentication is off and {listeners} listen beyond loopback: anyone who"
                " can reach them can send and watch readings (use --auth FILE; docs/security.md)",
                listeners=", ".join(exposed),
            )


def build_history(top: TantraService, settings: Settings, reactor: Any) -> None:
    """The history store (``--store``) and its REST API at ``/api`` on the HTTP endpoints.

    The store is a plain child service: it opens before any listener (the
    lifecycle starts listeners last) and stops after the goodbyes, so what
    clients sent while they were let go of is still committed, within the
    grace period. With ``--store none`` the API answers 503.
    """
    store = None
    if settings.store is not None:
        counters = top.hub.counters
        counters.store = StoreStats()
        store = Store(
            backend_for(settings.store),
            reactor,
            commit_interval=settings.commit_interval / 1000.0,
            retention_ms=settings.retention,
            stats=counters.store,
            commit_latency=counters.latency.commit.observe,
        )
        ingress = top.ingress
        replay = ingress.replay if ingress is not None and ingress.auth is not None else None
        StoreService(store, top.hub, grace=SHUTDOWN_GRACE_SECONDS, replay=replay).setServiceParent(
            top
        )
    else:  # no commit to wait for: an ack waits for the broadcast instead
        top.hub.ack_after_broadcast()
    top.mount(b"api", _guarded(top, build_api(store, reactor)))


def build_operations(top: TantraService, settings: Settings, reactor: Any) -> None:
    """``/metrics``, ``/healthz`` and ``/readyz`` (built last: they read every other part).

    Readiness: every listener bound, and the history store writing when
    there is one; a later part (an MQTT bus) adds its own check with
    ``top.readiness.add`` or ``top.readiness.report``.
    """
    from tantra.health import listeners_check, store_check
    from tantra.web.health import HealthzResource, ReadyzResource
    from tantra.web.metrics import HubCollector, MetricsResource

    counters = top.hub.counters
    top.readiness.add("listeners", listeners_check(lambda: top.listeners))
    top.readiness.add("store", store_check(lambda: getattr(counters, "store", None)))
    transports = {"dashboards": "websocket", "devices": "tcp"}
    connections: dict[str, Callable[[], int]] = {
        transports.get(name, name): partial(_connection_count, component)
        for name, component in top.components.items()
    }
    if settings.mqtt is not None:  # the hub's one broker connection
        connections["mqtt"] = lambda: int(counters.mqtt.state == "connected")
    metrics = MetricsResource(HubCollector(counters, top.hub, connections))
    top.mount(b"metrics", _guarded(top, metrics, operator=True))
    top.mount(b"healthz", HealthzResource())
    gate = top.http_gate
    details = gate.may_see_details if gate is not None and gate.auth is not None else None
    top.mount(b"readyz", ReadyzResource(top.readiness, details))


def _guarded(top: TantraService, resource: Any, *, operator: bool = False) -> Any:
    """``resource`` behind ``--allowed-origins`` and ``--auth`` (docs/security.md, HTTP)."""
    if top.http_gate is None:
        return resource
    return top.http_gate.guard(resource, operator=operator)


def _connection_count(component: Any) -> int:
    return len(getattr(component, "connections", ()))


def build_bus(top: TantraService, settings: Settings, reactor: Any) -> None:
    """MQTT (``--mqtt``): device topics, readings out, discovery, and the cluster."""
    if settings.mqtt is None:
        return
    from tantra.bus.bridge import MqttBridge
    from tantra.bus.client import BrokerUrl, MqttClient
    from tantra.bus.service import MqttBus
    from tantra.bus.topics import Topics
    from tantra.health import broker_check

    hub = top.hub
    client_id = settings.mqtt_client_id or f"tantra-{secrets.token_hex(6)}"
    topics = Topics(settings.mqtt_prefix)
    bus = MqttBus.build(
        hub,
        reactor,
        lambda on_message, on_connected, on_room: MqttClient(
            reactor,
            BrokerUrl.parse(settings.mqtt),
            client_id=client_id,
            stats=hub.counters.mqtt,
            on_message=on_message,
            on_connected=on_connected,
            on_room=on_room,
            session_expiry=300 if settings.mqtt_client_id else 0,
            connect_timeout=settings.mqtt_connect_timeout,
        ),
        lambda client: MqttBridge(
            hub,
            client,
            topics,
            hub.counters.mqtt,
            qos=settings.mqtt_qos,
            discovery=settings.mqtt_discovery,
            discovery_node=settings.mqtt_prefix.replace("/", "_"),
            max_announced=settings.max_sensors,
        ),
        settings.cluster,
    )
    bus.setServiceParent(top)
    top.readiness.add("broker", broker_check(lambda: hub.counters.mqtt))
    if settings.auth or settings.device_rate:
        _log.info(
            "--auth and --device-rate do not cover MQTT: the broker authenticates MQTT devices"
            " and its ACLs must let each publish only to {prefix}/in/<its name>"
            " (docs/security.md, MQTT)",
            prefix=settings.mqtt_prefix,
        )


def build_service(settings: Settings, reactor: Any) -> TantraService:
    """Wire every part of the hub from checked settings: one line per part."""
    top = build_hub(settings, reactor)
    warn_if_open(settings)
    build_auth(top, settings, reactor)
    build_http(top, settings, reactor)
    build_devices(top, settings, reactor)
    build_wamp_part(top, settings, reactor)
    build_history(top, settings, reactor)
    build_bus(top, settings, reactor)
    build_operations(top, settings, reactor)
    return top


def makeService(options: Options, reactor: Any = None) -> TantraService:
    """Entry point for twistd/twist (``ServiceMaker``)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    settings = getattr(options, "settings", None)
    if settings is None:
        settings = resolve({}, {})
    return build_service(settings, reactor)
