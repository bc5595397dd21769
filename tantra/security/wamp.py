"""WAMP under ``--auth``: ticket authentication, and what each session may subscribe, publish, call.

Owns :class:`TicketAuthenticator` (the router's ``IAuthenticator``: the token
is the ticket, authid = token name, authrole = token kind; anonymous and
every other method refused) and :class:`WampAuthorizer`, asked by a joined
session before SUBSCRIBE, PUBLISH, REGISTER and CALL, and after a built-in
call (``tantra.latest`` and ``tantra.sensors`` answer within the scope).

The rules (docs/security.md):

- readings topics ``tantra.reading.DEVICE.SENSOR``: a subscription is allowed
  when *every* topic it can match is within the token's scope (an exact
  topic, a prefix ending at a device or sensor boundary, a wildcard with
  named parts); publishing needs a device token of that DEVICE (or admin);
- ``tantra.latest`` / ``tantra.sensors``: any token, results intersected with its scope;
- anything else (plain pub/sub topics, registering or calling other procedures): admin only.

Does not own: the router's messages (``tantra.wamp``), token checks (``gate.Auth``).
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from autobahn.wamp import message
from zope.interface import implementer

from tantra.security.gate import Auth
from tantra.security.scopes import Scope
from tantra.security.tokens import Token
from tantra.wamp import auth as wamp_auth
from tantra.wamp.peer import NO_AUTH_METHOD

READING_PREFIX = "tantra.reading."
SCOPED_PROCEDURES = ("tantra.latest", "tantra.sensors")
AUTHENTICATION_FAILED = "wamp.error.authentication_failed"
TICKET = "ticket"


@implementer(wamp_auth.IAuthenticator)
class TicketAuthenticator:
    """WAMP-Ticket with the hub's tokens (only over TLS outside a trusted network)."""

    def __init__(self, auth: Auth):
        self.auth = auth

    def hello(self, realm: str, msg: message.Hello) -> wamp_auth.Outcome:
        if TICKET not in (msg.authmethods or ()):
            self.auth.stats.refused["wamp:no_token"] += 1
            return wamp_auth.Deny(
                NO_AUTH_METHOD, "this hub requires ticket authentication (the ticket is a token)"
            )
        return wamp_auth.Challenge(TICKET)

    def authenticate(self, msg: message.Authenticate) -> wamp_auth.Outcome:
        token = self.auth.login(msg.signature, "wamp")
        if token is None:
            return wamp_auth.Deny(AUTHENTICATION_FAILED, "unknown or revoked token")
        extra = {"device": token.device} if token.device else None
        return wamp_auth.Welcome(
            authid=token.name, authrole=token.kind, authmethod=TICKET, authextra=extra, token=token
        )


def _covers(scope: Scope, device: str, sensor: str) -> bool:
    """Every (d, s) matching the globs ``device``/``sensor`` is within ``scope``.

    Sound, not complete: a pattern of the scope must cover each glob by
    itself (equal text, or ``*``); a literal is covered by any glob matching it.
    """

    def covers(pattern: str, glob: str) -> bool:
        if pattern == "*" or pattern == glob:
            return True
        return "*" not in glob and "?" not in glob and fnmatchcase(glob, pattern)

    return scope.everything or any(
        covers(p.device, device) and covers(p.sensor, sensor) for p in scope.patterns
    )


def subscription_within(scope: Scope, topic: str, match: str) -> bool:
    """May a session with ``scope`` subscribe to ``topic`` with ``match``? (see the module doc)."""
    if scope.everything:
        return True
    if match == "wildcard":
        parts = topic.split(".")
        if len(parts) != 4 or parts[:2] != ["tantra", "reading"]:
            return False
        device, sensor = (part or "*" for part in parts[2:])
        return _covers(scope, device, sensor)
    if not topic.startswith(READING_PREFIX):
        return False
    rest = topic[len(READING_PREFIX) :]
    if match == "prefix":
        if "." not in rest:  # tantra.reading.farm: devices farm, farm-1, ... any sensor
            return _covers(scope, rest + "*", "*")
        device, sensor = rest.split(".", 1)
        return "." not in sensor and _covers(scope, device, sensor + "*")
    parts = rest.split(".")
    return len(parts) == 2 and _covers(scope, parts[0], parts[1])


class WampAuthorizer:
    """The per-request decisions for joined sessions (None: allowed, else why not)."""

    def __init__(self, auth: Auth):
        self.auth = auth

    def joined(self, token: Token, close: Callable[[], None]) -> Callable[[], None]:
        """Remember a session (revoking its token closes it); returns the release call."""
        return self.auth.hold(token, close)

    def refusal(self, token: Token | None, msg: Any) -> str | None:
        if token is None:
            return "not authenticated"
        reason = self._refusal(token, msg)
        if reason is not None:
            self.auth.stats.wamp_denied[type(msg).__name__.lower()] += 1
        return reason

    def _refusal(self, token: Token, msg: Any) -> str | None:
        admin = token.kind == "admin"
        if isinstance(msg, message.Subscribe):
            if subscription_within(token.scope, msg.topic, msg.match or "exact"):
                return None
            return (
                f"{msg.topic!r} ({msg.match or 'exact'}) reaches beyond token {token.name}'s scope"
            )
        if isinstance(msg, message.Publish):
            if admin:
                return None
            if msg.topic.startswith(READING_PREFIX) and token.device is not None:
                parts = msg.topic[len(READING_PREFIX) :].split(".")
                if parts[0] == token.device:
                    return None
                return f"token {token.name} publishes as device {token.device} only"
            return f"a {token.kind} token may not publish to {msg.topic!r}"
        if isinstance(msg, message.Call):
            if admin or msg.procedure in SCOPED_PROCEDURES:
                return None
            return f"a {token.kind} token may only call {', '.join(SCOPED_PROCEDURES)}"
        if isinstance(msg, message.Register):
            return None if admin else f"a {token.kind} token may not register procedures"
        return None

    @staticmethod
    def restrict_result(token: Token | None, procedure: str, result: Any) -> Any:
        """``tantra.latest`` / ``tantra.sensors`` results within the token's scope."""
        if token is None or token.scope.everything or procedure not in SCOPED_PROCEDURES:
            return result
        allows = token.scope.allows
        return [item for item in result if allows(item["device"], item["sensor"])]
