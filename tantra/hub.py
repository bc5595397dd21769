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

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from tantra import fanout
from tantra.commits import BroadcastGate, CommitGate, IDurable, Settlement
from tantra.counters import Counters, HubStats
from tantra.dedupe import SeqWindow
from tantra.model import ParsedPayload, Reading, Rejection, number, parse_lone
from tantra.store.ids import IIdSource

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


@attrs.frozen(slots=True)
class Remote:
    """The origin of readings another hub accepted (they came over the cluster bus).

    ``Hub.accept(..., origin=bus, remote=True)`` tags each such reading with
    ``Remote(bus)``. Dashboards, WAMP and the last-value cache take them like
    any other; a sink that must act only on what *this* hub accepted (the
    MQTT bridge and cluster publishers) reads :meth:`Batch.local`, and the
    hub hands only those to its history store (:meth:`Hub.flush`).
    """

    origin: object


def _local(readings: Sequence[Reading], origins: Sequence[object]) -> list[Reading]:
    """The readings whose origin is not :class:`Remote` (``origins`` parallel to them)."""
    return [r for r, o in zip(readings, origins, strict=True) if type(o) is not Remote]


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

    __slots__ = ("_encodings", "committed", "origins", "readings")

    def __init__(
        self,
        readings: Sequence[Reading],
        origins: Sequence[object] | None = None,
        committed: Callable[[], Deferred] | None = None,
    ):
        self.readings = readings
        self.origins = origins
        #: With a history store, on the batch of every reading of a turn (sinks
        #: without a filter): ``committed()`` is a new Deferred that fires once
        #: the turn's local readings are stored, or fails with ``NotCommitted``
        #: if the store shed them. None without a store, or with no local reading.
        self.committed = committed
        self._encodings: dict[Callable[[Sequence[Reading]], Any], Any] = {}

    def __len__(self) -> int:
        return len(self.readings)

    def with_origins(self) -> Iterable[tuple[Reading, object]]:
        """Each reading with its origin (``None`` when it was accepted without one)."""
        if self.origins is None:
            return ((reading, None) for reading in self.readings)
        return zip(self.readings, self.origins, strict=True)

    def local(self) -> Sequence[Reading]:
        """The readings this hub accepted itself: all but those from the cluster bus.

        What a hub publishes to the bus (and, at its flush, hands its store):
        another hub accepted (and stored, and published) the :class:`Remote` ones.
        """
        if self.origins is None:
            return self.readings
        return _local(self.readings, self.origins)

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
    #: With a history store: fires once every reading the acks name is committed
    #: (fails with ``tantra.commits.NotCommitted`` if not); ``None``: ack now.
    #: The hub's is a :class:`~tantra.commits.Settlement`: used as a Deferred,
    #: or read without one by ``OrderedReplies`` (one call per committed turn).
    settled: Settlement | Deferred | None = None


