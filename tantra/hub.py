"""The fan-out core: one ingest path for every transport, one delivery path to every sink.

Owns: the pipeline after parsing (de-duplicate, collect, fan out), the
last-value cache, the subscriber registry with its filters. It counts into
the ``hub`` section of the :class:`~tantra.counters.Counters` it is given.
Readings accepted during one reactor turn are delivered together on the next
turn (``clock.callLater(0, ...)``), so a sink writes once per turn however many
readings arrived, and every sink sees them in the same order.

Does not own: bytes, framing or any transport (protocols call :meth:`Hub.ingest`
and implement :class:`ISink`), nor the clock (injected; never ``time.time()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from tantra.counters import Counters, HubStats
from tantra.dedupe import SeqWindow
from tantra.model import ParsedPayload, Reading, Rejection, parse_payload

_log = Logger()
T = TypeVar("T")

#: Seconds between two log lines about rejected input (each one counts the rest).
REJECTION_LOG_INTERVAL = 1.0


class ISink(Interface):
    """Something that receives readings from the hub: a dashboard, a WAMP bridge, a store."""

    def deliver(batch: Batch) -> None:
        """Take the readings of one hub turn that match this sink's filter.

        Called once per turn, in the reactor thread; must not block. A sink
        that cannot keep up bounds itself (see ``tantra.outbox``).
        """


@attrs.frozen(slots=True)
class Filter:
    """Which readings a subscriber wants: any of ``devices`` and any of ``sensors``.

    ``None`` means "all" for that field; subscribers with equal filters share
    one batch (and so one encoding) per turn.
    """

    devices: frozenset[str] | None = None
    sensors: frozenset[str] | None = None

    @classmethod
    def of(cls, devices: Iterable[str] = (), sensors: Iterable[str] = ()) -> Filter:
        """A filter from possibly empty lists (empty means "all")."""
        made = cls(frozenset(devices) or None, frozenset(sensors) or None)
        return EVERYTHING if made == EVERYTHING else made

    def matches(self, reading: Reading) -> bool:
        return (self.devices is None or reading.device in self.devices) and (
            self.sensors is None or reading.sensor in self.sensors
        )


EVERYTHING = Filter()


class Batch:
    """The readings of one turn for one filter, where they came from, and a per-encoder memo.

    Sinks of the same kind (say, every WebSocket dashboard) encode a batch with
    the same function; :meth:`encoded` runs it once and hands every sink the
    same bytes.

    ``origins`` is ``None`` when no reading of the turn was accepted with an
    origin (the common case: devices), else a list parallel to ``readings``
    holding each reading's origin or ``None``. A component that feeds the hub
    and is also a sink (the WAMP bridge, an MQTT bus) finds its own readings
    with :meth:`with_origins` and need not keep a map of what it sent.
    """

    __slots__ = ("_encodings", "origins", "readings")

    def __init__(self, readings: Sequence[Reading], origins: Sequence[object] | None = None):
        self.readings = readings
        self.origins = origins
        self._encodings: dict[Callable[[Sequence[Reading]], Any], Any] = {}

    def __len__(self) -> int:
        return len(self.readings)

    def with_origins(self) -> Iterable[tuple[Reading, object]]:
        """Each reading with its origin (``None`` when it was accepted without one)."""
        if self.origins is None:
            return ((reading, None) for reading in self.readings)
        return zip(self.readings, self.origins, strict=True)

    def encoded(self, encoder: Callable[[Sequence[Reading]], T]) -> T:
        try:
            return self._encodings[encoder]
        except KeyError:
            result = self._encodings[encoder] = encoder(self.readings)
            return result


class IngestOutcome(NamedTuple):
    """What became of one payload; transports turn it into replies (``tantra.replies``)."""

    accepted: Sequence[Reading]
    duplicates: Sequence[Reading]
    errors: Sequence[Rejection]
    acks: Sequence[int]
    is_batch: bool


@attrs.define(eq=False, slots=True)
class Subscription:
    sink: ISink
    filter: Filter


class Hub:
    """Accepts readings from any transport and fans them out to subscribed sinks."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        dedupe: SeqWindow | None = None,
        max_sensors: int = 100_000,
        counters: Counters | None = None,
    ):
        self._clock = clock
        self._dedupe = dedupe if dedupe is not None else SeqWindow()
        self._max_sensors = max_sensors
        #: Every counter of the running hub; transports default to this object.
        self.counters = counters if counters is not None else Counters()
        #: The hub's own section of :attr:`counters`.
        self.stats: HubStats = self.counters.hub
        self._latest: dict[tuple[str, str], Reading] = {}
        # filter -> {sink: subscription}; equal filters share one batch per turn.
        self._groups: dict[Filter, dict[ISink, Subscription]] = {}
        self._pending: list[Reading] = []
        # Parallel to _pending, made only in a turn where some reading has an origin.
        self._pending_origins: list[object] | None = None
        self._flush_call: IDelayedCall | None = None
        self._last_rejection_log = float("-inf")
        self._rejections_unlogged = 0

    # -- ingest ------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def ingest(self, payload: bytes | str, *, default_device: str) -> IngestOutcome:
        """Parse, validate, de-duplicate and queue one payload from any transport."""
        now = self._clock.seconds()
        parsed = parse_payload(payload, default_device=default_device, now_ms=int(now * 1000))
        return self.accept(parsed, source=default_device, now=now)

    def accept(
        self,
        parsed: ParsedPayload,
        *,
        source: str = "?",
        origin: object = None,
        now: float | None = None,
    ) -> IngestOutcome:
        """Queue already validated readings (WAMP builds them from a topic + kwargs).

        ``source`` names the sender in log lines about its rejected input;
        ``origin`` travels with the accepted readings to every sink
        (:attr:`Batch.origins`), so a component that is both a source and a
        sink recognises its own readings; ``now`` saves a clock read when the
        caller has just made one.
        """
        if parsed.errors:
            for error in parsed.errors:
                self.stats.rejected[error.code] += 1
            self._log_rejection(source, parsed.errors[0], len(parsed.errors))
        accepted: list[Reading] = []
        duplicates: list[Reading] = []
        acks: list[int] = []
        if now is None:
            now = self._clock.seconds()
        for reading in parsed.readings:
            if reading.seq is not None:
                acks.append(reading.seq)
                if self._dedupe.is_duplicate(reading.device, reading.seq, now):
                    duplicates.append(reading)
                    continue
            accepted.append(reading)
        if duplicates:
            self.stats.duplicates += len(duplicates)
        if accepted:
            self.stats.accepted += len(accepted)
            if origin is not None or self._pending_origins is not None:
                self._tag_origins(origin, len(accepted))
            self._pending.extend(accepted)
            if self._flush_call is None:
                self._flush_call = self._clock.callLater(0, self._scheduled_flush)
        return IngestOutcome(accepted, duplicates, parsed.errors, acks, parsed.is_batch)

    def _tag_origins(self, origin: object, count: int) -> None:
        """Record the origin of the next ``count`` pending readings (off the device path)."""
        if self._pending_origins is None:
            self._pending_origins = [None] * len(self._pending)
        self._pending_origins.extend([origin] * count)

    def reject(self, reason: str, count: int = 1, *, source: str = "?", detail: str = "") -> None:
        """Count input refused outside :func:`parse_payload`, naming its source.

        Framing errors of the raw transports, bad subscriptions, and readings a
        WAMP client published that its topic or arguments make invalid.
        """
        self.stats.rejected[reason] += count
        self._log_rejection(source, Rejection(reason, detail), count)

    def _log_rejection(self, source: str, example: Rejection, count: int) -> None:
        """One log line per second at most: bad input must not flood the log."""
        self._rejections_unlogged += count
        now = self._clock.seconds()
        if now - self._last_rejection_log < REJECTION_LOG_INTERVAL:
            return
        _log.info(
            "rejected input from {source}: {code}: {detail}"
            " ({count} rejection(s) since the last such line; totals at /stats)",
            source=source,
            code=example.code,
            detail=example.detail,
            count=self._rejections_unlogged,
        )
        self._last_rejection_log = now
        self._rejections_unlogged = 0

    # -- delivery ------------------------------------------------------------

    def _scheduled_flush(self) -> None:
        self._flush_call = None
        self.flush()

    def flush(self) -> None:
        """Deliver every queued reading now (normally called on the next turn)."""
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        pending, self._pending = self._pending, []
        origins, self._pending_origins = self._pending_origins, None
        if not pending:
            return
        self._remember(pending)
        delivered = 0
        for filter_, members in list(self._groups.items()):
            if filter_ == EVERYTHING:
                batch = Batch(pending, origins)
            elif origins is None:
                readings = [reading for reading in pending if filter_.matches(reading)]
                if not readings:
                    continue
                batch = Batch(readings)
            else:
                chosen = [pair for pair in zip(pending, origins, strict=True)
                          if filter_.matches(pair[0])]  # fmt: skip
                if not chosen:
                    continue
                batch = Batch([reading for reading, _ in chosen], [tag for _, tag in chosen])
            sinks = list(members)  # a sink may unsubscribe while it is delivered to
            failed = 0
            for sink in sinks:
                try:
                    sink.deliver(batch)
                except Exception:
                    failed += 1
                    _log.failure("sink {sink!r} failed to take a batch", sink=sink)
            delivered += len(batch) * (len(sinks) - failed)
        self.stats.delivered += delivered

    def _remember(self, readings: Sequence[Reading]) -> None:
        """Update the last-value cache: newest ``ts`` wins; oldest-updated sensor evicted."""
        latest = self._latest
        for reading in readings:
            key = reading.key
            previous = latest.pop(key, None)
            if previous is not None and previous.ts > reading.ts:
                latest[key] = previous
                continue
            latest[key] = reading
            if len(latest) > self._max_sensors:
                evicted = next(iter(latest))
                del latest[evicted]
                self.stats.sensors_evicted += 1
                if self.stats.sensors_evicted % 10_000 == 1:  # log the first, then a sample
                    _log.warn(
                        "last-value cache full ({limit} sensors): forgot {device}/{sensor}"
                        " ({count} forgotten so far)",
                        limit=self._max_sensors,
                        device=evicted[0],
                        sensor=evicted[1],
                        count=self.stats.sensors_evicted,
                    )

    # -- subscribers ------------------------------------------------------------

    def subscribe(
        self, sink: ISink, filter_: Filter = EVERYTHING
    ) -> tuple[Subscription, list[Reading]]:
        """Register ``sink``; returns its subscription and the snapshot it should show first.

        The snapshot and the subscription are taken in the same turn, and the
        cache only changes when a turn's readings are delivered, so a sink
        sees every reading once: either in the snapshot or live, never both.
        """
        subscription = Subscription(sink, filter_)
        self._groups.setdefault(filter_, {})[sink] = subscription
        return subscription, self.latest(filter_)

    def unsubscribe(self, subscription: Subscription) -> None:
        members = self._groups.get(subscription.filter)
        if members is None or members.pop(subscription.sink, None) is None:
            return
        if not members:
            del self._groups[subscription.filter]

    @property
    def subscriber_count(self) -> int:
        return sum(len(members) for members in self._groups.values())

    # -- queries ------------------------------------------------------------

    def latest(self, filter_: Filter = EVERYTHING) -> list[Reading]:
        """Last known reading of every sensor that ``filter_`` matches, oldest first."""
        if filter_ == EVERYTHING:
            return list(self._latest.values())
        return [reading for reading in self._latest.values() if filter_.matches(reading)]

    def sensors(self) -> list[dict[str, Any]]:
        """One entry per known sensor: ``{device, sensor, unit, ts}``."""
        return [
            {"device": r.device, "sensor": r.sensor, "unit": r.unit, "ts": r.ts}
            for r in self._latest.values()
        ]
