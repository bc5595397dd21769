"""One WAMP realm: its broker and dealer, its joined sessions, its ids and counters.

Owns: what a realm is in Tantra (exactly one, named by the ``realm``
setting), session ids, router-scope ids (subscriptions, registrations,
invocations), the roles and features WELCOME announces, and detaching a
session from broker and dealer when it leaves, so nothing of it survives.

Does not own: the session state machine (``tantra.wamp.session``), pub/sub
and RPC rules (``tantra.wamp.broker``, ``tantra.wamp.dealer``), the hub
(``tantra.wamp.bridge`` plugs into broker and dealer), transports. Pure: ids
come from injectable functions so tests are deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from autobahn import util
from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tantra.counters import Counters
from tantra.wamp import broker as wamp_broker
from tantra.wamp import dealer as wamp_dealer
from tantra.wamp.auth import AnonymousAuthenticator, IAuthenticator
from tantra.wamp.broker import Broker
from tantra.wamp.dealer import Dealer
from tantra.wamp.limits import LogThrottle, WampLimits
from tantra.wamp.peer import IWampPeer

_log = Logger()


class IJoinedSession(IWampPeer):
    """What the router needs of a session to end it (see ``RouterSession``)."""

    def shut_down() -> None:
        """Say GOODBYE (``wamp.close.system_shutdown``) and leave the realm."""


class Router:
    """The realm's state, shared by every session that joins it."""

    def __init__(
        self,
        realm: str,
        *,
        authenticator: IAuthenticator | None = None,
        authorizer: Any = None,
        new_global_id: Callable[[], int] = util.id,
        max_retained: int = wamp_broker.DEFAULT_MAX_RETAINED,
        counters: Counters | None = None,
        limits: WampLimits | None = None,
        clock: IReactorTime | None = None,
    ):
        """``clock`` runs call timeouts and spreads a session's work over reactor
        turns; without one (pure tests) every message is handled at once and calls
        never time out."""
        self.realm = realm
        self.authenticator = authenticator or AnonymousAuthenticator()
        #: With ``--auth``: ``tantra.security.wamp.WampAuthorizer``, asked before
        #: every SUBSCRIBE, PUBLISH, REGISTER and CALL; None: everything allowed.
        self.authorizer = authorizer
        #: The router counts into the ``wamp`` section (the hub's own is ``hub``).
        self.stats = (counters if counters is not None else Counters()).wamp
        self.limits = limits if limits is not None else WampLimits()
        self.clock = clock
        #: Log lines about bad client input: at most one per second per kind.
        self.log_throttle = LogThrottle(clock.seconds if clock is not None else None)
        self._new_global_id = new_global_id
        router_scope = itertools.count(1).__next__
        self.broker = Broker(
            new_subscription_id=router_scope,
            new_publication_id=new_global_id,
            stats=self.stats,
            max_retained=max_retained,
            limits=self.limits,
            clock=clock,
        )
        self.dealer = Dealer(
            new_registration_id=router_scope,
            new_request_id=itertools.count(1).__next__,
            stats=self.stats,
            limits=self.limits,
            clock=clock,
        )
        self.sessions: dict[int, IJoinedSession] = {}

    def roles(self) -> dict[str, RoleBrokerFeatures | RoleDealerFeatures]:
        """The roles for WELCOME, announcing only features that are implemented."""
        return {
            "broker": RoleBrokerFeatures(**wamp_broker.FEATURES),
            "dealer": RoleDealerFeatures(**wamp_dealer.FEATURES),
        }

    def join(self, session: IJoinedSession) -> int:
        """Give a session its id and count it in."""
        session_id = self._new_global_id()
        while session_id in self.sessions:
            session_id = self._new_global_id()
        self.sessions[session_id] = session
        self.stats.sessions_opened += 1
        return session_id

    def leave(self, session_id: int) -> None:
        """Remove every subscription, registration and pending call of a session."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        self.broker.detach(session)
        self.dealer.detach(session)
        self.stats.sessions_closed += 1

    def shut_down(self) -> None:
        """Tell every session the router is going away (the hub is stopping)."""
        for session in list(self.sessions.values()):
            session.shut_down()
