"""The WAMP router's bounds: what one client may make it hold or do, and a quiet log.

Owns: :class:`WampLimits` (every per-session and per-message bound of the
router, with its default; ``tantra.settings`` exposes the ones a user may
need to change), :data:`LIMIT_EXCEEDED` / :data:`TOO_LARGE` (the error URIs
an over-limit request gets), :func:`shorten` (client text is never logged
or echoed unbounded) and :class:`LogThrottle` (bad input is logged at most
once per interval per kind, with a count of what was not).

Why here: a hostile client can open 10^5 subscriptions, send 60 KB URIs or
leave 10^5 calls unanswered; every bound that stops it lives in one table so
docs/wamp.md and the settings can list them.

Does not own: enforcing them (``session``, ``broker``, ``dealer``,
``outbox`` do, each for its own state). Pure: the throttle is given the time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs

#: A request over one of the per-session bounds (subscriptions, registrations, pending calls).
LIMIT_EXCEEDED = "tantra.error.limit_exceeded"
#: An answer (RESULT, EVENT, INVOCATION) larger than the client's outgoing message limit.
TOO_LARGE = "wamp.error.payload_size_exceeded"
#: A call its callee did not answer within ``call_timeout``.
TIMEOUT = "wamp.error.timeout"

#: Longest client text (URIs, reasons) quoted in a log line or an error message.
MAX_QUOTED = 120


@attrs.frozen
class WampLimits:
    """Bounds of one router; each is per session unless it says otherwise."""

    #: Longest topic, procedure or realm URI, in UTF-8 bytes (ERROR ``wamp.error.invalid_uri``).
    max_uri_bytes: int = 512
    #: Subscriptions one session may hold (ERROR :data:`LIMIT_EXCEEDED`).
    max_subscriptions: int = 1000
    #: Registrations one session may hold (ERROR :data:`LIMIT_EXCEEDED`).
    max_registrations: int = 100
    #: Calls one session may have waiting for a callee (ERROR :data:`LIMIT_EXCEEDED`).
    max_pending_calls: int = 1000
    #: Seconds a callee has to answer (ERROR :data:`TIMEOUT`; 0: no limit).
    call_timeout: float = 60.0
    #: Largest message the router sends a client, in bytes (larger: :data:`TOO_LARGE`).
    max_outgoing_bytes: int = 1024 * 1024
    #: Work (messages handled + messages sent) one session may do per reactor turn.
    turn_budget: int = 1000
    #: Retained events (of ``get_retained`` subscriptions) sent per session per reactor turn.
    retained_chunk: int = 256


def shorten(text: object, limit: int = MAX_QUOTED) -> str:
    """``text`` as a string of at most about ``limit`` characters (client input is unbounded)."""
    value = text if isinstance(text, str) else repr(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…({len(value)} chars)"


class LogThrottle:
    """At most one log line per ``interval`` seconds for each kind; the rest are counted."""

    def __init__(self, seconds: Callable[[], float] | None, interval: float = 1.0):
        self._seconds = seconds
        self._interval = interval
        self._last: dict[str, float] = {}
        self.suppressed: Counter[str] = Counter()

    def allow(self, kind: str) -> int | None:
        """None to stay quiet; otherwise how many lines of ``kind`` were held back before it."""
        now = self._seconds() if self._seconds is not None else 0.0
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self.suppressed[kind] += 1
            return None
        self._last[kind] = now
        return self.suppressed.pop(kind, 0)
