"""The embedded store: one SQLite file in WAL mode, written by one connection only.

Owns: opening the file (WAL, ``synchronous=NORMAL``, a busy timeout), id
allocation (the single writer counts on from the largest id), bulk inserts
with ``executemany`` and rollup upserts. Read threads open their own
connections (WAL lets them read while the writer writes).

Does not own: threads or retries (``tantra.store.writer``).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

from tantra.store.backend import Backend
from tantra.store.ids import CounterIds

_UPSERT = (
    "INSERT INTO {t} (series, t, n, total, lo, hi, first_ts, first_v, last_ts, last_v)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (series, t) DO UPDATE SET"
    " n = {t}.n + excluded.n, total = {t}.total + excluded.total,"
    " lo = min({t}.lo, excluded.lo), hi = max({t}.hi, excluded.hi),"
    " first_v = CASE WHEN excluded.first_ts < {t}.first_ts"
    " THEN excluded.first_v ELSE {t}.first_v END,"
    " first_ts = min({t}.first_ts, excluded.first_ts),"
    " last_v = CASE WHEN excluded.last_ts >= {t}.last_ts"
    " THEN excluded.last_v ELSE {t}.last_v END,"
    " last_ts = max({t}.last_ts, excluded.last_ts)"
)


#: Readings per ``INSERT … VALUES (…), (…), …`` statement. One statement per
#: chunk instead of ``executemany``'s one step per row: the sqlite3 module
#: binds and steps row by row there, releasing and re-taking the GIL around
#: every step, and each time the reactor thread (same core, same GIL) may take
#: it in between; a chunk is one step, one release. Measured on the writer
#: alone (``benchmarks/experiments``-style microbenchmark in the perf notes):
#: 2.08 → 1.73 µs per reading for the insert.
INSERT_CHUNK = 512


def _chunks(total: int, size: int) -> Iterator[int]:
    """Row counts that add up to ``total``: full chunks of ``size``, then the rest in
    powers of two, so at most a dozen statement texts exist (the sqlite3 module's
    statement cache keeps each prepared once)."""
    full, rest = divmod(total, size)
    yield from [size] * full
    step = 1 << max(0, size.bit_length() - 1)
    while rest:
        while step > rest:
            step >>= 1
        yield step
        rest -= step


@functools.lru_cache(maxsize=32)
def _insert_statement(count: int) -> str:
    return "INSERT INTO reading (id, series, ts, value, kind, seq) VALUES " + ", ".join(
        ["(?, ?, ?, ?, ?, ?)"] * count
    )


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, path: str):
        super().__init__()
        self.path = os.path.abspath(path)
        self._ids: CounterIds | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._chunk_rows: int | None = None

    def describe(self) -> str:
        return f"SQLite {self.path} (WAL)"

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            conn.execute("PRAGMA query_only=ON")
            with self._readers_lock:
                self._readers.append(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()  # never hold a read snapshot between requests

    def close_readers(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def _execute_script(self, conn: Any, sql: str) -> None:
        conn.executescript(f"BEGIN;\n{sql}\nCOMMIT;")

    def _upsert_series(self, conn: Any, key: tuple[str, str, str]) -> int:
        conn.execute("INSERT OR IGNORE INTO series (device, sensor, unit) VALUES (?, ?, ?)", key)
        row = conn.execute(
            "SELECT id FROM series WHERE device = ? AND sensor = ? AND unit = ?", key
        ).fetchone()
        return int(row[0])

    def id_source(self, conn: Any, reserve: Any = None, seconds: Any = None) -> CounterIds:
        """One counter from the largest stored id + 1, shared by the hub and the writer."""
        if self._ids is None:
            self._ids = CounterIds(
                (conn.execute("SELECT max(id) FROM reading").fetchone()[0] or 0) + 1
            )
        return self._ids

    def reserve_ids(self, conn: Any, count: int) -> range:
        return self.id_source(conn).take(count)

    def _insert_readings(self, conn: Any, rows: list[tuple]) -> list[int]:
        missing = sum(1 for row in rows if row[0] is None)
        if missing:  # submitted without an id (not through the hub): number them now
            fresh = iter(self.id_source(conn).take(missing))
            rows = [row if row[0] is not None else (next(fresh), *row[1:]) for row in rows]
        flat = list(chain.from_iterable(rows))
        at = 0
        for count in _chunks(len(rows), self._chunk(conn)):
            conn.execute(_insert_statement(count), flat[at : at + count * 6])
            at += count * 6
        return [row[0] for row in rows]

    def _chunk(self, conn: sqlite3.Connection) -> int:
        """Rows per multi-row INSERT: :data:`INSERT_CHUNK`, or fewer when this SQLite
        allows fewer bound parameters (999 before 3.32)."""
        if self._chunk_rows is None:
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk_rows = max(1, min(INSERT_CHUNK, limit // 6))
        return self._chunk_rows

    def _upsert_rollups(self, conn: Any, table: str, rollups: dict) -> None:
        conn.executemany(_UPSERT.format(t=table), [(s, t, *acc) for (s, t), acc in rollups.items()])
