"""The writer's bulk path: rows built in one pass, SQLite's multi-row INSERT chunks.

Run on the backends directly (no reactor, no thread): what one group writes
must come back row for row, exactly, whatever the group's size relative to
the insert chunk, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import random
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tantra.model import Reading
from tantra.store import backend_for
from tantra.store.backend import value_kind
from tantra.store.sqlite import INSERT_CHUNK, _chunks
from tests.support.stores import BACKENDS, store_url

T0 = 1_764_000_000_000


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with store_url(request.param, tmp_path) as made:
        yield made


def readings(count: int, first_id: int, rng: random.Random) -> list[Reading]:
    """Mixed value kinds (floats that do not round-trip through short decimals,
    integers, booleans), units or none, seq or none, a few series."""
    out = []
    for i in range(count):
        pick = rng.randrange(4)
        value: int | float | bool = (
            rng.uniform(-1e6, 1e6) * rng.choice((1.0, 1e-300, 1e300))
            if pick == 0
            else rng.randrange(-(2**52), 2**52)
            if pick == 1
            else rng.random() < 0.5
            if pick == 2
            else 0.1 * i
        )
        reading = Reading(
            f"dev-{i % 3}",
            f"s{i % 5}",
            value,
            T0 + i // 7,
            "V" if i % 2 else None,
            i if i % 4 else None,
        )
        object.__setattr__(reading, "id", first_id + i)
        out.append(reading)
    return out


@pytest.mark.parametrize("sizes", [(1, 5, 0), (INSERT_CHUNK - 1, INSERT_CHUNK, INSERT_CHUNK + 1),
                                   (2 * INSERT_CHUNK + 277,)])  # fmt: skip
def test_a_group_comes_back_row_for_row_whatever_its_size(url, sizes):
    backend = backend_for(url)
    conn = backend.connect()
    try:
        backend.migrate(conn)
        rng = random.Random(sum(sizes))
        written: list[Reading] = []
        next_id = 1
        for size in sizes:
            group = readings(size, next_id, rng)
            assert backend.write(conn, group) == [r.id for r in group]
            written += group
            next_id += size
        rows = backend._fetchall(
            conn,
            "SELECT r.id, s.device, s.sensor, s.unit, r.ts, r.value, r.kind, r.seq"
            " FROM reading r JOIN series s ON s.id = r.series ORDER BY r.id",
        )
        expected = [
            (r.id, r.device, r.sensor, r.unit or "", r.ts, *value_kind(r.value), r.seq)
            for r in written
        ]
        assert [tuple(row) for row in rows] == expected
        counts = backend._fetchall(conn, "SELECT sum(n) FROM rollup_1m")
        assert int(counts[0][0] or 0) == len(written)
    finally:
        conn.close()


def test_sqlite_inserts_a_chunk_per_statement_not_a_row(tmp_path):
    backend = backend_for(f"sqlite:{tmp_path / 'bulk.sqlite3'}")
    conn = backend.connect()
    try:
        backend.migrate(conn)
        inserts: list[str] = []
        conn.set_trace_callback(
            lambda sql: inserts.append(sql) if sql.startswith("INSERT INTO reading ") else None
        )
        count = 2 * INSERT_CHUNK + 300
        backend.write(conn, readings(count, 1, random.Random(1)))
        conn.set_trace_callback(None)
        assert len(inserts) == len(list(_chunks(count, INSERT_CHUNK))) < 10
        stored = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
        assert stored == count
    finally:
        conn.close()


@given(st.integers(0, 20_000), st.integers(1, 2000))
def test_chunks_add_up_stay_within_the_size_and_use_few_statement_texts(total, size):
    chunks = list(_chunks(total, size))
    assert sum(chunks) == total
    assert all(0 < chunk <= size for chunk in chunks)
    # full chunks, then at most one chunk of each power of two below the size
    assert len(set(chunks)) <= size.bit_length() + 1


def test_a_sqlite_limited_to_999_parameters_gets_smaller_chunks(tmp_path):
    backend = backend_for(f"sqlite:{tmp_path / 'small.sqlite3'}")
    conn = backend.connect()
    try:
        backend.migrate(conn)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        group = readings(700, 1, random.Random(7))
        assert backend.write(conn, group) == list(range(1, 701))
        assert conn.execute("SELECT count(*) FROM reading").fetchone()[0] == 700
    finally:
        conn.close()
