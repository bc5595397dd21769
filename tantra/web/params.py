"""Query-string parsing for the history API: times, steps, buckets, cursors. Pure.

Owns: turning the text of one parameter into a value or a :class:`BadParameter`
that names it (the API sends ``{"error": "bad_parameter", "detail": …}``), and
the bucket maths (epoch-aligned buckets, the ``every=auto`` step choice).

Does not own: HTTP (``tantra.web.api``) or SQL (``tantra.store``). The caller
passes ``now_ms``; nothing here reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from tantra.model import NAME_PATTERN
from tantra.store.query import (
    AGGREGATE_FUNCTIONS,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    AggregateQuery,
    ReadingsQuery,
    SeriesFilter,
)

#: Readings per page: default and ceiling.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
#: Buckets one aggregate request may ask for.
MAX_BUCKETS = 10_000
#: Values one repeatable name parameter (device, sensor) may have.
MAX_NAMES = 100
#: Default range of an aggregate without ``from``.
DEFAULT_AGGREGATE_RANGE = 24 * HOUR_MS
#: Latest time accepted anywhere (year 9999), so arithmetic stays in range.
MAX_MS = 253_402_300_799_999

UNITS_MS = {
    "ms": 1,
    "s": SECOND_MS,
    "m": MINUTE_MS,
    "h": HOUR_MS,
    "d": DAY_MS,
    "w": 7 * DAY_MS,
}
_DURATION = re.compile(r"([0-9]{1,12})(ms|s|m|h|d|w)")
_MILLIS = re.compile(r"[0-9]{1,15}")

#: Steps ``every=auto`` chooses from; beyond the last, whole weeks.
NICE_STEPS = tuple(
    n * UNITS_MS[u]
    for n, u in (
        (1, "s"), (2, "s"), (5, "s"), (10, "s"), (15, "s"), (30, "s"),
        (1, "m"), (2, "m"), (5, "m"), (10, "m"), (15, "m"), (30, "m"),
        (1, "h"), (2, "h"), (3, "h"), (6, "h"), (12, "h"),
        (1, "d"), (2, "d"), (7, "d"),
    )
)  # fmt: skip


class BadParameter(ValueError):
    """A query parameter the API cannot use; ``str()`` is the detail sent back."""

    def __init__(self, name: str, why: str):
        super().__init__(f"{name}: {why}")
        self.name = name


def parse_duration(name: str, text: str) -> int:
    """``15m`` → 900000; units ms, s, m, h, d, w; must be positive."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise BadParameter(name, f"{text!r} is not a duration such as 30s, 15m, 1h or 7d")
    value = int(match.group(1)) * UNITS_MS[match.group(2)]
    if value > MAX_MS:
        raise BadParameter(name, f"{text!r} is too long")
    return value


