"""Per-source token buckets: how many error replies a UDP source may still get.

Owns: the rate (replies per second, with a burst of the same size) and the
memory bound (at most ``max_sources`` sources are tracked; the least recently
seen is forgotten). Pure: the caller passes the time. Why: UDP sources can be
forged, so error replies must never become a reflection flood.
"""

from __future__ import annotations


class SourceRateLimiter:
    """Allows each source ``rate`` events per second on average, ``rate`` at once."""

    def __init__(self, rate: float, *, max_sources: int = 10_000):
        if rate < 0 or max_sources < 1:
            raise ValueError("rate must be >= 0 and max_sources >= 1")
        self.rate = rate
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, last time)

    def allow(self, source: str, now: float) -> bool:
        """Take one token for ``source`` if it has one."""
        if self.rate == 0:
            return False
        tokens, last = self._buckets.pop(source, (self.rate, now))
        if len(self._buckets) >= self.max_sources:
            del self._buckets[next(iter(self._buckets))]
        tokens = min(self.rate, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        return allowed
