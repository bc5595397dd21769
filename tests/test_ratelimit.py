"""Per-source error-reply budget."""

from tantra.ratelimit import SourceRateLimiter


def test_burst_then_refill():
    limiter = SourceRateLimiter(10)
    assert sum(limiter.allow("a", 0.0) for _ in range(50)) == 10
    assert limiter.allow("b", 0.0), "each source has its own bucket"
    assert not limiter.allow("a", 0.05)
    assert limiter.allow("a", 0.1)
    assert sum(limiter.allow("a", 100.0) for _ in range(50)) == 10, "refill caps at the burst"


def test_zero_rate_never_allows():
    assert not SourceRateLimiter(0).allow("a", 0.0)


def test_sources_are_bounded():
    limiter = SourceRateLimiter(1, max_sources=3)
    for source in "abcdef":
        limiter.allow(source, 0.0)
    assert len(limiter._buckets) == 3
