"""Every counter of the hub, in one object handed to whoever counts.

Owns: :class:`Counters`, the one place counts live: a section per part
(:class:`HubStats` for ingest and delivery, :class:`WampStats` for the
router, :class:`UdpStats` for UDP replies), built once in ``tantra.tap`` and
passed to the constructors of the hub, the transports, the outboxes and the
WAMP router. ``/stats`` serves :meth:`Counters.as_dict`, and a metrics
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
        out = attrs.asdict(self)
        for name in ("logins", "refused", "wamp_denied"):
            out[name] = dict(getattr(self, name))
        return out


@attrs.define
class Counters:
    """The hub's counters at the top level, each other part's under its own name."""

    hub: HubStats = attrs.Factory(HubStats)
    wamp: WampStats = attrs.Factory(WampStats)
    udp: UdpStats = attrs.Factory(UdpStats)
    auth: AuthStats = attrs.Factory(AuthStats)

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``/stats`` serves: hub counters, then one object per section."""
        return {
            **self.hub.as_dict(),
            "wamp": self.wamp.as_dict(),
            "udp": self.udp.as_dict(),
            "auth": self.auth.as_dict(),
        }
