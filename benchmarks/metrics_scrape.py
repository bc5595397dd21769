"""Cost of one /metrics scrape (and one /stats) on the reactor thread, by cache size.

    python benchmarks/metrics_scrape.py [SENSORS ...]

No metric has a per-sensor label, so the scrape should not grow with the
cache; this measures it (median of 50 scrapes, ms).
"""

from __future__ import annotations

import statistics
import sys
import time

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.web.metrics import HubCollector, MetricsResource
from tantra.web.site import StatsResource


def measure(sensors: int) -> tuple[float, float, int]:
    clock = Clock()
    counters = Counters()
    hub = Hub(clock, counters=counters, max_sensors=max(sensors, 1))
    for start in range(0, sensors, 1000):
        batch = b",".join(
            b'{"device":"d%d","sensor":"s%d","value":1}' % (n // 10, n)
            for n in range(start, min(start + 1000, sensors))
        )
        hub.ingest(b"[" + batch + b"]", default_device="x")
        clock.advance(0.001)
    metrics = MetricsResource(HubCollector(counters, hub, {"tcp": lambda: 0}))
    stats = StatsResource(hub, DashboardFactory(hub, clock))
    timings: dict[str, list[float]] = {"metrics": [], "stats": []}
    size = 0
    for _ in range(50):
        for name, resource in (("metrics", metrics), ("stats", stats)):
            began = time.perf_counter()
            body = resource.render(DummyRequest([b""]))
            timings[name].append((time.perf_counter() - began) * 1000)
            if name == "metrics":
                size = len(body)
    return statistics.median(timings["metrics"]), statistics.median(timings["stats"]), size


if __name__ == "__main__":
    for count in [int(arg) for arg in sys.argv[1:]] or [0, 1000, 100_000]:
        metrics_ms, stats_ms, size = measure(count)
        print(
            f"{count:>7} sensors: /metrics {metrics_ms:.2f} ms ({size} bytes),"
            f" /stats {stats_ms:.3f} ms"
        )
