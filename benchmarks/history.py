"""History figures: writer ingest, aggregate, a page, CSV export speed and memory.

Not part of the test suite. Run from the checkout:

    python -m benchmarks.history [--pg postgresql://postgres@127.0.0.1/test] [--rows 1000000]

Prints one line per figure. SQLite lives in a temporary directory; PostgreSQL
runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from twisted.internet import defer, task
from twisted.web.resource import Resource
from twisted.web.server import Site

from tantra.model import Reading
from tantra.store import backend_for
from tantra.store.query import DAY_MS, HOUR_MS, AggregateQuery, ReadingsQuery, SeriesFilter
from tantra.store.writer import Store
from tantra.web.api import build_api
from tantra.web.params import align, auto_step

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


async def ingest(reactor, url: str, count: int) -> float:
    """Readings/s through submit() in batches of 10 until the last commit."""
    store = Store(backend_for(url), reactor)
    store.start()
    readings = [
        Reading(f"dev-{i % 50}", f"s{i % 7}", i * 0.5, T0 + i, "u", i) for i in range(count)
    ]
    started = time.perf_counter()
    last = None
    for start in range(0, count, 10):
        if store.queued > store.queue_limit - 1000:
            await last  # keep under the queue bound, as a hub under load would shed
        last = store.submit(readings[start : start + 10])
    await last
    took = time.perf_counter() - started
    await store.stop()
    return count / took


def load_month(url: str) -> None:
    """30 days of one reading a second for one sensor, written in big transactions."""
    backend = backend_for(url)
    conn = backend.connect()
    backend.migrate(conn)
    batch = 50_000
    total = 30 * 86_400
    for start in range(0, total, batch):
        backend.write(
            conn,
            [
                Reading("month", "temp", 20 + (i % 600) / 100, T0 + i * 1000, "C")
                for i in range(start, min(total, start + batch))
            ],
        )
    conn.close()


async def queries(reactor, url: str) -> dict[str, float]:
    store = Store(backend_for(url), reactor)
    store.start()
    out = {}
    end = T0 + 30 * DAY_MS
    step = auto_step(T0, end, 1000)
    first, last = align(T0, end, step)
    query = AggregateQuery(
        SeriesFilter(("month",), ("temp",)),
        first,
        last,
        step,
        ("avg", "min", "max", "count", "first", "last"),
    )
    times = []
    for _ in range(5):
        started = time.perf_counter()
        (series,) = await store.query("aggregate", query)
        times.append(time.perf_counter() - started)
    out["aggregate_ms"] = min(times) * 1000
    out["aggregate_buckets"] = len(series["buckets"])
    times = []
    for offset in range(5):
        started = time.perf_counter()
        rows = await store.query(
            "readings",
            ReadingsQuery(SeriesFilter(("month",)), start=T0 + offset * DAY_MS, limit=1000),
        )
        times.append(time.perf_counter() - started)
        assert len(rows) == 1000
    out["page_ms"] = min(times) * 1000
    await store.stop()
    return out


async def export(reactor, url: str, rows: int) -> dict[str, float]:
    """A CSV export of ``rows`` readings fetched by curl; this process's RSS sampled."""
    store = Store(backend_for(url), reactor)
    store.start()
    root = Resource()
    root.putChild(b"api", build_api(store, reactor))
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    peak = [rss_kib()]
    sampler = task.LoopingCall(lambda: peak.append(rss_kib()))
    sampler.start(0.05)
    before = rss_kib()
    started = time.perf_counter()
    end = T0 + rows * 1000
    address = f"http://127.0.0.1:{port.getHost().port}/api/v1/readings?device=month&to={end}"
    process = await defer.Deferred.fromCoroutine(
        _run(reactor, ["curl", "-sS", "-o", "/tmp/x.csv", address + "&format=csv"])
    )
    took = time.perf_counter() - started
    sampler.stop()
    with open("/tmp/x.csv", "rb") as exported:
        lines = sum(1 for _ in exported) - 1
    os.remove("/tmp/x.csv")
    await port.stopListening()
    await store.stop()
    assert process == 0 and lines == rows, (process, lines)
    return {"rows_per_s": rows / took, "rss_growth_mib": (max(peak) - before) / 1024}


async def _run(reactor, argv: list[str]) -> int:
    from twisted.internet.utils import getProcessValue

    return await getProcessValue(argv[0], argv[1:], env=os.environ, reactor=reactor)


async def main(reactor, options) -> None:
    if options.ingest_only:
        await ingest_only(reactor, options)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:{tmp}/bench.sqlite3"
        rate = await ingest(reactor, sqlite, options.ingest)
        print(f"sqlite ingest (writer, batches of 10): {rate:,.0f} readings/s")
        month = f"sqlite:{tmp}/month.sqlite3"
        load_month(month)
        figures = await queries(reactor, month)
        print(
            f"sqlite aggregate 30 days 1/s into {figures['aggregate_buckets']} buckets:"
            f" {figures['aggregate_ms']:.1f} ms; page of 1000: {figures['page_ms']:.1f} ms"
        )
        figures = await export(reactor, month, options.rows)
        print(
            f"sqlite CSV export of {options.rows:,} rows: {figures['rows_per_s']:,.0f} rows/s,"
            f" RSS growth {figures['rss_growth_mib']:.1f} MiB"
        )
    if options.pg:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(options.pg, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{options.pg}?options=-csearch_path%3D{schema}"
        try:
            rate = await ingest(reactor, url, options.ingest)
            print(f"postgres ingest (writer, batches of 10): {rate:,.0f} readings/s")
            load_month(url)
            figures = await queries(reactor, url)
            print(
                f"postgres aggregate 30 days 1/s into {figures['aggregate_buckets']} buckets:"
                f" {figures['aggregate_ms']:.1f} ms; page of 1000: {figures['page_ms']:.1f} ms"
            )
            figures = await export(reactor, url, options.rows)
            print(
                f"postgres CSV export of {options.rows:,} rows: {figures['rows_per_s']:,.0f}"
                f" rows/s, RSS growth {figures['rss_growth_mib']:.1f} MiB"
            )
        finally:
            with psycopg.connect(options.pg, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def ingest_only(reactor, options) -> None:
    """Only the writer ingest figures, each the median of ``--runs`` runs."""
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        rates = [
            await ingest(reactor, f"sqlite:{tmp}/bench{run}.sqlite3", options.ingest)
            for run in range(options.runs)
        ]
        print(f"sqlite ingest (writer, batches of 10): {statistics.median(rates):,.0f} readings/s"
              f" (median of {options.runs}: {', '.join(f'{r:,.0f}' for r in rates)})")  # fmt: skip
    if options.pg:
        import psycopg

        rates = []
        for _ in range(options.runs):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(options.pg, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            try:
                url = f"{options.pg}?options=-csearch_path%3D{schema}"
                rates.append(await ingest(reactor, url, options.ingest))
            finally:
                with psycopg.connect(options.pg, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
        print(f"postgres ingest (writer, batches of 10): {statistics.median(rates):,.0f} readings/s"
              f" (median of {options.runs}: {', '.join(f'{r:,.0f}' for r in rates)})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="PostgreSQL URL (a schema is made and dropped)")
    parser.add_argument("--ingest", type=int, default=300_000, help="readings for the ingest run")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the CSV export")
    parser.add_argument("--ingest-only", action="store_true", help="only the ingest figures")
    parser.add_argument("--runs", type=int, default=3, help="ingest runs (--ingest-only)")
    options = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, options)))