def parse_time(name: str, text: str, now_ms: int) -> int:
    """A point in time as ms since the epoch.

    Accepts ms since the epoch (``1764000000000``), ``now``, relative to now
    (``-15m``, ``-2h``, ``-7d``) or ISO 8601 (``2025-11-24T12:00:00Z``; no
    zone means UTC).
    """
    text = text.strip()
    if _MILLIS.fullmatch(text):
        value = int(text)
    elif text == "now":
        value = now_ms
    elif (ago := _DURATION.fullmatch(text[1:]) if text.startswith("-") else None) is not None:
        # -0ms is now; a span past 1970 is refused by the range check below, naming the text.
        value = now_ms - int(ago.group(1)) * UNITS_MS[ago.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise BadParameter(
                name,
                f"{text!r} is not a time: use ms since the epoch, ISO 8601"
                " (2025-11-24T12:00:00Z) or relative to now (-15m, -2h, -7d)",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = round(moment.timestamp() * 1000)
    if not 0 <= value <= MAX_MS:
        raise BadParameter(name, f"{text!r} is outside 1970-01-01 .. 9999-12-31")
    return value


def parse_limit(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParameter("limit", f"{text!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def parse_order(text: str) -> str:
    if text not in ("asc", "desc"):
        raise BadParameter("order", f"{text!r} is not asc or desc")
    return text


def parse_names(name: str, values: list[str]) -> tuple[str, ...]:
    """A repeatable device/sensor parameter; each value a valid name, or comma-separated."""
    items = [item for value in values for item in value.split(",")]
    if len(items) > MAX_NAMES:  # counted as sent, repeats too (what the OpenAPI maxItems says)
        raise BadParameter(name, f"at most {MAX_NAMES} values")
    for item in items:
        if not NAME_PATTERN.fullmatch(item):
            raise BadParameter(name, f"{item!r} is not a name (1-64 of A-Z a-z 0-9 _ -)")
    return tuple(dict.fromkeys(items))


def encode_cursor(order: str, ts: int, id_: int) -> str:
    """An opaque cursor: where the previous page ended, and in which order."""
    raw = f"{order}.{ts}.{id_}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: str) -> tuple[int, int]:
    """``(ts, id)`` of the last row already returned; must match ``order``."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        kind, ts, id_ = raw.split(".")
        if kind not in ("asc", "desc") or not _MILLIS.fullmatch(ts) or not id_.isdigit():
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadParameter("cursor", "not a cursor this API returned") from None
    if kind != order:
        raise BadParameter("cursor", f"this cursor continues order={kind}, not order={order}")
    return int(ts), int(id_)


def align(start: int, end: int, step: int) -> tuple[int, int]:
    """``[start, end)`` widened to whole buckets of ``step`` ms aligned to the epoch."""
    first = start - start % step
    last = end if end % step == 0 else end - end % step + step
    return first, max(last, first + step)


def bucket_count(start: int, end: int, step: int) -> int:
    first, last = align(start, end, step)
    return (last - first) // step


def auto_step(start: int, end: int, points: int) -> int:
    """The smallest nice step that gives at most ``points`` buckets over ``[start, end)``."""
    for step in NICE_STEPS:
        if bucket_count(start, end, step) <= points:
            return step
    week = 7 * DAY_MS
    weeks = max(1, -(-(end - start) // (week * points)))
    while bucket_count(start, end, weeks * week) > points:
        weeks += 1
    return weeks * week


def parse_points(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()) or not 1 <= int(text) <= MAX_BUCKETS:
        raise BadParameter("points", f"{text!r} is not a whole number from 1 to {MAX_BUCKETS}")
    return int(text)


def parse_functions(values: list[str], known: tuple[str, ...]) -> tuple[str, ...]:
    functions: list[str] = []
    for value in values:
        for item in value.split(","):
            if item not in known:
                raise BadParameter("fn", f"{item!r} is not one of {', '.join(known)}")
            if item not in functions:
                functions.append(item)
    if not functions:
        raise BadParameter("fn", f"name at least one of {', '.join(known)}")
    return tuple(functions)


# -- whole requests (the REST API and the WAMP procedures share these) --------


def one(args: dict[str, list[str]], name: str) -> str | None:
    """The single value of ``name`` (None when absent); given twice is an error."""
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(name, "given more than once")
    return values[0]


def series_filter(args: dict[str, list[str]]) -> SeriesFilter:
    return SeriesFilter(
        parse_names("device", args.get("device", [])),
        parse_names("sensor", args.get("sensor", [])),
    )


def readings_query(args: dict[str, list[str]], now_ms: int) -> ReadingsQuery:
    """``device, sensor, from, to, limit, order, cursor`` as one page's query."""
    start = one(args, "from")
    end = one(args, "to")
    order_text = one(args, "order")  # absent means asc; an empty value is an error
    order = "asc" if order_text is None else parse_order(order_text)
    limit_text = one(args, "limit")
    cursor = one(args, "cursor")
    query = ReadingsQuery(
        filter=series_filter(args),
        start=None if start is None else parse_time("from", start, now_ms),
        end=None if end is None else parse_time("to", end, now_ms),
        order=order,
        limit=DEFAULT_LIMIT if limit_text is None else parse_limit(limit_text),
        after=None if cursor is None else decode_cursor(cursor, order),
    )
    if query.start is not None and query.end is not None and query.end < query.start:
        raise BadParameter("to", "is before from")
    return query


def aggregate_query(args: dict[str, list[str]], now_ms: int) -> AggregateQuery:
    """``device, sensor, from, to, every, points, fn`` as an aggregate query (aligned)."""
    start_text, end_text = one(args, "from"), one(args, "to")
    end = now_ms if end_text is None else parse_time("to", end_text, now_ms)
    start = (
        max(0, end - DEFAULT_AGGREGATE_RANGE)
        if start_text is None
        else parse_time("from", start_text, now_ms)
    )
    if end <= start:
        raise BadParameter("to", "must be after from")
    every = one(args, "every")
    every = "auto" if every is None else every  # absent means auto; empty is an error
    points_text = one(args, "points")
    if every == "auto":
        points = 1000 if points_text is None else parse_points(points_text)
        step = auto_step(start, end, points)
    else:
        if points_text is not None:
            raise BadParameter("points", "only goes with every=auto")
        step = parse_duration("every", every)
        count = bucket_count(start, end, step)
        if count > MAX_BUCKETS:
            raise BadParameter(
                "every",
                f"{every} gives {count} buckets over this range; at most"
                f" {MAX_BUCKETS} (use a longer step or every=auto)",
            )
    functions = parse_functions(args.get("fn", ["avg,min,max,count"]), AGGREGATE_FUNCTIONS)
    first, last = align(start, end, step)
    return AggregateQuery(series_filter(args), first, last, step, functions)
