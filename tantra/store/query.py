"""What one can ask the history for, as plain values: the shared vocabulary of store and API.

Owns: the query objects (:class:`ReadingsQuery`, :class:`AggregateQuery`) the
REST API builds and the store answers, and :class:`StoredReading`, a reading
with its ``id``. Pure: no SQL, no Twisted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

AGGREGATE_FUNCTIONS = ("avg", "min", "max", "count", "first", "last", "sum")


@attrs.frozen
class SeriesFilter:
    """Which series: any of ``devices`` and any of ``sensors`` (empty means all).

    ``visible``, when set, is a further test on ``(device, sensor)`` (a
    reader's scope, ``tantra.security``): series it refuses do not exist for
    the query. It runs on the store's read threads, so it must be pure.
    """

    devices: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    visible: Callable[[str, str], bool] | None = None


@attrs.frozen
class ReadingsQuery:
    """A page of raw readings in ``(ts, id)`` order; ``after`` is the last row already seen."""

    filter: SeriesFilter = SeriesFilter()
    start: int | None = None
    end: int | None = None
    limit: int = 1000
    order: str = "asc"
    after: tuple[int, int] | None = None


@attrs.frozen
class AggregateQuery:
    """Buckets of ``step`` ms over ``[start, end)``; both ends are multiples of ``step``."""

    filter: SeriesFilter
    start: int
    end: int
    step: int
    functions: tuple[str, ...] = ("avg", "min", "max", "count")


@attrs.frozen(slots=True)
class StoredReading:
    """A reading as the history returns it: the wire fields plus its ``id``."""

    id: int
    device: str
    sensor: str
    value: int | float | bool
    unit: str | None
    ts: int
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "device": self.device,
            "sensor": self.sensor,
            "value": self.value,
        }
        if self.unit is not None:
            out["unit"] = self.unit
        out["ts"] = self.ts
        if self.seq is not None:
            out["seq"] = self.seq
        return out
