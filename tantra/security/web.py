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

from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

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
        # Byte segments, not urllib's parse_qsl + urlencode: those re-encode a
        # bytes query as ASCII and raise on any other percent-decoded byte
        # (``?device=f%C3%BCr``), which was an HTTP 500 before the name rules
        # could refuse it. The other parameters are kept exactly as sent.
        segments = parts.query.split(b"&")
        kept = []
        for segment in segments:
            name, _, value = segment.partition(b"=")
            if form_decoded(name) != b"token":
                kept.append(segment)
            elif secret is None:
                secret = form_decoded(value).decode("utf-8", "replace")
        if len(kept) != len(segments):
            request.uri = urlunsplit(parts._replace(query=b"&".join(kept)))
    return secret


def form_decoded(part: bytes) -> bytes:
    """A query name or value as a form decodes it (``+`` is a space), as bytes:
    whatever it decodes to, nothing here can raise."""
    return unquote_to_bytes(part.replace(b"+", b" "))


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
