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
from tantra.wamp.router import Router
from tantra.wamp.transport import WampFactory

__all__ = ["WampFactory", "build_wamp"]


def build_wamp(
    hub: Hub, clock: IReactorTime, *, realm: str, **options
) -> tuple[WampFactory, WebSocketResource]:
    """A router for ``realm`` bridged to ``hub``: its factory and the resource for /wamp."""
    router = Router(realm, counters=hub.counters)
    HubBridge(hub, router.broker, router.dealer, router.stats).start()
    factory = WampFactory(hub, router, clock, **options)
    return factory, WebSocketResource(factory)
