"""Tokens and origins on plain HTTP requests: the history API and the operator pages.

Owns :class:`HttpGate`, the one check every guarded HTTP resource makes
(``--allowed-origins`` on a browser's ``Origin``, then with ``--auth`` the
token of ``Authorization: Bearer`` or ``?token=``), and :class:`Guarded`,
the resource wrapper that makes it before anything below it runs. The
token is taken out of the request first (``tantra.security.web.take_secret``)
so neither the access log nor an endpoint's parameter check sees it. What
a reader may see travels with the request (:func:`scope_of`); the history
API intersects its queries with it.

The rule per resource:

- the history API (``/api``): any token; an admin sees everything, a reader
  its scope, a device token its own device;
- operator data (``/stats``, ``/metrics``): an *operator* token, i.e. an
  admin token or a reader whose scope is everything (``*``), so a
  Prometheus scraper can hold a token that cannot send readings. There is
  no loopback exception: behind a reverse proxy on the same machine every
  request comes from loopback;
- ``/healthz`` and ``/readyz`` stay open for probes (``/readyz`` shows its
  checks' reasons only to operator tokens when auth is on, see
  :meth:`HttpGate.may_see_details`).

Refusals are JSON like the API's: 401 ``unauthorized`` (no token, a bad
one; with ``WWW-Authenticate: Bearer``), 403 ``forbidden`` (a token of the
wrong kind, a browser origin not on the list). Each is counted in
``counters.auth``.

Does not own: token matching (``tantra.security.gate.Auth``), scopes
(``tantra.security.scopes``), the endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from tantra.counters import AuthStats
from tantra.security.gate import FORBIDDEN, UNAUTHORIZED, Auth
from tantra.security.readers import origin_allowed
from tantra.security.scopes import Scope
from tantra.security.tokens import Token
from tantra.security.web import take_secret

#: The attribute of a request that holds the scope its token allows (absent: everything).
_SCOPE = "tantra_scope"
#: Logins through plain HTTP are counted under this transport.
TRANSPORT = "http"


def scope_of(request: Any) -> Scope | None:
    """What the request's token may see; None: everything (auth off, or an admin)."""
    return getattr(request, _SCOPE, None)


def is_operator(token: Token) -> bool:
    """May read hub-wide counters: an admin, or a reader that may see everything."""
    return token.kind == "admin" or (token.kind == "reader" and token.scope.everything)


class Refusal(Resource):
    """A JSON 401 or 403 for every method and path below it."""

    isLeaf = True

    def __init__(self, status: int, code: str, detail: str):
        super().__init__()
        self.status = status
        self.body = orjson.dumps({"error": code, "detail": detail})

    def render(self, request) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if self.status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="tantra"')
        return self.body


class HttpGate:
    """The origin rule and, with ``--auth``, the token rule for HTTP requests."""

    def __init__(self, auth: Auth | None, allowed_origins: Sequence[str], stats: AuthStats):
        self.auth = auth
        self.allowed_origins = tuple(allowed_origins)
        self.stats = stats

    @property
    def checks_anything(self) -> bool:
        return self.auth is not None or bool(self.allowed_origins)

    def check(self, request: Any, *, operator: bool) -> Refusal | None:
        """None to let the request through (its scope set), else the refusal to render."""
        origin = request.getHeader(b"origin")
        if not origin_allowed(
            origin.decode("latin-1") if origin is not None else None, self.allowed_origins
        ):
            self.stats.origin_refused += 1
            return Refusal(403, FORBIDDEN, "origin not allowed")
        secret = take_secret(request)
        if request.args:
            request.args.pop(b"token", None)
        if self.auth is None:
            return None
        token = self.auth.login(secret, TRANSPORT)
        if token is None:
            return Refusal(
                401,
                UNAUTHORIZED,
                "a token is needed: Authorization: Bearer TOKEN (or ?token=TOKEN)"
                if not secret
                else "unknown or revoked token",
            )
        if operator and not is_operator(token):
            self.stats.refused[f"{TRANSPORT}:wrong_kind"] += 1
            return Refusal(
                403, FORBIDDEN, "needs an admin token or a reader token whose scope is *"
            )
        if not token.scope.everything:
            setattr(request, _SCOPE, token.scope)
        return None

    def may_see_details(self, request: Any) -> bool:
        """For ``/readyz``: auth off, or an operator token presented (nothing counted)."""
        if self.auth is None:
            return True
        secret = take_secret(request)
        if request.args:
            request.args.pop(b"token", None)
        token = self.auth.table.find(secret) if secret else None
        return token is not None and is_operator(token)

    def guard(self, resource: IResource, *, operator: bool = False) -> IResource:
        """``resource`` behind this gate; unchanged when the gate checks nothing."""
        if not self.checks_anything:
            return resource
        return Guarded(resource, self, operator=operator)


@implementer(IResource)
class Guarded:
    """Checks a request once at the top of a subtree, then hands it to the wrapped resource."""

    isLeaf = False

    def __init__(self, wrapped: IResource, gate: HttpGate, *, operator: bool):
        self._wrapped = wrapped
        self._gate = gate
        self._operator = operator

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        refusal = self._gate.check(request, operator=self._operator)
        if refusal is not None:
            return refusal
        if self._wrapped.isLeaf:
            # A leaf renders the rest of the path itself: undo the step twisted.web took.
            request.postpath.insert(0, request.prepath.pop())
            return self._wrapped
        return self._wrapped.getChildWithDefault(path, request)

    def render(self, request: Any) -> bytes | int:
        refusal = self._gate.check(request, operator=self._operator)
        if refusal is not None:
            return refusal.render(request)
        return self._wrapped.render(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("mount children on the wrapped resource")
