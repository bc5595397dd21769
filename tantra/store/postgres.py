"""History in PostgreSQL (psycopg 3): a group is four round trips, whatever its size.

Owns: connections (the writer's own, plus a ``psycopg_pool`` for reads), and
the writer's statements: new series resolved in one statement, ids taken in
one block from the ``reading_id`` sequence, readings sent as one ``COPY``
text, and both rollup tables upserted by one ``INSERT … SELECT unnest(…) ON
CONFLICT DO UPDATE`` statement from array literals. Measured with ``python
-m benchmarks.history --ingest-only``: the writer was spending most of its
time in psycopg's per-row and per-element dumping, not in the server.

Does not own: threads or retries (``tantra.store.writer``). Not done (yet):
range partitioning of ``reading`` by time; retention deletes in batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tantra.store.backend import Backend
from tantra.store.ids import ID_BLOCK, BlockIds, as_ranges

_UPSERT = (
    "INSERT INTO {t} (series, t, n, total, lo, hi, first_ts, first_v, last_ts, last_v)"
    " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::bigint[], %s::float8[], %s::bigint[], %s::float8[])"
    " ON CONFLICT (series, t) DO UPDATE SET"
    " n = {t}.n + excluded.n, total = {t}.total + excluded.total,"
    " lo = least({t}.lo, excluded.lo), hi = greatest({t}.hi, excluded.hi),"
    " first_v = CASE WHEN excluded.first_ts < {t}.first_ts"
    " THEN excluded.first_v ELSE {t}.first_v END,"
    " first_ts = least({t}.first_ts, excluded.first_ts),"
    " last_v = CASE WHEN excluded.last_ts >= {t}.last_ts"
    " THEN excluded.last_v ELSE {t}.last_v END,"
    " last_ts = greatest({t}.last_ts, excluded.last_ts)"
)


_UPSERT_BOTH = (
    "WITH minutes AS (" + _UPSERT.format(t="rollup_1m") + ")"
    + " " + _UPSERT.format(t="rollup_1h")
)  # fmt: skip


_RESOLVE_SERIES = (
    "WITH wanted (device, sensor, unit) AS"
    " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])),"
    " made AS (INSERT INTO series (device, sensor, unit) SELECT * FROM wanted"
    " ON CONFLICT DO NOTHING RETURNING id, device, sensor, unit)"
    " SELECT id, device, sensor, unit FROM made"
    " UNION ALL SELECT s.id, s.device, s.sensor, s.unit FROM series s"
    " JOIN wanted w USING (device, sensor, unit)"
)


def redact(url: str) -> str:
    """The URL without its password, for log lines."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresBackend(Backend):
    dialect = "postgres"
    placeholder = "%s"

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self._pool: Any = None

    def describe(self) -> str:
        return f"PostgreSQL {redact(self.url)}"

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, connect_timeout=5)

    def unreachable(self, error: Exception) -> bool:
        import psycopg

        return isinstance(error, psycopg.OperationalError)

    def open_readers(self, size: int) -> None:
        from psycopg_pool import ConnectionPool

        self._pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=max(1, size),
            open=True,
            kwargs={"autocommit": True, "connect_timeout": 5},
            name="tantra-history-read",
            check=ConnectionPool.check_connection,  # a restarted server: no failed request
            timeout=10.0,
        )

    @contextmanager
    def reader(self) -> Iterator[Any]:
        with self._pool.connection() as conn:
            yield conn

    def close_readers(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _execute_script(self, conn: Any, sql: str) -> None:
        conn.execute(sql)
        conn.commit()

    def _upsert_series(self, conn: Any, key: tuple[str, str, str]) -> int:
        conn.execute(
            "INSERT INTO series (device, sensor, unit) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            key,
        )
        row = conn.execute(
            "SELECT id FROM series WHERE device = %s AND sensor = %s AND unit = %s", key
        ).fetchone()
        return int(row[0])

    def _resolve_series(
        self, conn: Any, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], int]:
        """Every key in one statement: the new ones inserted, the others looked up.

        A key another hub inserted after this statement's snapshot is in
        neither half; it is looked up on its own.
        """
        devices, sensors, units = (list(column) for column in zip(*keys, strict=True))
        found = {
            (device, sensor, unit): int(id_)
            for id_, device, sensor, unit in conn.execute(
                _RESOLVE_SERIES, (devices, sensors, units)
            )
        }
        for key in keys:
            if key not in found:
                found[key] = self._upsert_series(conn, key)
        return found

    def id_source(self, conn: Any, reserve: Any, seconds: Any) -> BlockIds:
        """Blocks reserved ahead of need; the first one now, when the server is there."""
        if conn is None:
            return BlockIds(reserve, seconds=seconds)
        first = self.reserve_ids(conn, ID_BLOCK)
        conn.commit()
        return BlockIds(reserve, seconds=seconds, first=first, last=first[0] - 1)

    def reserve_ids(self, conn: Any, count: int) -> Sequence[int]:
        return as_ranges(self._take_ids(conn, count))

    def _insert_readings(self, conn: Any, rows: list[tuple]) -> list[int]:
        missing = sum(1 for row in rows if row[0] is None)
        if missing:  # no reserved id was ready at the hub's flush: number them now
            fresh = iter(self._take_ids(conn, missing))
            rows = [row if row[0] is not None else (next(fresh), *row[1:]) for row in rows]
        ids = [row[0] for row in rows]
        # One COPY in text format built in one piece: per-row write_row() was the
        # writer's largest cost. Values are finite floats (the model refuses NaN
        # and infinities), and repr() round-trips them exactly.
        text = "".join(
            f"{id_}\t{series}\t{ts}\t{value!r}\t{kind}\t{NULL if seq is None else seq}\n"
            for id_, series, ts, value, kind, seq in rows
        )
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY reading (id, series, ts, value, kind, seq) FROM STDIN") as copy,
        ):
            copy.write(text)
        return ids

    def _take_ids(self, conn: Any, count: int) -> list[int]:
        """``count`` ids from ``reading_id`` in one round trip, increasing.

        The writer is the sequence's only user in the common case, so the
        block is contiguous and only its ends come back; when another session
        took ids in between, the ids themselves are fetched.
        """
        low, high = conn.execute(
            "SELECT min(id), max(id) FROM"
            " (SELECT nextval('reading_id') AS id FROM generate_series(1, %s)) block",
            (count,),
        ).fetchone()
        if high - low + 1 == count:
            return list(range(low, high + 1))
        row = conn.execute(
            "SELECT array_agg(id ORDER BY id) FROM"
            " (SELECT nextval('reading_id') AS id FROM generate_series(1, %s)) block",
            (count,),
        ).fetchone()
        return list(row[0])

    def _upsert_all_rollups(self, conn: Any, minutes: dict, hours: dict) -> None:
        """Both rollup tables in one statement (one round trip), from text arrays.

        Arrays are sent as their text form (``{1,2,3}``) cast on the server:
        psycopg's per-element list dumping cost more than the statement.
        """
        if not minutes:
            return
        conn.execute(_UPSERT_BOTH, [*_text_columns(minutes), *_text_columns(hours)])


NULL = "\\N"


def _text_columns(rollups: dict) -> list[str]:
    """The ten columns of ``rollups`` as PostgreSQL array literals (``repr`` round-trips)."""
    columns = [*zip(*rollups, strict=True), *zip(*rollups.values(), strict=True)]
    return ["{" + ",".join(map(repr, column)) + "}" for column in columns]
