"""Tokens on the HTTP side: taken out of a WebSocket request before anything can log them.

Owns :class:`TokenTakingResource`, the WebSocket resource of the dashboards
and of WAMP. Autobahn replays the whole HTTP request to its protocol and, at
debug level, logs it raw; twisted.web's access log writes the URI. So the
token (``Authorization: Bearer`` or ``?token=``) is removed from the request
here, before either sees it, and handed to the protocol being built through
its factory's ``presented_secret`` (set only for the synchronous duration of
``render``, during which Autobahn builds and connects the protocol).

Does not own: checking the token (``tantra.security.gate.Auth``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from autobahn.twisted.resource import WebSocketResource

from tantra.security.connlimit import hand_over

TOKEN_PARAMETER = "token"


def take_secret(request) -> str | None:
    """Remove the token from ``request`` (header and query); return it (header first)."""
    secret = None
    header = request.getHeader(b"authorization")
    if header is not None:
        request.requestHeaders.removeHeader(b"authorization")
        if header[:7].lower() == b"bearer ":
            secret = header[7:].strip().decode("utf-8", "replace") or None
        else:
            secret = ""  # presented, but not as a bearer token: refused, never logged
    parts = urlsplit(request.uri)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k != b"token"]
        if len(kept) != len(pairs):
            if secret is None:
                secret = next(v for k, v in pairs if k == b"token").decode("utf-8", "replace")
            request.uri = urlunsplit(parts._replace(query=urlencode(kept).encode()))
    return secret


class TokenTakingResource(WebSocketResource):
    """Autobahn's WebSocket resource, with the token moved out of the request first."""

    def render(self, request):
        factory = self._factory
        factory.presented_secret = take_secret(request)
        if request.channel.transport is not None:
            hand_over(request.channel, request.channel.transport)
        try:
            return super().render(request)
        finally:
            factory.presented_secret = None
