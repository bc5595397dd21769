"""How the running hub starts and stops: its listeners, its components, the stop order.

Owns: :class:`IGoodbye` (the one thing a component must do when the hub
stops), :class:`ListenerService` (one listening port that reports where it
listens and fails start-up with one readable line), and
:class:`TantraService`, the top service every part is added to. Stopping it
runs, in order:

1. every listener stops accepting (no new clients, devices or datagrams);
2. the hub delivers what it still holds (``Hub.flush``);
3. every component says goodbye to its clients (dashboards get 1001, WAMP
   sessions GOODBYE, TCP devices their pending acks), all at once, for at
   most :data:`SHUTDOWN_GRACE_SECONDS`;
4. every other child service stops (the history store commits what it
   was handed, within its own grace period).

Starting runs the other way: every child that is not a listener starts
first (the history store opens its database), then the listeners.

A new part (a store, an MQTT bus, metrics) is added in one builder in
``tantra.tap``: ``top.add_component`` for its clients, ``setServiceParent``
for anything with its own start and stop, ``top.listen`` for its port.

Does not own: settings or which parts exist (``tantra.tap``), the hub, any
protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure
from twisted.web.resource import IResource, Resource
from zope.interface import Interface

from tantra.health import Readiness
from tantra.hub import Hub

_log = Logger()

#: How long a clean stop waits for clients to go before the reactor drops them.
SHUTDOWN_GRACE_SECONDS = 5.0


class IGoodbye(Interface):
    """A component with clients to let go of when the hub stops."""

    def go_away() -> defer.Deferred:
        """Tell every client the hub is going, then close it; fire when all are gone.

        Called after the listeners stopped and the hub flushed, so what a
        client is owed has been handed over already; must not wait for new
        input. The hub stops waiting after :data:`SHUTDOWN_GRACE_SECONDS`.
        """


class ListenerService(service.Service):
    """One listening port; logs where it listens, and fails start-up clearly if it cannot.

    Why not ``StreamServerEndpointService``: the hub must tell people (and
    tests, which listen on port 0) the address it really got, and a port that
    is taken must stop ``twistd`` with one readable line, not a traceback.
    """

    def __init__(self, kind: str, description: str, listen: Callable[[], Any], reactor: Any):
        self.kind = kind
        self.description = description
        self._listen = listen
        self._reactor = reactor
        self._port: Any = None
        self.ready: defer.Deferred = defer.Deferred()
        self.address = ""
        self._fatal: str | None = None

    def startService(self) -> None:
        super().startService()
        defer.maybeDeferred(self._listen).addCallbacks(self._listening, self._cannot_listen)
        if self._fatal is not None:  # failed before the reactor runs: end twistd cleanly
            raise SystemExit(f"tantra: {self._fatal}")

    def _listening(self, port: Any) -> None:
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

    def stopService(self) -> defer.Deferred | None:
        super().stopService()
        port, self._port = self._port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None


class TantraService(service.MultiService):
    """The hub, its listeners and its components; announces readiness and stops in order."""

    def __init__(self, hub: Hub, reactor: Any):
        super().__init__()
        self.hub = hub
        self._reactor = reactor
        #: Parts with clients, by name ("dashboards", "devices", "wamp", ...).
        self.components: dict[str, IGoodbye] = {}
        #: The HTTP resource tree's root, once the HTTP part is built (parts mount on it).
        self.http_root: Resource | None = None
        #: Device checks and tokens (``tantra.security.gate.Ingress``), once built; None: off.
        self.ingress: Any = None
        #: ``--max-connections-per-address`` (``tantra.security.connlimit``), or None.
        self.address_limit: Any = None
        #: Tokens and origins on HTTP resources (``tantra.security.http.HttpGate``), or None.
        self.http_gate: Any = None
        #: What ``/readyz`` asks (``tantra.health``): a part that can be unready adds a check.
        self.readiness = Readiness()

    def add_component(self, name: str, component: IGoodbye) -> None:
        """Register a part whose clients must be let go of on stop (see :class:`IGoodbye`)."""
        if not IGoodbye.providedBy(component):
            raise TypeError(f"{component!r} does not provide IGoodbye")
        if name in self.components:
            raise ValueError(f"a component named {name!r} exists already")
        self.components[name] = component

    def listen(self, kind: str, description: str, listen: Callable[[], Any]) -> ListenerService:
        """Add one listening port (``listen`` returns the port, or a Deferred of it)."""
        listener = ListenerService(kind, description, listen, self._reactor)
        listener.setServiceParent(self)
        return listener

    def mount(self, path: bytes, resource: IResource) -> None:
        """Serve ``resource`` at ``/path`` on every HTTP port (``/wamp``, later ``/api``)."""
        if self.http_root is None:
            raise RuntimeError("build the HTTP part before the parts that mount on it")
        self.http_root.putChild(path, resource)

    @property
    def listeners(self) -> list[ListenerService]:
        return [child for child in self if isinstance(child, ListenerService)]

    def startService(self) -> None:
        """Every other child first (a store opens), then the listeners, in the order added.

        The mirror of :meth:`stopService`: nothing listens before the parts
        behind the listeners are ready.
        """
        service.Service.startService(self)
        children = list(self)
        for child in children:
            if not isinstance(child, ListenerService):
                child.startService()
        for child in children:
            if isinstance(child, ListenerService):
                child.startService()
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

    def stopService(self) -> defer.Deferred:
        """Listeners, then the hub's last turn, then goodbyes, then every other child."""
        service.Service.stopService(self)
        children = list(reversed(list(self)))
        listeners = [child for child in children if isinstance(child, ListenerService)]
        others = [child for child in children if not isinstance(child, ListenerService)]
        stopping = _stop_all(listeners)
        stopping.addCallback(lambda _: self._say_goodbye())
        stopping.addCallback(lambda _: _stop_all(others))
        return stopping

    def _say_goodbye(self) -> defer.Deferred:
        self.hub.flush()
        going = [defer.maybeDeferred(c.go_away) for c in self.components.values()]
        closing = defer.DeferredList(going)
        closing.addTimeout(SHUTDOWN_GRACE_SECONDS, self._reactor)

        def timed_out(reason: failure.Failure) -> None:
            reason.trap(defer.CancelledError)
            _log.warn("some clients did not close within {grace}s", grace=SHUTDOWN_GRACE_SECONDS)

        return closing.addErrback(timed_out)


def _stop_all(services: Sequence[service.IService]) -> defer.Deferred:
    return defer.DeferredList([defer.maybeDeferred(child.stopService) for child in services])