_outcome = tuple.__new__


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
        self._gate: CommitGate | None = None  # set by commit_through (a history store)
        self._broadcast_gate: BroadcastGate | None = None  # set by ack_after_broadcast
        self._ids: IIdSource | None = None  # set by keep_history: readings get an id
        #: The history store (``tantra.store.writer.Store``) when there is one;
        #: dashboards resume from it and the WAMP bridge answers history calls.
        self.history: Any = None
        self._max_sensors = max_sensors
        #: Every counter of the running hub; transports default to this object.
        self.counters = counters if counters is not None else Counters()
        #: The hub's own section of :attr:`counters`.
        self.stats: HubStats = self.counters.hub
        # The last-value cache, in update order (oldest first), and its two
        # indices: device -> {sensor: stamp} (a stamp numbers updates, so
        # filtered snapshots keep that order) and sensor -> its device, or
        # {device: None} once several devices have that sensor.
        self._latest: OrderedDict[tuple[str, str], Reading] = OrderedDict()
        self._by_device: dict[str, dict[str, int]] = {}
        self._by_sensor: dict[str, str | dict[str, None]] = {}
        self._stamp = 0
        # filter -> {sink: subscription}; equal filters share one batch per turn.
        self._groups: dict[Filter, dict[ISink, Subscription]] = {}
        # The routing index: a filtered group is listed under each device it
        # names, or (naming no device) under each sensor it names.
        self._device_routes: dict[str, dict[Filter, None]] = {}
        self._sensor_routes: dict[str, dict[Filter, None]] = {}
        self._pending: list[Reading] = []
        # Parallel to _pending, made only in a turn where some reading has an origin.
        self._pending_origins: list[object] | None = None
        # (accept time, readings) per accepted payload: the delivery latency histogram.
        self._pending_since: list[tuple[float, int]] = []
        self._flush_call: IDelayedCall | None = None
        self._last_rejection_log = float("-inf")
        self._rejections_unlogged = 0

    # -- ingest ------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def ingest(self, payload: bytes | str, *, default_device: str) -> IngestOutcome:
        """Parse, validate, de-duplicate and queue one payload from any transport.

        The commonest payload, one valid reading without ``seq`` (nothing to
        de-duplicate, no ack owed), is queued here directly: what
        :meth:`accept` would do with it, without its generality (issue 14:
        per-payload tuples and calls were a seventh of a WebSocket reading).
        """
        now = self._clock.seconds()
        parsed = parse_lone(payload, default_device, int(now * 1000))
        if parsed.__class__ is Reading:
            reading: Any = parsed
            if reading.seq is None and self._pending_origins is None:
                self.stats.accepted += 1
                self._pending.append(reading)
                self._pending_since.append((now, 1))
                if self._flush_call is None:
                    self._flush_call = self._clock.callLater(0, self._scheduled_flush)
                return _outcome(IngestOutcome, ([reading], [], (), [], False, None))
            parsed = _outcome(ParsedPayload, ((reading,), (), False))
        return self.accept(parsed, source=default_device, now=now)  # type: ignore[arg-type]

    def ingest_many(self, payloads: Iterable[bytes], *, default_device: str) -> list[IngestOutcome]:
        """:meth:`ingest` each payload of one receive, in order; returns the outcomes owing replies.

        The WebSocket messages that arrived in one read: one clock read, one
        latency entry and one flush check for all the lone readings without
        ``seq`` among them (queued as :meth:`ingest` queues them), and an
        outcome only for the payloads that owe a reply or wait for a commit
        (issue 14: the per-message calls were a fifth of a WebSocket reading).
        """
        if self._pending_origins is not None:  # a turn with origins: tag each one
            owed = [self.ingest(payload, default_device=default_device) for payload in payloads]
            return [o for o in owed if o.acks or o.errors or o.settled is not None]
        now = self._clock.seconds()
        now_ms = int(now * 1000)
        pending = self._pending
        owed = []
        lone = 0
        for payload in payloads:
            parsed: Any = parse_lone(payload, default_device, now_ms)
            if parsed.__class__ is Reading:
                if parsed.seq is None:
                    pending.append(parsed)
                    lone += 1
                    continue
                parsed = _outcome(ParsedPayload, ((parsed,), (), False))
            outcome = self.accept(parsed, source=default_device, now=now)
            if outcome.acks or outcome.errors or outcome.settled is not None:
                owed.append(outcome)
        if lone:
            self.stats.accepted += lone
            self._pending_since.append((now, lone))
            if self._flush_call is None:
                self._flush_call = self._clock.callLater(0, self._scheduled_flush)
        return owed

    def accept(
        self,
        parsed: ParsedPayload,
        *,
        source: str = "?",
        origin: object = None,
        now: float | None = None,
        remote: bool = False,
    ) -> IngestOutcome:
        """Queue already validated readings (WAMP builds them from a topic + kwargs).

        ``source`` names the sender in log lines about its rejected input;
        ``origin`` travels with the accepted readings to every sink
        (:attr:`Batch.origins`), so a component that is both a source and a
        sink recognises its own readings; ``now`` saves a clock read when the
        caller has just made one.

        ``remote=True`` says another hub accepted these readings (the cluster
        bus): they are tagged ``Remote(origin)`` (see :meth:`Batch.local`),
        so they reach dashboards, WAMP and the cache but no store and never
        the bus again. They pass the de-dup window like any reading, so a
        ``(device, seq)`` that one hub accepted is a duplicate on every hub
        (a device that fails over and re-sends is not shown twice); remote
        duplicates are dropped and owe no replies (the accepting hub acked).
        With a history store (:meth:`commit_through`) a remote reading marks
        the window at once (the accepting hub commits it, not this one), is
        a duplicate of a local copy still waiting for its commit, and never
        joins a commit turn, so it settles nothing and waits for nothing.
        """
        if remote:
            if origin is None:
                raise ValueError("remote readings need the origin that received them")
            origin = Remote(origin)
        readings, errors, is_batch = parsed[0], parsed[1], parsed[2]
        if errors:
            for error in errors:
                self.stats.rejected[error.code] += 1
            self._log_rejection(source, errors[0], len(errors))
        accepted: list[Reading] = []
        duplicates: list[Reading] = []
        acks: list[int] = []
        if now is None:
            now = self._clock.seconds()
        settled = None
        gate = self._gate
        if gate is None:
            append = accepted.append
            for reading in readings:
                seq = reading.seq
                if seq is not None:
                    acks.append(seq)
                    if self._dedupe.is_duplicate(reading.device, seq, now):
                        duplicates.append(reading)
                        continue
                append(reading)
        else:
            # The gate reads the window without a time (``SeqWindow.seen``): forget
            # idle devices first, as ``is_duplicate`` does, so a rebooted one is heard.
            self._dedupe.expire(now)
            if remote:
                for reading in readings:
                    if reading.seq is not None:
                        acks.append(reading.seq)
                        if gate.holds(reading.device, reading.seq) or self._dedupe.is_duplicate(
                            reading.device, reading.seq, now
                        ):
                            duplicates.append(reading)
                            continue
                    accepted.append(reading)
            else:
                settled = gate.classify_into(readings, accepted, duplicates, acks)
        if acks:
            self.stats.dedupe_evicted = self._dedupe.evicted
        if duplicates:
            self.stats.duplicates += len(duplicates)
        if accepted:
            count = len(accepted)
            self.stats.accepted += count
            if origin is not None or self._pending_origins is not None:
                self._tag_origins(origin, count)
            self._pending += accepted
            self._pending_since.append((now, count))
            if self._flush_call is None:
                self._flush_call = self._clock.callLater(0, self._scheduled_flush)
        if acks and settled is None and self._broadcast_gate is not None:
            settled = self.until_broadcast()  # what these acks name is not yet broadcast
        # tuple.__new__: the NamedTuple's own constructor costs twice as much (per payload).
        return _outcome(IngestOutcome, (accepted, duplicates, errors, acks, is_batch, settled))

    def accepted_before(self, device: str, seq: int) -> bool:
        """True when ``(device, seq)`` was accepted already; changes nothing.

        With a store: committed (the window rebuilt from the store at
        start-up, then every commit) or waiting for its commit. Without one:
        in the de-dup window. A reading for which this is True is only ever
        a duplicate to :meth:`accept` (acknowledged, never stored or
        broadcast again); the signed-UDP replay rule relies on it.
        """
        # SeqWindow.seen takes no time: forget idle devices first, as accept does.
        self._dedupe.expire(self._clock.seconds())
        if self._gate is not None:
            return self._gate.holds(device, seq)
        return self._dedupe.seen(device, seq)

    def remember_committed(self, stored: Iterable[tuple[str, int, int]]) -> None:
        """Rebuild the de-dup window from the ``(device, seq, ts)`` a store holds, oldest first."""
        now = self._clock.seconds()
        mark = self._dedupe.mark_seen
        for device, seq, _ts in stored:
            mark(device, seq, now)

    def commit_through(self, store: IDurable) -> CommitGate:
        """Make acks mean "stored": accepted readings go to ``store`` at each flush,
        and a payload's acks wait for the commit of the readings they name."""
        dedupe = self._dedupe
        clock = self._clock

        def commit(keys: Iterable[tuple[str, int]]) -> None:
            dedupe.mark_seen_many(keys, clock.seconds())

        self._gate = CommitGate(store, seen=dedupe.seen, commit=commit)
        self._broadcast_gate = None  # a commit comes after the broadcast
        return self._gate

    def until_broadcast(self) -> Settlement | None:
        """With :meth:`ack_after_broadcast`: what an ack must wait for while this
        turn's readings (the acked ones, or a retry's first copy) are not yet
        broadcast; None when it may go at once (also with a store, whose gate
        makes acks wait for the commit instead)."""
        if self._broadcast_gate is not None and self._pending:
            return self._broadcast_gate.settlement()
        return None

    def ack_after_broadcast(self) -> None:
        """Without a store: hold a payload's acks until the flush that hands its
        readings (or, for a duplicate, this turn's) to every subscriber, so an
        ack never names a reading a crash could still keep from the dashboards
        (``tantra.commits.BroadcastGate``). Without this call acks go at once."""
        if self._gate is None:
            self._broadcast_gate = BroadcastGate()

    @property
    def acks_wait_for_commit(self) -> bool:
        """True once :meth:`commit_through` made acks mean "stored"."""
        return self._gate is not None

    def keep_history(self, store: Any) -> None:
        """Store every accepted reading in ``store`` (acks after commit, see
        :meth:`commit_through`), numbered from ``store.ids`` at each flush, so
        every client sees a reading's ``id`` with it; dashboards and WAMP find
        the store as :attr:`history`."""
        self.commit_through(store)
        self._ids = store.ids
        self.history = store

    @property
    def last_id(self) -> int | None:
        """The largest id given to a reading so far (``None`` without a store)."""
        return None if self._ids is None else self._ids.last

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
        """Deliver every queued reading now (normally called on the next turn).

        Each reading goes to the groups that want it through the routing
        index (device -> groups, sensor -> groups), so a turn costs what it
        delivers, not one filter test per group and reading: 2000 dashboards
        with 2000 different ``?device=`` filters cost a reading two dict
        look-ups plus its own group.
        """
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        pending, self._pending = self._pending, []
        origins, self._pending_origins = self._pending_origins, None
        since, self._pending_since = self._pending_since, []
        if not pending:
            return  # (a broadcast gate's turn exists only while readings are pending)
        try:
            self._broadcast(pending, origins, since)
        finally:
            if self._broadcast_gate is not None:
                self._broadcast_gate.flushed()

    def _broadcast(
        self, pending: list[Reading], origins: list[object] | None, since: list[tuple[float, int]]
    ) -> None:
        committed = None
        if self._gate is not None:
            local = pending if origins is None else _local(pending, origins)
            if local:  # remote readings: the hub that accepted them numbers and stores them
                if self._ids is not None:
                    number(local, self._ids.take(len(local)))
                committed = self._gate.submit(local)
        self._remember(pending)
        delivered = 0
        members = self._groups.get(EVERYTHING)
        if members:
            delivered += self._deliver(members, Batch(pending, origins, committed))
        if self._device_routes or self._sensor_routes:
            if origins is None:
                routed = self._route(pending)
            else:  # each routed reading keeps its origin (the WAMP bridge relies on it)
                routed = self._route_with_origins(pending, origins)
            for filter_, batch in routed.items():
                members = self._groups.get(filter_)
                if members:
                    delivered += self._deliver(members, batch)
        self.stats.delivered += delivered
        self.counters.latency.delivery.observe_since(self._clock.seconds(), since)

    def _route(self, pending: Sequence[Reading]) -> dict[Filter, Batch]:
        """The batch of each filtered group, in arrival order; only groups with any."""
        routed: dict[Filter, list[Reading]] = {}
        device_routes = self._device_routes
        sensor_routes = self._sensor_routes
        for reading in pending:
            groups = device_routes.get(reading.device)
            if groups:
                for filter_ in groups:
                    sensors = filter_.sensors
                    if sensors is None or reading.sensor in sensors:
                        found = routed.get(filter_)
                        if found is None:
                            routed[filter_] = [reading]
                        else:
                            found.append(reading)
            groups = sensor_routes.get(reading.sensor)
            if groups:
                for filter_ in groups:
                    found = routed.get(filter_)
                    if found is None:
                        routed[filter_] = [reading]
                    else:
                        found.append(reading)
        return {filter_: Batch(readings) for filter_, readings in routed.items()}

    def _route_with_origins(
        self, pending: Sequence[Reading], origins: Sequence[object]
    ) -> dict[Filter, Batch]:
        """:meth:`_route` for a turn with origins: each routed reading keeps its own.

        Off the device path (only turns in which some reading was accepted
        with an origin, such as a WAMP publication, come here), so the
        groups wanting a reading come from :meth:`_wanting`.
        """
        routed: dict[Filter, tuple[list[Reading], list[object]]] = {}
        for reading, origin in zip(pending, origins, strict=True):
            for filter_ in self._wanting(reading):
                found = routed.get(filter_)
                if found is None:
                    routed[filter_] = ([reading], [origin])
                else:
                    found[0].append(reading)
                    found[1].append(origin)
        return {filter_: Batch(readings, tags) for filter_, (readings, tags) in routed.items()}

    def _wanting(self, reading: Reading) -> Iterator[Filter]:
        """The filtered groups that want ``reading`` (what :meth:`_route` inlines)."""
        groups = self._device_routes.get(reading.device)
        if groups:
            for filter_ in groups:
                if filter_.sensors is None or reading.sensor in filter_.sensors:
                    yield filter_
        groups = self._sensor_routes.get(reading.sensor)
        if groups:
            yield from groups

    @staticmethod
    def _deliver(members: dict[ISink, Subscription], batch: Batch) -> int:
        """One batch to every sink of a group; a failing sink costs only itself."""
        sinks = list(members)  # a sink may unsubscribe while it is delivered to
        failed = fanout.deliver_each(sinks, batch)  # in C where built (tantra.fanout)
        return len(batch) * (len(sinks) - failed)

    def _remember(self, readings: Sequence[Reading]) -> None:
        """Update the last-value cache: the reading received last wins.

        "Latest" is hub receive order, not device ``ts``: a device clock up
        to a minute fast (still a plausible ``ts``) must not pin a sensor's
        value against the readings that follow it (issue 8, item 15). The
        sensor updated longest ago is evicted first, in O(1)
        (``OrderedDict.popitem``; a plain dict's ``next(iter())`` scans the
        slots of every entry deleted before it).
        """
        latest = self._latest
        by_device = self._by_device
        by_sensor = self._by_sensor
        stamp = self._stamp
        for reading in readings:
            device = reading.device
            sensor = reading.sensor
            key = (device, sensor)  # reading.key, without a property call per reading
            stamp += 1
            if key in latest:
                latest.move_to_end(key)
                latest[key] = reading
                by_device[device][sensor] = stamp
                continue
            latest[key] = reading
            sensors = by_device.get(device)
            if sensors is None:
                sensors = by_device[device] = {}
            sensors[sensor] = stamp
            devices = by_sensor.get(sensor)
            if devices is None:
                by_sensor[sensor] = device  # most sensor names belong to one device
            elif isinstance(devices, str):
                by_sensor[sensor] = {devices: None, device: None}
            else:
                devices[device] = None
            if len(latest) > self._max_sensors:
                self._evict_oldest()
        self._stamp = stamp

    def _evict_oldest(self) -> None:
        (device, sensor), _ = self._latest.popitem(last=False)
        sensors = self._by_device[device]
        del sensors[sensor]
        if not sensors:
            del self._by_device[device]
        devices = self._by_sensor[sensor]
        if isinstance(devices, str):
            del self._by_sensor[sensor]
        else:
            del devices[device]
            if not devices:
                del self._by_sensor[sensor]
        self.stats.sensors_evicted += 1
        if self.stats.sensors_evicted % 10_000 == 1:  # log the first, then a sample
            _log.warn(
                "last-value cache full ({limit} sensors): forgot {device}/{sensor}"
                " ({count} forgotten so far)",
                limit=self._max_sensors,
                device=device,
                sensor=sensor,
                count=self.stats.sensors_evicted,
            )

    # -- subscribers ------------------------------------------------------------

    def subscribe(
        self, sink: ISink, filter_: Filter = EVERYTHING, *, snapshot: bool = True
    ) -> tuple[Subscription, list[Reading]]:
        """Register ``sink``; returns its subscription and the snapshot it should show first.

        The snapshot and the subscription are taken in the same turn, and the
        cache only changes when a turn's readings are delivered, so a sink
        sees every reading once: either in the snapshot or live, never both.
        ``snapshot=False``: none is made (a resuming dashboard, ``tantra.resume``).
        """
        subscription = Subscription(sink, filter_)
        members = self._groups.get(filter_)
        if members is None:
            members = self._groups[filter_] = {}
            self._add_routes(filter_)
        members[sink] = subscription
        return subscription, self.latest(filter_) if snapshot else []

    def unsubscribe(self, subscription: Subscription) -> None:
        members = self._groups.get(subscription.filter)
        if members is None or members.pop(subscription.sink, None) is None:
            return
        if not members:
            del self._groups[subscription.filter]
            self._remove_routes(subscription.filter)

    def _route_keys(self, filter_: Filter) -> tuple[dict[str, dict[Filter, None]], Iterable[str]]:
        """Where a group is indexed: under its devices, else under its sensors."""
        if filter_.devices is not None:
            return self._device_routes, filter_.devices
        assert filter_.sensors is not None
        return self._sensor_routes, filter_.sensors

    def _add_routes(self, filter_: Filter) -> None:
        if filter_ == EVERYTHING:
            return
        routes, names = self._route_keys(filter_)
        for name in names:
            routes.setdefault(name, {})[filter_] = None

    def _remove_routes(self, filter_: Filter) -> None:
        if filter_ == EVERYTHING:
            return
        routes, names = self._route_keys(filter_)
        for name in names:
            groups = routes[name]
            del groups[filter_]
            if not groups:
                del routes[name]

    @property
    def pending_count(self) -> int:
        """Readings accepted this turn and not yet delivered (a queue-depth gauge)."""
        return len(self._pending)

    @property
    def subscriber_count(self) -> int:
        return sum(len(members) for members in self._groups.values())

    # -- queries ------------------------------------------------------------

    def latest(self, filter_: Filter = EVERYTHING) -> list[Reading]:
        """Last known reading of every sensor that ``filter_`` matches, oldest update first.

        Costs what it returns: a filtered query walks the cache's device (or
        sensor) index, never the whole cache. This is the query for dashboard
        snapshots, ``tantra.latest`` and WAMP ``get_retained``.
        """
        if filter_ == EVERYTHING:
            return list(self._latest.values())
        devices, sensors = filter_.devices, filter_.sensors
        found: list[tuple[int, tuple[str, str]]] = []
        if devices is not None and (sensors is None or len(devices) <= len(sensors)):
            for device in devices:
                entries = self._by_device.get(device)
                if entries:
                    found.extend(
                        (stamp, (device, sensor))
                        for sensor, stamp in entries.items()
                        if sensors is None or sensor in sensors
                    )
        else:
            assert sensors is not None
            by_device = self._by_device
            for sensor in sensors:
                owners = self._by_sensor.get(sensor)
                if owners is None:
                    continue
                for device in (owners,) if isinstance(owners, str) else owners:
                    if devices is None or device in devices:
                        found.append((by_device[device][sensor], (device, sensor)))
        found.sort()
        latest = self._latest
        return [latest[key] for _, key in found]

    def reading_of(self, device: str, sensor: str) -> Reading | None:
        """The last reading of one sensor, or ``None`` (one lookup)."""
        return self._latest.get((device, sensor))

    def latest_for_device(self, device: str) -> list[Reading]:
        """Last reading of each sensor of one device, oldest update first (a WAMP prefix helper)."""
        return self.latest(Filter(frozenset((device,)), None))

    def devices(self) -> Iterable[str]:
        """Names of the devices with a sensor in the cache (a live view; copy to keep).

        For queries the filters cannot express, such as a WAMP prefix
        subscription ``tantra.reading.farm`` (devices ``farm``, ``farm-1``...):
        pick devices here, then :meth:`latest_for_device` each.
        """
        return self._by_device.keys()

    def device_count(self) -> int:
        return len(self._by_device)

    def sensor_count(self) -> int:
        return len(self._latest)

    def sensors(self) -> list[dict[str, Any]]:
        """One entry per known sensor: ``{device, sensor, unit, ts}``."""
        return [
            {"device": r.device, "sensor": r.sensor, "unit": r.unit, "ts": r.ts}
            for r in self._latest.values()
        ]
