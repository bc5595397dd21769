"""The store contract, run against real databases: SQLite in a tmp dir and PostgreSQL on loopback.

Each test drives a real :class:`Store` (writer thread, read pool) on the real
reactor. Nothing is mocked below the backend; where a failure has to be
provoked, a backend subclass fails on purpose or PostgreSQL kills the
writer's connection.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tantra.hub import Hub
from tantra.model import Reading
from tantra.store import NotStored, SchemaTooNew, backend_for
from tantra.store.backend import Backend, fold_rollups
from tantra.store.query import (
    AGGREGATE_FUNCTIONS,
    HOUR_MS,
    MINUTE_MS,
    AggregateQuery,
    ReadingsQuery,
    SeriesFilter,
)
from tantra.store.sink import StoreService
from tantra.store.writer import Store
from tests.support.stores import BACKENDS, store_url

T0 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS  # an hour boundary
TIMEOUT = 10.0


def within(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


async def eventually(condition: Callable[[], Any], seconds: float = TIMEOUT) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition never became true")


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with store_url(request.param, tmp_path) as made:
        yield made


def open_store(url: str, backend: Backend | None = None, **kwargs: Any) -> Store:
    store = Store(backend or backend_for(url), reactor, **kwargs)
    store.start()
    return store


def r(sensor: str, value, ts: int, *, device: str = "farm-1", unit: str | None = None, seq=None):
    return Reading(device, sensor, value, ts, unit, seq)


@pytest_twisted.ensureDeferred
async def test_submit_fires_after_commit_with_increasing_ids_and_values_round_trip(url):
    store = open_store(url)
    try:
        batch = [
            r("moisture", 42, T0, unit="%", seq=1),
            r("rpm", 1234.5, T0 + 1),
            r("pump", True, T0 + 2, seq=2),
            r("pump", False, T0 + 3),
            r("big", 2**52, T0 + 4),
        ]
        ids = await within(store.submit(batch))
        more = await within(store.submit([r("moisture", 43, T0 + 10, unit="%")]))
        assert ids == sorted(ids) and len(set(ids)) == 5 and more[0] > ids[-1]
        rows = await within(store.query("readings", ReadingsQuery()))
        got = [row.to_dict() for row in rows]
        assert got == [
            {**reading.to_dict(), "id": id_}
            for reading, id_ in zip(
                [*batch, r("moisture", 43, T0 + 10, unit="%")], [*ids, *more], strict=True
            )
        ]
        assert [type(row.value) for row in rows] == [int, float, bool, bool, int, int]
        assert store.stats()["stored"] == 6 and store.state == "ok"
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_integers_a_double_would_round_come_back_exactly(url):
    """Every 64-bit integer reading returns as broadcast (schema 3), from every read path."""
    values = [2**53, 2**53 + 1, -(2**53) - 1, 9007199254740993, 2**63 - 1, -(2**63), 2**64 - 1]
    store = open_store(url)
    try:
        batch = [r(f"i{n}", value, T0 + n) for n, value in enumerate(values)]
        ids = await within(store.submit(batch))
        rows = await within(store.query("readings", ReadingsQuery()))
        assert [(row.value, type(row.value)) for row in rows] == [(v, int) for v in values]
        resumed = await within(store.query("readings_after_id", ids[0] - 1, SeriesFilter(), 100))
        assert [row.value for row in resumed] == values
        sensors = await within(store.query("sensors", SeriesFilter()))
        assert sorted(entry["last"]["value"] for entry in sensors) == sorted(values)
        # Ranges and rollups keep using the number: the nearest double.
        assert orjson.loads(orjson.dumps([row.to_dict() for row in rows]))[6]["value"] == 2**64 - 1
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_commit_listeners_hear_every_commit_and_group_commit_batches(url):
    store = open_store(url, commit_interval=0.05)
    heard: list[tuple[list, list]] = []
    store.add_commit_listener(lambda readings, ids: heard.append((list(readings), list(ids))))
    try:
        submitted = [store.submit([r("s", i, T0 + i)]) for i in range(200)]
        results = await within(defer.gatherResults(submitted))
        assert [reading.value for readings, _ in heard for reading in readings] == list(range(200))
        assert [id_ for _, ids in heard for id_ in ids] == [ids[0] for ids in results]
        # 200 submissions in one reactor turn: a handful of transactions, not 200
        assert store.stats()["commits"] <= 10
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_stop_commits_what_is_queued_and_a_restart_continues_the_ids(url):
    store = open_store(url)
    pending = store.submit([r("s", i, T0 + i) for i in range(500)])
    await within(store.stop())
    ids = await within(pending)
    assert len(ids) == 500
    again = open_store(url)
    try:
        (after,) = await within(again.submit([r("s", 1, T0 + 999)]))
        # SQLite counts on; PostgreSQL skips the block each start reserved (tantra.store.ids)
        assert after == ids[-1] + 1 if url.startswith("sqlite:") else after > ids[-1]
        assert again.schema_version == 3
    finally:
        await within(again.stop())
    with pytest.raises(NotStored):
        await again.submit([r("s", 1, T0)])  # a stopped store sheds at once


def test_a_schema_newer_than_the_code_stops_start_up_with_one_line(url):
    backend = backend_for(url)
    conn = backend.connect()
    backend.migrate(conn)
    conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 999, newer than this Tantra"):
        Store(backend_for(url), reactor).start()
    service = StoreService(Store(backend_for(url), reactor), Hub(reactor))
    with pytest.raises(SystemExit) as exited:
        service.startService()
    message = str(exited.value)
    assert message.startswith("tantra: cannot open the history store") and "\n" not in message
    assert "999" in message


def reference_buckets(readings: list[Reading], step: int) -> list[dict]:
    """Aggregates computed the obvious way, in Python, for comparison."""
    buckets: dict[int, list[Reading]] = {}
    for reading in readings:
        buckets.setdefault(reading.ts - reading.ts % step, []).append(reading)
    out = []
    for t in sorted(buckets):
        values = [float(x.value) for x in buckets[t]]
        by_ts = sorted(enumerate(buckets[t]), key=lambda item: (item[1].ts, item[0]))
        out.append(
            {
                "t": t,
                "avg": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "count": len(values),
                "first": float(by_ts[0][1].value),
                "last": float(max(by_ts, key=lambda item: (item[1].ts, item[0]))[1].value),
                "sum": sum(values),
            }
        )
    return out


@pytest_twisted.ensureDeferred
async def test_aggregates_from_rollups_and_from_raw_rows_match_a_reference(url):
    rng = random.Random(7)
    readings = []
    # three hours, arriving out of order in several groups, with equal timestamps
    for _ in range(3000):
        ts = T0 + rng.randrange(0, 3 * HOUR_MS, 250)
        readings.append(r("rpm", rng.choice([rng.randint(-50, 50), rng.random() * 100]), ts))
    store = open_store(url)
    try:
        for start in range(0, len(readings), 700):
            await within(store.submit(readings[start : start + 700]))
        for step in (HOUR_MS, 15 * MINUTE_MS, MINUTE_MS, 10_000, 7_000):
            query = AggregateQuery(SeriesFilter(), T0, T0 + 3 * HOUR_MS, step, AGGREGATE_FUNCTIONS)
            (series,) = await within(store.query("aggregate", query))
            assert series["device"] == "farm-1" and series["sensor"] == "rpm"
            expected = reference_buckets(readings, step)
            assert len(series["buckets"]) == len(expected), step
            for got, want in zip(series["buckets"], expected, strict=True):
                assert got.keys() == want.keys()
                for key, value in want.items():
                    assert got[key] == pytest.approx(value), (step, key, got["t"])
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_pages_in_both_orders_cover_every_reading_once_with_ties_broken_by_id(url):
    store = open_store(url)
    readings = [r("a" if i % 3 else "b", i, T0 + (i // 4) * 1000) for i in range(103)]
    try:
        await within(store.submit(readings))
        for order in ("asc", "desc"):
            seen, after = [], None
            while True:
                page = await within(
                    store.query("readings", ReadingsQuery(limit=10, order=order, after=after))
                )
                seen.extend(page)
                if len(page) < 10:
                    break
                after = (page[-1].ts, page[-1].id)
            values = [row.value for row in seen]
            assert values == (list(range(103)) if order == "asc" else list(range(102, -1, -1)))
        only_b = await within(
            store.query(
                "readings",
                ReadingsQuery(SeriesFilter(sensors=("b",)), start=T0 + 5000, end=T0 + 10_000),
            )
        )
        assert [row.value for row in only_b] == [
            i for i in range(103) if i % 3 == 0 and 5000 <= (i // 4) * 1000 < 10_000
        ]
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_sensors_summary_and_the_sequences_to_rebuild_deduplication_from(url):
    store = open_store(url)
    try:
        ids = await within(
            store.submit(
                [
                    r("t", 1.5, T0, unit="C", seq=7),
                    r("t", 2.5, T0 + HOUR_MS, unit="C", seq=8),
                    r("t", 3, T0 + 5, device="farm-2"),
                    r("h", 60, T0 + 6, device="farm-2", unit="%", seq=1),
                ]
            )
        )
        sensors = await within(store.query("sensors", SeriesFilter(devices=("farm-1",))))
        assert sensors == [
            {
                "device": "farm-1",
                "sensor": "t",
                "unit": "C",
                "count": 2,
                "first_ts": T0,
                "last_ts": T0 + HOUR_MS,
                "last": {"id": ids[1], "device": "farm-1", "sensor": "t", "value": 2.5, "unit": "C",
                         "ts": T0 + HOUR_MS, "seq": 8},
            }
        ]  # fmt: skip
        everything = await within(store.query("sensors", SeriesFilter()))
        assert [(s["device"], s["sensor"]) for s in everything] == [
            ("farm-1", "t"), ("farm-2", "h"), ("farm-2", "t"),
        ]  # fmt: skip
        recent = await within(store.query("recent_sequences", 3))
        assert recent == [("farm-1", 8, T0 + HOUR_MS), ("farm-2", 1, T0 + 6)]
    finally:
        await within(store.stop())


class FlakyBackend:
    """Wraps a real backend; its writes fail while ``failing`` is set (a database that is down)."""

    def __init__(self, real: Backend):
        self.real = real
        self.failing = True
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def write(self, conn, readings, marks=None):
        self.attempts += 1
        if self.failing:
            raise OSError("disk full (simulated)")
        return self.real.write(conn, readings, marks)


@pytest_twisted.ensureDeferred
async def test_a_failing_store_retries_says_so_sheds_past_its_bound_and_recovers(url):
    flaky = FlakyBackend(backend_for(url))
    store = open_store(url, flaky, queue_limit=10, backoff=(0.01, 2.0, 0.05))  # type: ignore[arg-type]
    try:
        first = store.submit([r("s", i, T0 + i) for i in range(6)])
        await eventually(lambda: store.state == "failing" and flaky.attempts >= 3)
        assert store.reason == "OSError: disk full (simulated)"
        assert store.stats()["state"] == "failing" and not first.called
        second = store.submit([r("s", 6, T0 + 6)])
        shed = store.submit([r("s", i, T0 + i) for i in range(7, 14)])  # 7 + 7 > 10
        with pytest.raises(NotStored, match="queue is full"):
            await shed
        assert store.stats()["shed"] == 7
        flaky.failing = False
        ids = await within(first)
        assert ids == list(range(ids[0], ids[0] + 6))
        assert await within(second) == [ids[-1] + 1]
        assert store.state == "ok" and store.reason == ""
        rows = await within(store.query("readings", ReadingsQuery()))
        assert [row.value for row in rows] == list(range(7))  # stored once, in order
    finally:
        await within(store.stop())


@pytest_twisted.ensureDeferred
async def test_stopping_a_failing_store_gives_up_after_the_grace_and_says_what_was_lost(url):
    flaky = FlakyBackend(backend_for(url))
    store = open_store(url, flaky, backoff=(0.01, 2.0, 0.05))  # type: ignore[arg-type]
    pending = store.submit([r("s", 1, T0)])
    await eventually(lambda: store.state == "failing")
    await within(store.stop(grace=0.2))
    with pytest.raises(NotStored, match="stopped before"):
        await pending
    assert store.state == "stopped" and store.stats()["shed"] == 1


@pytest_twisted.ensureDeferred
async def test_retention_deletes_old_raw_readings_in_small_steps_and_keeps_rollups(url):
    now = int(reactor.seconds() * 1000)
    store = open_store(url, retention_ms=HOUR_MS)
    try:
        old = [r("s", i, now - 2 * HOUR_MS + i) for i in range(1499)]
        old.append(r("big", 2**60 + 1, now - 2 * HOUR_MS))  # its exact digits go with it
        new = [r("s", 7, now - 1000), r("big", 2**60 + 3, now - 999)]
        await within(store.submit(old + new))
        first = await within(store.prune())
        assert first == 1000  # one batch, then more follow on their own
        await eventually(lambda: store.stats()["pruned"] >= 1500)
        rows = await within(store.query("readings", ReadingsQuery()))
        assert [row.value for row in rows] == [7, 2**60 + 3]
        backend = backend_for(url)
        conn = backend.connect()
        try:
            assert backend._fetchall(conn, "SELECT digits FROM reading_exact") == [
                (str(2**60 + 3),)
            ]
        finally:
            conn.close()
        step = HOUR_MS
        start = now - 3 * HOUR_MS - (now - 3 * HOUR_MS) % step
        query = AggregateQuery(SeriesFilter(), start, start + 5 * step, step, ("count",))
        every = await within(store.query("aggregate", query))
        counted = sum(bucket["count"] for series in every for bucket in series["buckets"])
        assert counted == 1502, "rollups keep what retention deleted"
    finally:
        await within(store.stop())


def test_rollup_fold_keeps_the_first_arrival_first_and_the_last_arrival_last():
    rows = [(1, 1000, 5.0), (1, 1000, 6.0), (1, 500, 1.0), (1, 1500, 2.0), (1, 1500, 3.0)]
    assert fold_rollups(rows, MINUTE_MS) == {(1, 0): [5, 17.0, 1.0, 6.0, 500, 1.0, 1500, 3.0]}


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_postgres_writer_reconnects_after_its_connection_is_killed(tmp_path):
    import psycopg

    with store_url("postgres", tmp_path) as url:
        name = f"tantra-test-{id(tmp_path)}"
        url = f"{url}&application_name={name}"  # so only this store's connections die
        store = open_store(url, backoff=(0.01, 2.0, 0.05))
        try:
            (before,) = await within(store.submit([r("s", 1, T0)]))
            admin = url.split("?")[0]
            with psycopg.connect(admin, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (name,),
                ).fetchone()[0]
            assert killed >= 1
            ids = await within(store.submit([r("s", 2, T0 + 1)]))
            assert ids == [before + 1]
            rows = await within(store.query("readings", ReadingsQuery()))
            assert [row.value for row in rows] == [1, 2]
        finally:
            await within(store.stop())


@pytest.mark.integration
def test_postgres_ids_stay_increasing_when_the_sequence_block_is_not_contiguous(tmp_path):
    """Another session taking ids in between (here: a sequence stepping by 3) is handled."""
    with store_url("postgres", tmp_path) as url:
        backend = backend_for(url)
        conn = backend.connect()
        try:
            backend.migrate(conn)
            first = backend.write(conn, [r("s", i, T0 + i) for i in range(5)])
            assert first == [1, 2, 3, 4, 5]  # the contiguous block: only its ends were read
            conn.execute("ALTER SEQUENCE reading_id INCREMENT BY 3")
            conn.commit()
            ids = backend.write(
                conn, [r("s", 1.5e-7, T0 + 10), r("t", True, T0 + 11, seq=7), r("s", -2, T0 + 12)]
            )
            assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] > 5
            assert ids[1] - ids[0] == 3
            rows = backend.readings(conn, ReadingsQuery())
            assert [(row.id, row.value, row.seq) for row in rows][-3:] == [
                (ids[0], 1.5e-7, None), (ids[1], True, 7), (ids[2], -2, None),
            ]  # fmt: skip
        finally:
            conn.close()


class _SwitchableProxy:
    """A loopback port in front of PostgreSQL that hangs up on everyone until ``up``."""

    def __init__(self, target_port: int):
        from twisted.internet.protocol import Factory
        from twisted.protocols.portforward import ProxyFactory

        self.up = False
        forward = ProxyFactory("127.0.0.1", target_port)
        outer = self

        class Gate(Factory):
            def buildProtocol(self, addr):
                return forward.buildProtocol(addr) if outer.up else None  # None: closed at once

        self.port = reactor.listenTCP(0, Gate(), interface="127.0.0.1")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_an_unreachable_postgres_at_start_up_is_waited_for_not_fatal(tmp_path):
    with store_url("postgres", tmp_path) as url:
        proxy = _SwitchableProxy(5432)
        gated = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port.getHost().port}/")
        store = open_store(gated, backoff=(0.01, 2.0, 0.05))
        try:
            assert store.state == "failing" and store.reason
            assert store.stats()["write_failures"] >= 1
            first = store.submit([r("s", 1, T0)])
            await task.deferLater(reactor, 0.2, lambda: None)
            assert not first.called and store.queued == 1  # queued, waiting for the database
            proxy.up = True
            assert await within(first) == [1]
            await eventually(lambda: store.state == "ok")
            assert store.schema_version >= 1  # migrated by the writer once it could connect
        finally:
            await within(store.stop())
            await proxy.port.stopListening()


def test_a_sqlite_file_that_cannot_be_opened_still_stops_start_up(tmp_path):
    store = Store(backend_for(f"sqlite:{tmp_path / 'missing' / 'h.sqlite3'}"), reactor)
    with pytest.raises(Exception, match="unable to open"):
        store.start()
    assert store.state == "stopped"


@pytest_twisted.ensureDeferred
async def test_replay_marks_commit_with_their_readings_never_go_down_and_are_read_at_start(url):
    """The signed-UDP replay marks (schema 2) are written in the readings' transaction:
    per device the highest seq ``marks_of`` gives; a lower one later leaves it."""
    store = open_store(url)
    assert store.replay_marks == {}
    store.marks_of = lambda readings: {
        x.device: max(y.seq for y in readings if y.device == x.device and y.seq is not None)
        for x in readings
        if x.device != "tcp-only" and x.seq is not None
    }
    big = (7 << 32) | 5  # epoch << 32 | counter
    try:
        await within(store.submit([r("s", 1, T0, seq=3), r("s", 2, T0 + 1, seq=9)]))
        await within(
            store.submit(
                [
                    r("s", 3, T0 + 2, seq=4),  # lower: farm-1 stays at 9
                    r("s", 4, T0 + 3, seq=big, device="farm-2"),
                    r("s", 5, T0 + 4, seq=99, device="tcp-only"),
                ]
            )
        )
    finally:
        await within(store.stop())
    again = open_store(url)
    try:
        assert again.replay_marks == {"farm-1": 9, "farm-2": big}
    finally:
        await within(again.stop())


@pytest_twisted.ensureDeferred
async def test_replay_marks_are_not_written_when_their_readings_are_not(url):
    """A failing write rolls back the marks with the readings: never ahead of them."""
    flaky = FlakyBackend(backend_for(url))
    store = open_store(url, flaky, queue_limit=10, backoff=(0.01, 2.0, 0.05))  # type: ignore[arg-type]
    store.marks_of = lambda readings: {"farm-1": max(x.seq for x in readings)}
    try:
        first = store.submit([r("s", 1, T0, seq=5)])
        await eventually(lambda: flaky.attempts >= 2)
        with _Conn(flaky.real) as conn:
            assert flaky.real.replay_marks(conn) == {}
        flaky.failing = False
        await within(first)
    finally:
        await within(store.stop())
    again = open_store(url)
    try:
        assert again.replay_marks == {"farm-1": 5}
    finally:
        await within(again.stop())


class _Conn:
    """A fresh connection of ``backend`` (a context manager), for a look from outside."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def __enter__(self) -> Any:
        self.conn = self.backend.connect()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
