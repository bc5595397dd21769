"""Every counter of the hub, in one object handed to whoever counts.

Owns: :class:`Counters`, the one place counts live: a section per part
(:class:`HubStats` for ingest and delivery, :class:`WampStats` for the
router, :class:`UdpStats` for UDP replies, :class:`MqttStats` for the
bus), built once in ``tantra.tap`` and passed to the constructors of the
hub, the transports, the outboxes and the WAMP router. ``/stats`` serves
:meth:`Counters.as_dict`, and a metrics
exporter reads the same object. A new part adds a section here (an attrs
class with ``as_dict``) rather than a counter dict of its own.

Does not own: gauges that are computed from live state (clients connected,
sensors cached): ``tantra.web.site`` asks their owners. Pure: plain
integers and ``Counter`` s, no Twisted.
"""

from __future__ import annotations

from collections import Counter
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
        out = attrs.asdict(self)
        out["errors_sent"] = dict(self.errors_sent)
        out["aborts_sent"] = dict(self.aborts_sent)
        out["too_large"] = dict(self.too_large)
        out["limits_hit"] = dict(self.limits_hit)
        return out


@attrs.define
class UdpStats:
    """What the hub sent back over UDP, in packets and bytes (one reply datagram per request)."""

    reply_datagrams: int = 0
    reply_bytes: int = 0

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
    discovery_published: int = 0
    #: Messages paho refused because its bounded queue was full (lost), by kind.
    publish_dropped: Counter[str] = attrs.Factory(Counter)
    cluster_published: int = 0
    cluster_received: int = 0
    cluster_rejected: int = 0
    retained_filled: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["rejected"] = dict(self.rejected)
        out["publish_dropped"] = dict(self.publish_dropped)
        return out


@attrs.define
class Counters:
    """The hub's counters at the top level, each other part's under its own name."""

    hub: HubStats = attrs.Factory(HubStats)
    wamp: WampStats = attrs.Factory(WampStats)
    udp: UdpStats = attrs.Factory(UdpStats)
    mqtt: MqttStats = attrs.Factory(MqttStats)

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``/stats`` serves: hub counters, then one object per section."""
        return {
            **self.hub.as_dict(),
            "wamp": self.wamp.as_dict(),
            "udp": self.udp.as_dict(),
            "mqtt": self.mqtt.as_dict(),
        }
