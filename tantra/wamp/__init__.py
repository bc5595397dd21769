"""The WAMP router at ``/wamp``: session, broker, dealer, topic matching, and the bridge to the hub.

Owns: building one realm's router bridged to the hub (:func:`build_wamp`).
The modules of this package split the work: ``transport`` (Autobahn's
WebSocket transport and serializers), ``session`` (the per-connection state
machine), ``router``/``broker``/``dealer`` (pub/sub and RPC rules, pure),
``match`` (topic indices, pure), ``bridge`` (readings in and out of the hub),
``outbox`` (a WAMP subscriber's bounded send path).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime

from tantra.hub import Hub
from tantra.security.web import TokenTakingResource
from tantra.wamp.bridge import HubBridge
from tantra.wamp.limits import WampLimits
from tantra.wamp.router import Router
from tantra.wamp.transport import WampFactory

__all__ = ["WampFactory", "WampLimits", "build_wamp"]


def build_wamp(
    hub: Hub,
    clock: IReactorTime,
    *,
    realm: str,
    limits: WampLimits | None = None,
    auth: Any = None,
    **options,
) -> tuple[WampFactory, WebSocketResource]:
    """A router for ``realm`` bridged to ``hub``: its factory and the resource for /wamp.

    ``auth`` (a ``tantra.security.gate.Auth``) turns on ticket authentication
    and per-request authorization (``tantra.security.wamp``).
    """
    security: dict[str, Any] = {}
    if auth is not None:
        from tantra.security.wamp import TicketAuthenticator, WampAuthorizer

        security = {"authenticator": TicketAuthenticator(auth), "authorizer": WampAuthorizer(auth)}
    router = Router(realm, counters=hub.counters, limits=limits, clock=clock, **security)
    HubBridge(
        hub,
        router.broker,
        router.dealer,
        router.stats,
        max_result_bytes=(limits or WampLimits()).max_outgoing_bytes,
    ).start()
    factory = WampFactory(hub, router, clock, **options)
    # The token-taking resource: a ``?token=`` never reaches a log line, and a
    # --max-connections-per-address slot goes with the socket (tantra.security).
    return factory, TokenTakingResource(factory)
