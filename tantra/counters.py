"""Every counter of the hub, in one object handed to whoever counts.

Owns: :class:`Counters`, the one place counts live: a section per part
(:class:`HubStats` for ingest and delivery, :class:`WampStats` for the
router, :class:`UdpStats` for UDP replies, :class:`StoreStats` for history
when a store is configured, :class:`MqttStats` for the bus), built once in
``tantra.tap`` and passed to the constructors of the hub, the transports,
the outboxes, the WAMP router, the store and the bus. ``/stats`` serves
:meth:`Counters.as_dict`, and a metrics
exporter reads the same object. A new part adds a section here (an attrs
class with ``as_dict``) rather than a counter dict of its own.

Does not own: gauges that are computed from live state (clients connected,
sensors cached): ``tantra.web.site`` asks their owners. Pure: plain
integers and ``Counter`` s, no Twisted.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs


@attrs.define
class HubStats:
    """Counters a person running the hub wants to see (top level of ``/stats``)."""

    accepted: int = 0
    duplicates: int = 0
    delivered: int = 0
    conflated: int = 0
    rejected: Counter[str] = attrs.Factory(Counter)
    clients_dropped: Counter[str] = attrs.Factory(Counter)
    replies_suppressed: int = 0
    sensors_evicted: int = 0
    #: Devices the de-dup window forgot because it was full (see docs/protocol.md).
    dedupe_evicted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "delivered": self.delivered,
            "conflated": self.conflated,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "clients_dropped": dict(self.clients_dropped),
            "replies_suppressed": self.replies_suppressed,
            "sensors_evicted": self.sensors_evicted,
            "dedupe_evicted": self.dedupe_evicted,
        }


@attrs.define
class WampStats:
    """Counters of the router, beside the hub's (a reading rejected over WAMP counts there)."""

    sessions_opened: int = 0
    sessions_closed: int = 0
    protocol_violations: int = 0
    publications: int = 0
    events_sent: int = 0
    calls: int = 0
    retained_evicted: int = 0
    #: Messages not sent because they exceeded the outgoing limit, by message kind.
    too_large: Counter[str] = attrs.Factory(Counter)
    #: Requests refused for a per-session bound, by bound.
    limits_hit: Counter[str] = attrs.Factory(Counter)
    calls_timed_out: int = 0
    errors_sent: Counter[str] = attrs.Factory(Counter)
    aborts_sent: Counter[str] = attrs.Factory(Counter)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)  # a Counter comes out as a plain dict


@attrs.define
class UdpStats:
    """What the hub sent back over UDP, in packets and bytes (one reply datagram per request)."""

    reply_datagrams: int = 0
    reply_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


#: Upper bounds (seconds) of the latency histograms' buckets: 0.1 ms to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@attrs.define
class Histogram:
    """Observations in fixed buckets, as plain integers (the metrics exporter reads them).

    Why not ``prometheus_client.Histogram``: the hub counts in this object and
    the exporter reads it at scrape time, so there is one counting path and
    core code needs no metrics library. ``observe`` takes a ``count`` so one
    call records every reading of a payload at the cost of one bisect.
    """

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    #: Observations per bucket (not cumulative); the last one is ``+Inf``.
    buckets: list[int] = attrs.field()
    count: int = 0
    sum: float = 0.0

    @buckets.default
    def _no_observations(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float, count: int = 1) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += count
        self.count += count
        self.sum += seconds * count

    def observe_since(self, now: float, since: Iterable[tuple[float, int]]) -> None:
        """Record ``count`` observations of ``now - start`` for each ``(start, count)``.

        What the hub does at each flush, for every payload of the turn: one
        call and one loop instead of one :meth:`observe` call per payload
        (issue 14: those calls were 5 % of the hub's time per WebSocket reading).
        """
        bounds = self.bounds
        buckets = self.buckets
        total = 0
        weighted = 0.0
        for start, count in since:
            seconds = now - start
            buckets[bisect_left(bounds, seconds)] += count
            total += count
            weighted += seconds * count
        self.count += total
        self.sum += weighted

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": round(self.sum, 6)}


@attrs.define
class Latencies:
    """How long things take, as histograms (``/metrics``; ``/stats`` shows count and sum).

    ``delivery``: hub accept to sink delivery (the end of the flush turn that
    hands a reading to every sink), measured by the hub with its clock.
    ``commit``: a history commit, observed by the store: call
    ``counters.latency.commit.observe(seconds)`` in the reactor thread.
    """

    delivery: Histogram = attrs.Factory(Histogram)
    commit: Histogram = attrs.Factory(Histogram)

    def as_dict(self) -> dict[str, Any]:
        return {"delivery": self.delivery.as_dict(), "commit": self.commit.as_dict()}


