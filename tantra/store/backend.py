"""The SQL every store speaks, run synchronously on a connection the caller owns.

Owns: schema migration from the versioned files in ``schemas/<dialect>/``,
writing one group of readings with its rollups in one transaction, and the
read queries behind the REST API (sensors, a page of readings, aggregates).
:class:`Backend` holds what SQLite and PostgreSQL share; ``tantra.store.sqlite``
and ``tantra.store.postgres`` fill in connections, id allocation and bulk
inserts.

Does not own: threads, queues or the reactor (``tantra.store.writer`` calls
these methods from its writer thread and its read pool). Every method here
blocks; none may ever run in the reactor thread.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any

from tantra.model import Reading
from tantra.store.query import (
    HOUR_MS,
    MINUTE_MS,
    AggregateQuery,
    ReadingsQuery,
    SeriesFilter,
    StoredReading,
)

KIND_FLOAT, KIND_INT, KIND_BOOL = 0, 1, 2

#: Series ids the writer remembers; past this the cache starts over (a flood
#: of distinct names costs lookups, never unbounded memory).
SERIES_CACHE_LIMIT = 200_000


class SchemaTooNew(Exception):
    """The database was migrated by a newer Tantra than this one."""


#: Integers a double holds exactly. ``value`` is a REAL / DOUBLE PRECISION column
#: (ranges, rollups and aggregates need numbers); an integer reading beyond this
#: also keeps its digits in ``reading_exact`` (schema 3), so history returns it as
#: broadcast.
EXACT_INT_LIMIT = 2**53


def value_kind(value: int | float | bool) -> tuple[float, int]:
    if value is True or value is False:
        return (1.0 if value else 0.0), KIND_BOOL
    if isinstance(value, int):
        return float(value), KIND_INT
    return float(value), KIND_FLOAT


def from_kind(value: float, kind: int, exact: str | None = None) -> int | float | bool:
    if kind == KIND_BOOL:
        return value != 0
    if kind == KIND_INT:
        return int(value) if exact is None else int(exact)
    return value


def schema_files(dialect: str) -> list[tuple[int, str]]:
    """``[(version, sql)]`` shipped for ``dialect``, oldest first."""
    folder = resources.files("tantra.store").joinpath("schemas", dialect)
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{3})\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def fold_rollups(
    rows: Iterable[tuple[int, int, float]], width: int
) -> dict[tuple[int, int], list[Any]]:
    """``{(series, bucket): [n, total, lo, hi, first_ts, first_v, last_ts, last_v]}``.

    ``rows`` are ``(series, ts, value)`` in acceptance order: on equal ``ts``
    the first accepted stays first and the last accepted becomes last.
    """
    out: dict[tuple[int, int], list[Any]] = {}
    for series, ts, value in rows:
        key = (series, ts - ts % width)
        acc = out.get(key)
        if acc is None:
            out[key] = [1, value, value, value, ts, value, ts, value]
            continue
        acc[0] += 1
        acc[1] += value
        if value < acc[2]:
            acc[2] = value
        if value > acc[3]:
            acc[3] = value
        if ts < acc[4]:
            acc[4] = ts
            acc[5] = value
        if ts >= acc[6]:
            acc[6] = ts
            acc[7] = value
    return out


def merge_rollups(
    minutes: dict[tuple[int, int], list[Any]], width: int
) -> dict[tuple[int, int], list[Any]]:
    """Coarser rollups from finer ones (hours from minutes), same rules."""
    out: dict[tuple[int, int], list[Any]] = {}
    for (series, t), acc in minutes.items():
        key = (series, t - t % width)
        into = out.get(key)
        if into is None:
            out[key] = list(acc)
            continue
        into[0] += acc[0]
        into[1] += acc[1]
        into[2] = min(into[2], acc[2])
        into[3] = max(into[3], acc[3])
        if acc[4] < into[4]:
            into[4], into[5] = acc[4], acc[5]
        if acc[6] >= into[6]:
            into[6], into[7] = acc[6], acc[7]
    return out


class Backend:
    """SQL shared by every dialect; subclasses provide the connection-level parts.

    One instance serves one store. The writer thread uses :meth:`write` on the
    connection from :meth:`connect`; each read thread opens its own with
    :meth:`connect` (or the subclass's pool) and calls the query methods.
    """

    dialect = ""
    #: placeholder style of the driver (``?`` or ``%s``); SQL below uses ``?``.
    placeholder = "?"
    least = "min"
    greatest = "max"

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], int] = {}

    # -- what subclasses provide -------------------------------------------

    def describe(self) -> str:
        """Where history lives, for the start-up log line."""
        raise NotImplementedError

    def connect(self) -> Any:
        raise NotImplementedError

    def unreachable(self, error: Exception) -> bool:
        """Whether ``error`` from :meth:`connect` at start-up is worth waiting out.

        A database server that is down or restarting (PostgreSQL) is; a file
        that cannot be opened (SQLite) is a mistake to report at once.
        """
        return False

    def _insert_readings(self, conn: Any, rows: list[tuple]) -> list[int]:
        """Insert ``(id, series, ts, value, kind, seq)`` rows; return their ids in order.

        ``id`` is the one the hub gave the reading (``tantra.store.ids``), or
        ``None``: then the dialect numbers it now, above every id handed out.
        """
        raise NotImplementedError

    def id_source(
        self, conn: Any, reserve: Callable[[int], Any], seconds: Callable[[], float]
    ) -> Any:
        """The :class:`~tantra.store.ids.IIdSource` the hub numbers readings from.

        Called once at start-up with the writer's connection (``None`` when
        the database was unreachable); ``reserve(count)`` runs
        :meth:`reserve_ids` on a read thread (a Deferred).
        """
        raise NotImplementedError

    def reserve_ids(self, conn: Any, count: int) -> Any:
        """``count`` new increasing ids no one else will use (a read thread calls it)."""
        raise NotImplementedError

    def _execute_script(self, conn: Any, sql: str) -> None:
        raise NotImplementedError

    def open_readers(self, size: int) -> None:
        """Prepare connections for up to ``size`` read threads."""

    def reader(self) -> AbstractContextManager[Any]:
        """A connection for the calling read thread (a context manager)."""
        raise NotImplementedError

    def close_readers(self) -> None:
        """Close every read connection (after the read threads stopped)."""

    def _upsert_series(self, conn: Any, key: tuple[str, str, str]) -> int:
        raise NotImplementedError

    def _upsert_all_rollups(self, conn: Any, minutes: dict, hours: dict) -> None:
        """Both rollup tables; a dialect may do it in one statement."""
        self._upsert_rollups(conn, "rollup_1m", minutes)
        self._upsert_rollups(conn, "rollup_1h", hours)

    def _upsert_rollups(self, conn: Any, table: str, rollups: dict) -> None:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _fetchall(self, conn: Any, text: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = conn.execute(self.sql(text), tuple(params))
        return list(cursor.fetchall())

    # -- schema -----------------------------------------------------------------

    def migrate(self, conn: Any) -> int:
        """Bring the schema up to date; returns the version now in place.

        Raises :class:`SchemaTooNew` when the database is ahead of this code.
        """
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        conn.commit()
        rows = self._fetchall(conn, "SELECT max(version) FROM schema_version")
        current = rows[0][0] or 0
        files = schema_files(self.dialect)
        known = files[-1][0] if files else 0
        if current > known:
            raise SchemaTooNew(
                f"the history database has schema version {current}, newer than this"
                f" Tantra knows (up to {known}): run a newer Tantra or point --store elsewhere"
            )
        for version, text in files:
            if version > current:
                self._execute_script(
                    conn, f"{text}\nINSERT INTO schema_version (version) VALUES ({version});"
                )
                current = version
        return current

    # -- writing -------------------------------------------------------------

    def series_ids(self, conn: Any, keys: Sequence[tuple[str, str, str]]) -> list[int]:
        """The series id of each ``(device, sensor, unit)``, making the new ones.

        Unknown keys are resolved together (:meth:`_resolve_series`: one round
        trip on PostgreSQL), then remembered.
        """
        cache = self._series
        try:  # the common case: every series known (one pass, no set of keys built)
            return [cache[key] for key in keys]
        except KeyError:
            pass
        missing = [key for key in dict.fromkeys(keys) if key not in cache]
        if missing:
            if len(cache) + len(missing) > SERIES_CACHE_LIMIT:
                cache.clear()
                missing = list(dict.fromkeys(keys))
            cache.update(self._resolve_series(conn, missing))
        return [cache[key] for key in keys]

    def _resolve_series(
        self, conn: Any, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], int]:
        """Ids of distinct ``keys`` none of which is cached; a dialect may batch this."""
        return {key: self._upsert_series(conn, key) for key in keys}

    def forget_cache(self) -> None:
        """After a rolled-back transaction the cache may name series that were never made."""
        self._series.clear()

    def write(
        self, conn: Any, readings: Sequence[Reading], marks: Mapping[str, int] | None = None
    ) -> list[int]:
        """Store ``readings``, their rollups and the replay ``marks`` (device -> highest
        signed seq among them) in one transaction; their ids, in order."""
        try:
            rows, points, exact = self._rows(conn, readings)
            ids = self._insert_readings(conn, rows)
            if exact:  # rare: nothing is written for any other reading
                conn.cursor().executemany(
                    self.sql("INSERT INTO reading_exact (id, digits) VALUES (?, ?)"),
                    [(ids[index], digits) for index, digits in exact],
                )
            minutes = fold_rollups(points, MINUTE_MS)
            self._upsert_all_rollups(conn, minutes, merge_rollups(minutes, HOUR_MS))
            if marks:
                self._raise_marks(conn, marks)
            conn.commit()
        except BaseException:
            self.forget_cache()
            # the connection itself may be gone; the caller reconnects
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        return ids

    def _rows(
        self, conn: Any, readings: Sequence[Reading]
    ) -> tuple[list[tuple], list[tuple[int, int, float]], list[tuple[int, str]]]:
        """``(id, series, ts, value, kind, seq)`` rows, ``(series, ts, value)`` points,
        and ``(row index, digits)`` of the integers a double would round (``reading_exact``).

        The writer thread's per-reading Python work, so one pass with the
        common value types tested inline (:func:`value_kind` is the rule):
        this thread shares the hub's core and GIL with the reactor, and every
        microsecond here is one the reactor does not get (docs/performance.md).
        """
        keys = [(r.device, r.sensor, r.unit or "") for r in readings]
        rows: list[tuple] = []
        points: list[tuple[int, int, float]] = []
        add_row = rows.append
        add_point = points.append
        exact: list[tuple[int, str]] = []
        for reading, series in zip(readings, self.series_ids(conn, keys), strict=True):
            value = reading.value
            kind_of = type(value)
            if kind_of is float:
                kind = KIND_FLOAT
            elif kind_of is int:
                if not -EXACT_INT_LIMIT <= value <= EXACT_INT_LIMIT:
                    exact.append((len(rows), str(value)))
                value, kind = float(value), KIND_INT
            else:
                value, kind = value_kind(value)
            ts = reading.ts
            add_row((reading.id, series, ts, value, kind, reading.seq))
            add_point((series, ts, value))
        return rows, points, exact

    def _raise_marks(self, conn: Any, marks: Mapping[str, int]) -> None:
        """Each device's replay mark becomes ``max(stored, given)`` (never lower)."""
        conn.cursor().executemany(
            self.sql(
                "INSERT INTO replay_mark (device, mark) VALUES (?, ?)"
                " ON CONFLICT (device) DO UPDATE SET mark = excluded.mark"
                " WHERE excluded.mark > replay_mark.mark"
            ),
            sorted(marks.items()),  # one lock order for every writer
        )

    def prune(self, conn: Any, raw_before: int, minutes_before: int, batch: int) -> int:
        """Delete up to ``batch`` of the oldest raw readings older than ``raw_before``.

        Looks only at the ``batch`` lowest ids (acceptance order is nearly
        time order), so one call is cheap however large the table is; a
        reading with an old device ``ts`` accepted late goes when its
        neighbours do. Minute rollups older than ``minutes_before`` go too;
        hour rollups are kept.
        """
        try:
            cursor = conn.execute(
                self.sql(
                    "DELETE FROM reading WHERE id IN (SELECT id FROM"
                    " (SELECT id, ts FROM reading ORDER BY id LIMIT ?) oldest WHERE ts < ?)"
                ),
                (batch, raw_before),
            )
            deleted = cursor.rowcount
            if deleted:  # the digits of readings gone (few: an anti-join on the key)
                conn.execute(
                    "DELETE FROM reading_exact WHERE NOT EXISTS"
                    " (SELECT 1 FROM reading r WHERE r.id = reading_exact.id)"
                )
            cursor = conn.execute(
                self.sql(
                    "DELETE FROM rollup_1m WHERE (series, t) IN (SELECT series, t FROM rollup_1m"
                    " WHERE t < ? LIMIT ?)"
                ),
                (minutes_before, batch),
            )
            deleted += cursor.rowcount
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return deleted

    # -- reading ---------------------------------------------------------------

    def _series_clause(self, filter_: SeriesFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if filter_.devices:
            clauses.append(f"device IN ({', '.join('?' for _ in filter_.devices)})")
            params.extend(filter_.devices)
        if filter_.sensors:
            clauses.append(f"sensor IN ({', '.join('?' for _ in filter_.sensors)})")
            params.extend(filter_.sensors)
        return (" AND ".join(clauses) or "1 = 1"), params

    def series(self, conn: Any, filter_: SeriesFilter) -> list[tuple[int, str, str, str]]:
        where, params = self._series_clause(filter_)
        rows = self._fetchall(
            conn,
            f"SELECT id, device, sensor, unit FROM series WHERE {where}"
            " ORDER BY device, sensor, unit",
            params,
        )
        visible = filter_.visible
        if visible is not None:  # a reader's scope: decided per series, before any reading
            rows = [row for row in rows if visible(row[1], row[2])]
        return rows

    def sensors(self, conn: Any, filter_: SeriesFilter) -> list[dict[str, Any]]:
        """One entry per series: counts and ends from the hour rollups, the last raw reading."""
        out = []
        for series, device, sensor, unit in self.series(conn, filter_):
            stats = self._fetchall(
                conn,
                "SELECT sum(n), min(first_ts), max(last_ts) FROM rollup_1h WHERE series = ?",
                (series,),
            )
            count, first_ts, last_ts = stats[0] if stats else (None, None, None)
            last = self._fetchall(
                conn,
                "SELECT id, ts, value, kind, seq,"
                " (SELECT digits FROM reading_exact e WHERE e.id = reading.id)"
                " FROM reading WHERE series = ?"
                " ORDER BY ts DESC, id DESC LIMIT 1",
                (series,),
            )
            entry: dict[str, Any] = {
                "device": device,
                "sensor": sensor,
                "unit": unit or None,
                "count": int(count or 0),
                "first_ts": first_ts,
                "last_ts": last_ts,
                "last": None,
            }
            if last:
                id_, ts, value, kind, seq, exact = last[0]
                entry["last"] = StoredReading(
                    id_, device, sensor, from_kind(value, kind, exact), unit or None, ts, seq
                ).to_dict()
            out.append(entry)
        return out

    def readings(self, conn: Any, query: ReadingsQuery) -> list[StoredReading]:
        """One page (``query.limit`` rows) in ``(ts, id)`` order after ``query.after``."""
        # Series ids first, as literals: with one series the planner walks the
        # (series, ts) index in order and stops at the page's end.
        series = [row[0] for row in self.series(conn, query.filter)]
        if not series:
            return []
        params: list[Any] = list(series)
        clauses = [f"r.series IN ({', '.join('?' for _ in series)})"]
        if query.start is not None:
            clauses.append("r.ts >= ?")
            params.append(query.start)
        if query.end is not None:
            clauses.append("r.ts < ?")
            params.append(query.end)
        descending = query.order == "desc"
        if query.after is not None:
            ts, id_ = query.after
            op = "<" if descending else ">"
            clauses.append(f"(r.ts {op} ? OR (r.ts = ? AND r.id {op} ?))")
            params.extend((ts, ts, id_))
        direction = "DESC" if descending else "ASC"
        params.append(query.limit)
        rows = self._fetchall(
            conn,
            "SELECT r.id, s.device, s.sensor, r.value, s.unit, r.ts, r.seq, r.kind, e.digits"
            " FROM reading r JOIN series s ON s.id = r.series"
            " LEFT JOIN reading_exact e ON e.id = r.id"
            f" WHERE {' AND '.join(clauses)}"
            f" ORDER BY r.ts {direction}, r.id {direction} LIMIT ?",
            params,
        )
        return [
            StoredReading(id_, device, sensor, from_kind(value, kind, exact), unit or None, ts, seq)
            for id_, device, sensor, value, unit, ts, seq, kind, exact in rows
        ]

    def readings_after_id(
        self,
        conn: Any,
        after_id: int,
        filter_: SeriesFilter,
        limit: int,
        before_id: int | None = None,
    ) -> list[StoredReading]:
        """Readings with ``after_id < id < before_id`` in id order (a dashboard's resume).

        For the hub's own use: ``filter_.visible`` (a reader's scope) is not applied here.
        """
        assert filter_.visible is None, "scoped queries go through series()"
        where, params = self._series_clause(filter_)
        below = "" if before_id is None else " AND r.id < ?"
        rows = self._fetchall(
            conn,
            "SELECT r.id, s.device, s.sensor, r.value, s.unit, r.ts, r.seq, r.kind, e.digits"
            " FROM reading r JOIN series s ON s.id = r.series"
            " LEFT JOIN reading_exact e ON e.id = r.id"
            f" WHERE r.id > ?{below} AND r.series IN (SELECT id FROM series WHERE {where})"
            " ORDER BY r.id LIMIT ?",
            [after_id, *([] if before_id is None else [before_id]), *params, limit],
        )
        return [
            StoredReading(id_, device, sensor, from_kind(value, kind, exact), unit or None, ts, seq)
            for id_, device, sensor, value, unit, ts, seq, kind, exact in rows
        ]

    def recent_sequences(self, conn: Any, limit: int) -> list[tuple[str, int, int]]:
        """``(device, seq, ts)`` of the newest ``limit`` stored readings that had a seq.

        What the de-duplication window is rebuilt from on start-up, oldest first.
        """
        rows = self._fetchall(
            conn,
            "SELECT s.device, r.seq, r.ts FROM"
            " (SELECT id, series, seq, ts FROM reading ORDER BY id DESC LIMIT ?) r"
            " JOIN series s ON s.id = r.series WHERE r.seq IS NOT NULL ORDER BY r.id",
            (limit,),
        )
        return [(device, int(seq), int(ts)) for device, seq, ts in rows]

    def replay_marks(self, conn: Any) -> dict[str, int]:
        """Every device's replay mark: the highest signed seq stored (read at start-up)."""
        rows = self._fetchall(conn, "SELECT device, mark FROM replay_mark")
        return {device: int(mark) for device, mark in rows}

    def aggregate(self, conn: Any, query: AggregateQuery) -> list[dict[str, Any]]:
        """Buckets per series; from the coarsest rollup whose width divides the step."""
        step = query.step
        rollup = (
            "rollup_1h" if step % HOUR_MS == 0 else "rollup_1m" if step % MINUTE_MS == 0 else None
        )
        if rollup is not None:  # both rollup tables have the same columns
            table, n, total, lo, hi = rollup, "n", "total", "lo", "hi"
            first_ts, first_v, last_ts, last_v, tcol = (
                "first_ts",
                "first_v",
                "last_ts",
                "last_v",
                "t",
            )
            tie = "t"
        else:
            table, n, total, lo, hi = "reading", "1", "value", "value", "value"
            first_ts, first_v, last_ts, last_v, tcol = "ts", "value", "ts", "value", "ts"
            tie = "id"
        out = []
        want_first = "first" in query.functions
        want_last = "last" in query.functions
        for series, device, sensor, unit in self.series(conn, query.filter):
            bucket = f"({tcol} / ?) * ?"
            inner = [
                f"{bucket} AS b",
                f"{n} AS n",
                f"{total} AS total",
                f"{lo} AS lo",
                f"{hi} AS hi",
            ]
            params: list[Any] = [step, step]
            if want_first:
                inner.append(f"{first_v} AS fv")
                inner.append(
                    f"row_number() OVER (PARTITION BY {bucket} ORDER BY {first_ts}, {tie}) AS rf"
                )
                params += [step, step]
            if want_last:
                inner.append(f"{last_v} AS lv")
                inner.append(
                    f"row_number() OVER (PARTITION BY {bucket}"
                    f" ORDER BY {last_ts} DESC, {tie} DESC) AS rl"
                )
                params += [step, step]
            params += [series, query.start, query.end]
            outer = ["b", "sum(n)", "sum(total)", "min(lo)", "max(hi)"]
            outer.append("max(CASE WHEN rf = 1 THEN fv END)" if want_first else "NULL")
            outer.append("max(CASE WHEN rl = 1 THEN lv END)" if want_last else "NULL")
            rows = self._fetchall(
                conn,
                f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM {table}"
                f" WHERE series = ? AND {tcol} >= ? AND {tcol} < ?) x GROUP BY b ORDER BY b",
                params,
            )
            if not rows:
                continue
            buckets = []
            for b, count, summed, low, high, first, last in rows:
                count, summed = int(count), float(summed)  # PostgreSQL sums to numeric
                entry: dict[str, Any] = {"t": int(b)}
                for fn in query.functions:
                    if fn == "avg":
                        entry["avg"] = summed / count
                    elif fn == "min":
                        entry["min"] = low
                    elif fn == "max":
                        entry["max"] = high
                    elif fn == "count":
                        entry["count"] = count
                    elif fn == "first":
                        entry["first"] = first
                    elif fn == "last":
                        entry["last"] = last
                    elif fn == "sum":
                        entry["sum"] = summed
                buckets.append(entry)
            out.append(
                {"device": device, "sensor": sensor, "unit": unit or None, "buckets": buckets}
            )
        return out
