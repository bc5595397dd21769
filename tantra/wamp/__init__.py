"""The WAMP router at ``/wamp``: session, broker, dealer, topic matching, and the bridge to the hub.

Owns: building one realm's router bridged to the hub (:func:`build_wamp`).
The modules of this package split the work: ``transport`` (Autobahn's
WebSocket transport and serializers), ``session`` (the per-connection state
machine), ``router``/``broker``/``dealer`` (pub/sub and RPC rules, pure),
``match`` (topic indices, pure), ``bridge`` (readings in and out of the hub),
``outbox`` (a WAMP subscriber's bounded send path).
"""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime

from tantra.hub import Hub
from tantra.wamp.bridge import HubBridge
from tantra.wamp.limits import WampLimits
from tantra.wamp.router import Router
from tantra.wamp.transport import WampFactory

__all__ = ["WampFactory", "WampLimits", "build_wamp"]


def build_wamp(
    hub: Hub, clock: IReactorTime, *, realm: str, limits: WampLimits | None = None, **options
) -> tuple[WampFactory, WebSocketResource]:
    """A router for ``realm`` bridged to ``hub``: its factory and the resource for /wamp."""
    router = Router(realm, counters=hub.counters, limits=limits, clock=clock)
    HubBridge(
        hub,
        router.broker,
        router.dealer,
        router.stats,
        max_result_bytes=(limits or WampLimits()).max_outgoing_bytes,
    ).start()
    factory = WampFactory(hub, router, clock, **options)
    return factory, WebSocketResource(factory)
