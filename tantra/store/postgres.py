"""History in PostgreSQL (psycopg 3): COPY for readings, one statement per rollup table.

Owns: connections (the writer's own, plus a ``psycopg_pool`` for reads), id
allocation in blocks from the ``reading_id`` sequence, ``COPY`` of readings
and ``INSERT … SELECT unnest(…) ON CONFLICT DO UPDATE`` of rollups.

Does not own: threads or retries (``tantra.store.writer``). Not done (yet):
range partitioning of ``reading`` by time; retention deletes in batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tantra.store.backend import Backend

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

    def _insert_readings(self, conn: Any, rows: list[tuple]) -> list[int]:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT nextval('reading_id') FROM generate_series(1, %s) ORDER BY 1",
                (len(rows),),
            ).fetchall()
        ]
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY reading (id, series, ts, value, kind, seq) FROM STDIN") as copy,
        ):
            for id_, row in zip(ids, rows, strict=True):
                copy.write_row((id_, *row))
        return ids

    def _upsert_rollups(self, conn: Any, table: str, rollups: dict) -> None:
        if not rollups:
            return
        columns: list[list[Any]] = [[] for _ in range(10)]
        for (series, t), acc in rollups.items():
            columns[0].append(series)
            columns[1].append(t)
            for index, item in enumerate(acc, start=2):
                columns[index].append(item)
        conn.execute(_UPSERT.format(t=table), columns)
