"""Who may join the realm: the authentication seam of the router session.

Owns: :class:`IAuthenticator`, the decision a router session asks for when a
HELLO arrives, and the outcomes it may return: :class:`Welcome` (join with
this authid/authrole), :class:`Deny` (ABORT with this reason), or, once
ticket authentication exists, :class:`Challenge` (send CHALLENGE, then ask
:meth:`IAuthenticator.authenticate` with the AUTHENTICATE the client
answers). Today only :class:`AnonymousAuthenticator` exists.

Does not own: realms (the router checks the realm before asking), session
state, messages on the wire.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
from autobahn.wamp import message
from zope.interface import Interface, implementer

from tantra.wamp.peer import NO_AUTH_METHOD

ANONYMOUS = "anonymous"


@attrs.frozen
class Welcome:
    authid: str
    authrole: str
    authmethod: str
    authprovider: str = "static"
    authextra: dict[str, Any] | None = None
    #: What the session was admitted with (``tantra.security``); None when anonymous.
    token: Any = None


@attrs.frozen
class Deny:
    reason: str
    text: str


@attrs.frozen
class Challenge:
    method: str
    extra: dict[str, Any] = attrs.Factory(dict)


Outcome = Welcome | Deny | Challenge


class IAuthenticator(Interface):
    """Decides whether a client joins, and as whom."""

    def hello(realm: str, msg: message.Hello) -> Outcome:
        """First answer to a HELLO (already known to name our realm)."""

    def authenticate(msg: message.Authenticate) -> Outcome:
        """Answer to the client's AUTHENTICATE after a :class:`Challenge`."""


@implementer(IAuthenticator)
class AnonymousAuthenticator:
    """Everyone joins as role ``anonymous``, unless they insist on another method."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def hello(self, realm: str, msg: message.Hello) -> Outcome:
        methods = msg.authmethods
        if methods and ANONYMOUS not in methods:
            return Deny(
                NO_AUTH_METHOD,
                f"this hub offers anonymous authentication only, not {', '.join(methods)}",
            )
        authid = msg.authid or f"anonymous-{next(self._numbers)}"
        return Welcome(authid=authid, authrole=ANONYMOUS, authmethod=ANONYMOUS)

    def authenticate(self, msg: message.Authenticate) -> Outcome:
        return Deny(NO_AUTH_METHOD, "no challenge was sent")
