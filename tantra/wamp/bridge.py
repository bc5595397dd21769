"""The hub on the WAMP router: readings as events, WAMP readings into the hub, built-in procedures.

Owns the ``tantra.reading.`` topic namespace and the ``tantra.latest`` /
``tantra.sensors`` procedures:

- it is one :class:`~tantra.hub.ISink` of the hub (filter: everything) and
  publishes every accepted reading to ``tantra.reading.<device>.<sensor>``
  with ``args=[reading]``;
- a client's PUBLISH under ``tantra.reading.`` is a reading: validated like
  a device's (``tantra.model.validate_reading``; device and sensor come from
  the topic) and handed to :meth:`Hub.accept`, so dashboards get it, it is
  de-duplicated and counted; it then comes back through the hub's fan-out as
  the one WAMP event (published with the client's publication id and its
  ``exclude``/``eligible``/disclosure options), never twice: the publication
  travels with the reading as its origin (``Hub.accept(origin=...)``,
  ``Batch.origins``), so the bridge keeps no map of what it sent;
- retained events in the namespace *are* the hub's last-value cache, so WAMP
  ``get_retained`` and the dashboard snapshot always agree. They are found
  through the cache's own indices (:meth:`Hub.reading_of`,
  :meth:`Hub.latest_for_device`, :meth:`Hub.devices`), so a join costs what
  it sends: an exact topic is one lookup, ``tantra.reading.<device>.`` the
  device's sensors, never a scan of the whole cache.

Does not own: validation rules (``tantra.model``), the cache and fan-out
(``tantra.hub``), event routing (``tantra.wamp.broker``). No I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from typing import Any

import attrs
import orjson
from autobahn.wamp import message
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from tantra.hub import Batch, Filter, Hub, ISink
from tantra.model import (
    INVALID_READING,
    NAME_PATTERN,
    NAME_RULE,
    ParsedPayload,
    Reading,
    Rejection,
    validate_reading,
)
from tantra.store.query import StoredReading
from tantra.wamp.broker import Broker, ITopicNamespace, Publication
from tantra.wamp.dealer import CallError, Dealer
from tantra.wamp.limits import WampLimits, shorten
from tantra.wamp.match import EXACT, PREFIX, WILDCARD, matches
from tantra.wamp.peer import INVALID_ARGUMENT, IWampPeer, WampStats, error_reply
from tantra.web import params

_log = Logger()

READING_PREFIX = "tantra.reading."
LATEST = "tantra.latest"
SENSORS = "tantra.sensors"
HISTORY = "tantra.history"
AGGREGATE = "tantra.aggregate"
#: ERROR of a history procedure on a hub without a store, or when the store cannot be read.
NO_STORE = "tantra.error.no_store"
STORE_UNAVAILABLE = "tantra.error.store_unavailable"
#: Share of the outgoing message limit a ``tantra.history`` page may fill (the rest: framing).
RESULT_SHARE = 0.9
#: Most readings one ``tantra.latest(limit=...)`` page may ask for.
MAX_PAGE = 10_000


def reading_topic(reading: Reading) -> str:
    return f"{READING_PREFIX}{reading.device}.{reading.sensor}"


def parse_reading_topic(topic: str) -> tuple[str, str] | str:
    """``(device, sensor)`` of a reading topic, or why the topic is not one."""
    parts = topic[len(READING_PREFIX) :].split(".")
    if len(parts) != 2:
        return f"reading topics are {READING_PREFIX}<device>.<sensor>, not {topic!r}"
    device, sensor = parts
    if NAME_PATTERN.fullmatch(device) is None:
        return f"device {device!r} in the topic must be {NAME_RULE}"
    if NAME_PATTERN.fullmatch(sensor) is None:
        return f"sensor {sensor!r} in the topic must be {NAME_RULE}"
    return device, sensor


@implementer(ISink, ITopicNamespace)
class HubBridge:
    """Connects one hub to one router's broker and dealer."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        dealer: Dealer,
        stats: WampStats,
        *,
        max_result_bytes: int = WampLimits().max_outgoing_bytes,
    ):
        self._hub = hub
        self._broker = broker
        self._dealer = dealer
        self._stats = stats
        self._page_bytes = int(max_result_bytes * RESULT_SHARE)

    def start(self) -> None:
        self._broker.add_namespace(self)
        self._dealer.add_builtin(LATEST, self.latest)
        self._dealer.add_builtin(SENSORS, self.sensors)
        self._dealer.add_builtin(HISTORY, self.history, deferred=True)
        self._dealer.add_builtin(AGGREGATE, self.aggregate, deferred=True)
        # For the hub's lifetime: the router lives as long.
        self._hub.subscribe(self)

    # -- hub -> WAMP ------------------------------------------------------------

    def deliver(self, batch: Batch) -> None:
        if not self._broker.subscriptions:
            # Nobody subscribed to anything: no event to build. Retained readings
            # come from the hub's cache, so nothing is lost for later subscribers.
            return
        publications: list[Publication] = []
        for reading, origin in batch.with_origins():
            # A reading a WAMP client published carries its publication as its
            # origin (see publish): it goes out with that client's id and options.
            if isinstance(origin, Publication):
                publication = origin
                if reading.id is not None:  # numbered at the hub's flush, after the PUBLISH
                    publication = attrs.evolve(origin, args=[reading.to_dict()])
            else:
                publication = Publication(
                    self._broker.new_publication_id(),
                    reading_topic(reading),
                    args=[reading.to_dict()],
                    conflation_key=reading.key,
                )
            publications.append(publication)
        # The turn's events go out per group of subscribers, encoded once (Broker.dispatch_batch).
        self._broker.dispatch_batch(publications)

    # -- WAMP -> hub ------------------------------------------------------------

    def owns(self, topic: str) -> bool:
        return topic.startswith(READING_PREFIX)

    def publish(self, peer: IWampPeer, msg: message.Publish, publication_id: int) -> None:
        outcome = self._reading_from(msg)
        if isinstance(outcome, Rejection):
            self._hub.reject(
                outcome.code,
                source=f"WAMP session {peer.session_id}",
                detail=f"{msg.topic}: {outcome.detail}",
            )
            self._stats.errors_sent[INVALID_ARGUMENT] += 1
            if msg.acknowledge:
                peer.send(
                    error_reply(
                        msg.MESSAGE_TYPE,
                        msg.request,
                        INVALID_ARGUMENT,
                        outcome.detail,
                        code=outcome.code,
                        detail=outcome.detail,
                    )
                )
            return
        publication = Publication.from_publish(
            msg, peer, publication_id, args=[outcome.to_dict()], conflation_key=outcome.key
        )
        self._hub.accept(ParsedPayload((outcome,), ()), origin=publication)
        if msg.acknowledge:
            peer.send(message.Published(msg.request, publication_id))

    def _reading_from(self, msg: message.Publish) -> Reading | Rejection:
        def reject(detail: str) -> Rejection:
            return Rejection(INVALID_READING, detail)

        where = parse_reading_topic(msg.topic)
        if isinstance(where, str):
            return reject(where)
        device, sensor = where
        if msg.payload is not None:
            return reject("send the reading as args=[{...}] or kwargs, not as an encrypted payload")
        if msg.args and msg.kwargs:
            return reject("send the reading as args=[{...}] or as kwargs, not both")
        if msg.args:
            if len(msg.args) != 1 or not isinstance(msg.args[0], dict):
                return reject("args must be exactly one reading object: args=[{...}]")
            fields = msg.args[0]
        elif msg.kwargs:
            fields = msg.kwargs
        else:
            return reject('missing reading: publish args=[{"value": ..., "unit": ...}]')
        if not all(isinstance(name, str) for name in fields):
            return reject("field names must be strings")
        for name, from_topic in (("device", device), ("sensor", sensor)):
            if name in fields and fields[name] != from_topic:
                return reject(
                    f"{name} {fields[name]!r} in the reading disagrees with"
                    f" {from_topic!r} in the topic"
                )
        return validate_reading(
            {**fields, "device": device, "sensor": sensor},
            default_device=device,
            now_ms=self._hub.now_ms(),
        )

    def retained(self, pattern: str, policy: str) -> Iterable[tuple[str, list[Any], Hashable]]:
        for reading in self._candidates(pattern, policy):
            topic = reading_topic(reading)
            if matches(pattern, policy, topic):
                yield topic, [reading.to_dict()], reading.key

    def _candidates(self, pattern: str, policy: str) -> Iterable[Reading]:
        """Cached readings that may match, found by device and sensor where the pattern names
        them: an exact topic is one lookup, a device prefix that device's sensors."""
        if policy == EXACT:
            where = parse_reading_topic(pattern) if pattern.startswith(READING_PREFIX) else None
            return () if not isinstance(where, tuple) else self._of_device(*where)
        if policy == PREFIX:
            if READING_PREFIX.startswith(pattern):
                return self._hub.latest()  # everything: what it sends is the whole cache
            if not pattern.startswith(READING_PREFIX):
                return ()
            device, dot, _ = pattern[len(READING_PREFIX) :].partition(".")
            if dot:
                return self._hub.latest_for_device(device)
            devices = [d for d in self._hub.devices() if d.startswith(device)]
            return (r for d in devices for r in self._hub.latest_for_device(d))
        if policy == WILDCARD:
            parts = pattern.split(".")
            if len(parts) != 4 or parts[0] not in ("", "tantra") or parts[1] not in ("", "reading"):
                return ()
            device, sensor = parts[2], parts[3] or None
            devices = [device] if device else list(self._hub.devices())
            return (r for d in devices for r in self._of_device(d, sensor))
        return ()

    def _of_device(self, device: str, sensor: str | None = None) -> list[Reading]:
        if sensor is None:
            return self._hub.latest_for_device(device)
        found = self._hub.reading_of(device, sensor)
        return [] if found is None else [found]

    # -- built-in procedures ------------------------------------------------------------

    def latest(self, args: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """``tantra.latest(device=None, sensor=None, limit=None, after=None)``: last readings.

        Without ``limit``/``after``: every matching reading, oldest first (the
        dashboards' snapshot). With them: a page of at most ``limit`` readings
        in (device, sensor) order, starting after the sensor ``after``
        (``"<device>.<sensor>"``, the last one of the previous page), so a
        result never has to exceed the outgoing message limit.
        """
        chosen = _arguments(LATEST, ("device", "sensor", "limit", "after"), args, kwargs)
        for name in ("device", "sensor"):
            value = chosen.get(name)
            if value is not None and not (isinstance(value, str) and NAME_PATTERN.fullmatch(value)):
                raise CallError(INVALID_ARGUMENT, f"{name} must be {NAME_RULE} or null")
        device, sensor = chosen.get("device"), chosen.get("sensor")
        limit, after = chosen.get("limit"), chosen.get("after")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE
        ):
            raise CallError(INVALID_ARGUMENT, f"limit must be a whole number from 1 to {MAX_PAGE}")
        after_key: tuple[str, str] | None = None
        if after is not None:
            where = parse_reading_topic(READING_PREFIX + after) if isinstance(after, str) else None
            if not isinstance(where, tuple):
                raise CallError(INVALID_ARGUMENT, "after must be '<device>.<sensor>' or null")
            after_key = where
        if device and sensor:
            found = self._hub.reading_of(device, sensor)
            readings: list[Reading] = [] if found is None else [found]
        elif device and (limit is not None or after_key is not None):
            readings = self._hub.latest_for_device(device)
        else:  # the whole cache, oldest first as in the dashboards' snapshot
            filter_ = Filter.of([device] if device else [], [sensor] if sensor else [])
            readings = self._hub.latest(filter_)
        if limit is not None or after_key is not None:
            if after_key is not None:
                readings = [r for r in readings if r.key > after_key]
            count = len(readings) if limit is None else limit
            readings = heapq.nsmallest(count, readings, key=lambda r: r.key)
        return [reading.to_dict() for reading in readings]

    def sensors(self, args: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """``tantra.sensors()``: one ``{device, sensor, unit, ts}`` per known sensor."""
        _arguments(SENSORS, (), args, kwargs)
        return self._hub.sensors()

    # -- history procedures (the REST API's semantics, tantra.web.params) -------------

    def history(self, args: list[Any], kwargs: dict[str, Any]) -> defer.Deferred:
        """``tantra.history(device, sensor, from, to, limit, order=, cursor=)``: a page of stored
        readings, ``{"readings": [...], "next": cursor or null}`` as ``GET /api/v1/readings``.

        A page is also cut short (with a ``next``) where it would exceed the
        outgoing message limit, so no answer is ever refused as too large.
        """
        names = ("device", "sensor", "from", "to", "limit", "order", "cursor")
        text = _as_text(HISTORY, _arguments(HISTORY, names, args, kwargs))
        store = self._history()
        query = _parsed(params.readings_query, text, self._hub.now_ms())
        page = query.limit
        fetch = attrs.evolve(query, limit=page + 1)
        return _unavailable(store.query("readings", fetch)).addCallback(
            self._page, page, query.order
        )

    def _page(self, rows: list[StoredReading], page: int, order: str) -> dict[str, Any]:
        more = len(rows) > page
        rows = rows[:page]
        readings: list[dict[str, Any]] = []
        room = self._page_bytes - 100
        for row in rows:
            item = row.to_dict()
            room -= len(orjson.dumps(item)) + 1
            if room < 0 and readings:
                more = True
                break
            readings.append(item)
        last = readings[-1] if more and readings else None
        return {
            "readings": readings,
            "next": None if last is None else params.encode_cursor(order, last["ts"], last["id"]),
        }

    def aggregate(self, args: list[Any], kwargs: dict[str, Any]) -> defer.Deferred:
        """``tantra.aggregate(device, sensor, from, to, every, fn, points)``: as
        ``GET /api/v1/aggregate``, ``{"step", "from", "to", "series": [...]}``."""
        names = ("device", "sensor", "from", "to", "every", "fn", "points")
        text = _as_text(AGGREGATE, _arguments(AGGREGATE, names, args, kwargs))
        store = self._history()
        query = _parsed(params.aggregate_query, text, self._hub.now_ms())
        return _unavailable(store.query("aggregate", query)).addCallback(
            lambda series: {"step": query.step, "from": query.start, "to": query.end,
                            "series": series}
        )  # fmt: skip

    def _history(self) -> Any:
        store = self._hub.history
        if store is None:
            raise CallError(NO_STORE, "this hub keeps no history (--store none)")
        return store


def _parsed(parse: Any, text: dict[str, list[str]], now_ms: int) -> Any:
    try:
        return parse(text, now_ms)
    except params.BadParameter as error:
        raise CallError(INVALID_ARGUMENT, str(error)) from None


def _unavailable(query: defer.Deferred) -> defer.Deferred:
    def failed(reason: Any) -> None:
        raise CallError(
            STORE_UNAVAILABLE, f"the history could not be read: {reason.getErrorMessage()}"
        )

    return query.addErrback(failed)


def _as_text(procedure: str, chosen: dict[str, Any]) -> dict[str, list[str]]:
    """WAMP arguments as the API's query string: names a string or a list of strings,
    times ms (an integer) or text, counts integers, ``fn`` a string or list; null is absent."""
    out: dict[str, list[str]] = {}
    for name, value in chosen.items():
        if value is None:
            continue
        items = value if isinstance(value, list) and name in ("device", "sensor", "fn") else [value]
        texts = []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, int) and not isinstance(item, bool) and name in (
                "from", "to", "limit", "points"
            ):  # fmt: skip
                texts.append(str(item))
            else:
                raise CallError(
                    INVALID_ARGUMENT, f"{procedure}: {name} {shorten(item)} has the wrong type"
                )
        out[name] = [",".join(texts)] if name == "fn" else texts
    return out


def _arguments(
    procedure: str, names: tuple[str, ...], args: list[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Positional and keyword arguments by name; unknown or surplus ones are an error."""
    if len(args) > len(names):
        raise CallError(
            INVALID_ARGUMENT, f"{procedure} takes at most {len(names)} argument(s) ({names})"
        )
    chosen = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        if name not in names:
            raise CallError(INVALID_ARGUMENT, f"{procedure} has no argument {name!r}")
        if name in chosen:
            raise CallError(INVALID_ARGUMENT, f"{procedure} got {name!r} twice")
        chosen[name] = value
    return chosen
