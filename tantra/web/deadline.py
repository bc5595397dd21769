"""HTTP request headers must arrive in time, however slowly a client trickles them.

Owns: the deadline between the first byte of a request and its last header
line (:data:`HEADER_DEADLINE`). Twisted's HTTP idle timeout
(``Site(timeout=...)``) restarts on every byte received, so a client that
sends one header byte a minute ("slowloris") holds its connection, and a file
descriptor of the hub, for ever; a few thousand such clients leave no
descriptor for dashboards. With the deadline each of them is answered
``408`` and closed, and counted in ``clients_dropped`` under
``header_timeout``.

The deadline starts with a request's first byte, not when the connection goes
idle: a keep-alive connection that sends nothing is the idle timeout's
business, and a request whose headers came in one packet never meets it. It
ends when the headers are complete, so neither a request body nor a
WebSocket, which takes the connection over right after its upgrade request,
is limited by it.

Does not own: the resource tree (``tantra.web.site``) or the idle timeout.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

#: Seconds from a request's first byte to its blank line after the headers.
HEADER_DEADLINE = 20.0

#: The ``clients_dropped`` reason (``/stats``, ``tantra_clients_dropped_total``).
DROP_REASON = "header_timeout"


def _timeout_response(deadline: float) -> bytes:
    body = orjson.dumps(
        {
            "error": "request_timeout",
            "detail": f"the request's headers did not arrive within {deadline:g} s",
        }
    )
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"Content-Type: application/json\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


class DeadlineChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel, with :data:`HEADER_DEADLINE` per request.

    ``site.header_deadline`` and ``site.clients_dropped`` (a Counter), when
    the site has them, override the deadline and receive the count.
    """

    _deadline: IDelayedCall | None = None
    _awaiting_headers = True
    #: Set by ``Site.buildProtocol``; declared for the type checker.
    site: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self._awaiting_headers and self._deadline is None:
            seconds = getattr(self.site, "header_deadline", HEADER_DEADLINE)
            call_later: Any = self.callLater  # the site's reactor's, set by HTTPFactory
            self._deadline = call_later(seconds, self._headers_too_slow, seconds)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._awaiting_headers = False
        self._cancel_deadline()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        # Before Twisted re-reads what the client pipelined meanwhile, which
        # comes back through dataReceived and starts the next request's deadline.
        self._awaiting_headers = True
        super().requestDone(request)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancel_deadline()
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self, seconds: float) -> None:
        self._deadline = None
        dropped: Counter[str] | None = getattr(self.site, "clients_dropped", None)
        if dropped is not None:
            dropped[DROP_REASON] += 1
        transport = self.transport
        if transport is None:
            return
        transport.write(_timeout_response(seconds))
        # As Twisted's own idle timeout does: close after the write, and abort
        # if the client does not read even that within its abort timeout.
        self.timeoutConnection()