@attrs.define
class StoreStats:
    """The history store's counters and the state it reports (``tantra.store.writer``).

    ``state``, ``reason`` and ``queued`` are set by the store in the reactor
    thread as they change, so ``/stats`` and a metrics exporter read plain
    values like every other section's.
    """

    state: str = "stopped"
    reason: str = ""
    where: str = ""
    queued: int = 0
    queue_limit: int = 0
    stored: int = 0
    commits: int = 0
    shed: int = 0
    write_failures: int = 0
    pruned: int = 0

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class MqttStats:
    """The MQTT bus: connection state, what went in and out, what was refused or dropped.

    ``state`` is ``off`` (no ``--mqtt``), ``connecting``, ``connected`` or
    ``reconnecting``; ``reason`` says why the last connection ended or failed.
    """

    state: str = "off"
    reason: str = ""
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    #: Device payloads taken from ``<prefix>/in/...``.
    received: int = 0
    #: Device payloads refused before parsing (bad topic, bad bare value), by code.
    rejected: Counter[str] = attrs.Factory(Counter)
    acks_sent: int = 0
    errors_sent: int = 0
    #: Readings published on ``<prefix>/reading/...``.
    readings_published: int = 0
    #: Readings replaced, before they were sent, by a newer reading of the same
    #: topic while the broker connection was full or down (``tantra.bus.latest``):
    #: the topic still ends on its newest value.
    readings_conflated: int = 0
    #: Reading topics whose newest payload waits for room now (a gauge).
    readings_held: int = 0
    discovery_published: int = 0
    #: Messages lost, by kind: paho's bounded queue was full (``reply``,
    #: ``discovery``, ``cluster``), or a held reading topic was evicted because
    #: more than the hub's cache size of topics were waiting (``reading``).
    publish_dropped: Counter[str] = attrs.Factory(Counter)
    cluster_published: int = 0
    #: Readings never sent to the cluster because the store shed their turn.
    cluster_unstored: int = 0
    cluster_received: int = 0
    cluster_rejected: int = 0
    retained_filled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)  # a Counter comes out as a plain dict


@attrs.define
class AuthStats:
    """Authentication and abuse limits (``tantra.security``): who got in, who did not, why."""

    #: Successful logins (and verified UDP datagrams) by transport.
    logins: Counter[str] = attrs.Factory(Counter)
    #: Refused logins by ``transport:reason`` (no_token, bad_token, wrong_kind).
    refused: Counter[str] = attrs.Factory(Counter)
    #: Readings refused because the token names another device.
    forbidden: int = 0
    #: Readings refused by ``--device-rate``.
    rate_limited: int = 0
    #: UDP datagrams dropped unanswered: no signature line, or a signature that fails.
    udp_unsigned: int = 0
    udp_bad_signature: int = 0
    #: Signed readings refused because their seq was used (or may have been) before.
    replayed: int = 0
    #: Signed readings below the replay window that the hub had accepted (stored)
    #: already: acknowledged as duplicates, not accepted again (a lost ack's retry).
    replayed_acked: int = 0
    #: Connections closed because their token was revoked or changed.
    revoked_closed: int = 0
    #: Token file reloads (by change or SIGHUP) and failed ones (old tokens kept).
    reloads: int = 0
    reload_errors: int = 0
    #: Connections refused: over ``--max-connections-per-address``; bad ``Origin``.
    connections_refused: int = 0
    origin_refused: int = 0
    #: WAMP requests refused for scope (subscribe, publish, call).
    wamp_denied: Counter[str] = attrs.Factory(Counter)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)  # a Counter comes out as a plain dict


@attrs.define
class Counters:
    """The hub's counters at the top level, each other part's under its own name.

    ``store`` is ``None`` (and absent from ``/stats``) when the hub keeps no history.
    """

    hub: HubStats = attrs.Factory(HubStats)
    wamp: WampStats = attrs.Factory(WampStats)
    udp: UdpStats = attrs.Factory(UdpStats)
    mqtt: MqttStats = attrs.Factory(MqttStats)
    auth: AuthStats = attrs.Factory(AuthStats)
    store: StoreStats | None = None
    latency: Latencies = attrs.Factory(Latencies)

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``/stats`` serves: hub counters, then one object per section."""
        out: dict[str, Any] = {
            **self.hub.as_dict(),
            "wamp": self.wamp.as_dict(),
            "udp": self.udp.as_dict(),
            "mqtt": self.mqtt.as_dict(),
            "auth": self.auth.as_dict(),
            "latency": self.latency.as_dict(),
        }
        if self.store is not None:
            out["store"] = self.store.as_dict()
        return out
