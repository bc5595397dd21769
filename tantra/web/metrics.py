"""``GET /metrics``: the hub's counters in the Prometheus text format.

Owns: :class:`HubCollector`, which turns the one
:class:`~tantra.counters.Counters` object (and a few live gauges) into metric
families at scrape time, and :class:`MetricsResource`, which serves them from
a private ``CollectorRegistry``. Nothing counts twice: the hub and its parts
count into ``Counters`` as they always do; a scrape only reads it.

Why not ``prometheus_client.twisted.MetricsResource``: it renders in a
thread pool, and reading the hub's plain integers and dicts from another
thread races the reactor. Here the scrape runs in the reactor thread (a
100k-sensor hub costs well under a millisecond: no metric has a per-device
or per-sensor label). ``prometheus_client`` is imported when the resource is
built, not when this module is.

Naming: every metric starts with ``tantra_``; counters end in ``_total``;
labels are low-cardinality (``transport``, ``reason``, ``kind``), never a
device or sensor name, so a hostile client cannot grow the scrape.

Does not own: the counters (``tantra.counters``), which parts exist
(``tantra.tap`` hands in the connection gauges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twisted.web.resource import Resource

from tantra.counters import Counters, Histogram
from tantra.hub import Hub

#: ``text/plain; version=0.0.4`` (the classic Prometheus text format).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# (name without tantra_ and _total, help, attribute of HubStats)
_HUB_COUNTERS = (
    ("readings_accepted", "Readings accepted (valid, not duplicates)", "accepted"),
    ("readings_duplicate", "Readings dropped as repeats of a seq already seen", "duplicates"),
    ("readings_delivered", "Reading deliveries to sinks (one per reading and sink)", "delivered"),
    ("readings_conflated", "Readings a slow dashboard skipped for a newer one", "conflated"),
    ("replies_suppressed", "Replies not sent to a client (rate limit or full buffer)",
     "replies_suppressed"),
    ("sensors_evicted", "Sensors the full last-value cache forgot", "sensors_evicted"),
    ("dedupe_devices_evicted", "Devices the full de-dup window forgot", "dedupe_evicted"),
)  # fmt: skip
_HUB_LABELLED = (
    ("readings_rejected", "Input rejected, by reason", "rejected", "reason"),
    ("clients_dropped", "Clients the hub disconnected, by reason", "clients_dropped", "reason"),
)
_WAMP_COUNTERS = (
    ("wamp_sessions_opened", "WAMP sessions joined", "sessions_opened"),
    ("wamp_sessions_closed", "WAMP sessions left", "sessions_closed"),
    ("wamp_protocol_violations", "WAMP protocol violations", "protocol_violations"),
    ("wamp_publications", "WAMP publications received", "publications"),
    ("wamp_events_sent", "WAMP events sent", "events_sent"),
    ("wamp_calls", "WAMP calls received", "calls"),
    ("wamp_calls_timed_out", "WAMP calls whose callee did not answer in time", "calls_timed_out"),
    ("wamp_retained_evicted", "Retained WAMP events evicted", "retained_evicted"),
)
_WAMP_LABELLED = (
    ("wamp_messages_too_large", "WAMP messages not sent: too large, by kind", "too_large", "kind"),
    ("wamp_limits_hit", "WAMP requests refused by a per-session bound", "limits_hit", "limit"),
    ("wamp_errors_sent", "WAMP ERROR messages sent, by error", "errors_sent", "error"),
    ("wamp_aborts_sent", "WAMP ABORT messages sent, by reason", "aborts_sent", "reason"),
)
_STORE_COUNTERS = (
    ("store_readings_stored", "Readings committed to the history store", "stored"),
    ("store_commits", "History store transactions committed", "commits"),
    ("store_readings_shed", "Readings the history store could not keep", "shed"),
    ("store_write_failures", "History store write failures", "write_failures"),
    ("store_readings_pruned", "Readings deleted by retention", "pruned"),
)
_MQTT_COUNTERS = (
    ("mqtt_connects", "Connections to the MQTT broker that got a CONNACK", "connects"),
    ("mqtt_connect_failures", "MQTT connection attempts that failed", "connect_failures"),
    ("mqtt_disconnects", "MQTT broker connections that ended", "disconnects"),
    ("mqtt_messages_received", "Device messages taken from <prefix>/in/...", "received"),
    ("mqtt_acks_sent", "Acks published on <prefix>/ack/...", "acks_sent"),
    ("mqtt_errors_sent", "Errors published on <prefix>/error/...", "errors_sent"),
    ("mqtt_readings_published", "Readings published on <prefix>/reading/...",
     "readings_published"),
    ("mqtt_readings_conflated",
     "Readings replaced by a newer one of the same topic before they were sent (broker full)",
     "readings_conflated"),
    ("mqtt_discovery_published", "Home Assistant discovery configs published",
     "discovery_published"),
    ("mqtt_cluster_readings_published", "Readings published to the cluster",
     "cluster_published"),
    ("mqtt_cluster_readings_unstored", "Readings not sent to the cluster: the store shed them",
     "cluster_unstored"),
    ("mqtt_cluster_readings_received", "Readings received from other hubs", "cluster_received"),
    ("mqtt_cluster_rejected", "Invalid cluster or retained messages", "cluster_rejected"),
    ("mqtt_retained_filled", "Readings taken from retained messages at connect",
     "retained_filled"),
)  # fmt: skip
_MQTT_GAUGES = (
    ("mqtt_readings_held",
     "Reading topics whose newest value waits for room on the broker connection",
     "readings_held"),
)  # fmt: skip
_MQTT_LABELLED = (
    ("mqtt_messages_rejected", "Device messages refused before parsing, by reason", "rejected",
     "reason"),
    ("mqtt_publish_dropped",
     "Messages lost: the publish queue was full, or a held reading topic was evicted; by kind",
     "publish_dropped", "kind"),
)  # fmt: skip
#: Every state the MQTT client reports (``MqttStats.state`` when ``--mqtt`` is set).
MQTT_STATES = ("connecting", "connected", "reconnecting", "disconnected")

_AUTH_COUNTERS = (
    ("auth_forbidden", "Readings refused: the token names another device", "forbidden"),
    ("auth_rate_limited", "Readings refused by --device-rate", "rate_limited"),
    ("auth_udp_unsigned", "UDP datagrams dropped: no signature (auth on)", "udp_unsigned"),
    ("auth_udp_bad_signature", "UDP datagrams dropped: a signature that fails",
     "udp_bad_signature"),
    ("auth_replayed", "Signed readings refused as replays", "replayed"),
    ("auth_replayed_acked", "Signed readings below the replay window acked as duplicates",
     "replayed_acked"),
    ("auth_revoked_closed", "Connections closed because their token was revoked",
     "revoked_closed"),
    ("auth_token_reloads", "Token file reloads", "reloads"),
    ("auth_token_reload_errors", "Token file reloads that failed (old tokens kept)",
     "reload_errors"),
    ("auth_connections_refused", "Connections refused by --max-connections-per-address",
     "connections_refused"),
    ("auth_origin_refused", "Requests refused for their browser Origin", "origin_refused"),
)  # fmt: skip


class HubCollector:
    """Reads the hub's :class:`Counters` and gauges at scrape time (reactor thread only).

    ``connections`` maps a transport name (``websocket``, ``tcp``, ``wamp``,
    ``mqtt``: the broker connection) to a function counting its open connections.
    """

    def __init__(
        self,
        counters: Counters,
        hub: Hub,
        connections: Mapping[str, Callable[[], int]] | None = None,
    ):
        self._counters = counters
        self._hub = hub
        self._connections = dict(connections or {})

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        counters, hub = self._counters, self._hub
        stats = counters.hub
        for name, help_text, attribute in _HUB_COUNTERS:
            yield CounterMetricFamily(f"tantra_{name}", help_text, value=getattr(stats, attribute))
        for name, help_text, attribute, label in _HUB_LABELLED:
            yield _labelled(CounterMetricFamily, name, help_text, label, getattr(stats, attribute))
        wamp = counters.wamp
        for name, help_text, attribute in _WAMP_COUNTERS:
            yield CounterMetricFamily(f"tantra_{name}", help_text, value=getattr(wamp, attribute))
        for name, help_text, attribute, label in _WAMP_LABELLED:
            yield _labelled(CounterMetricFamily, name, help_text, label, getattr(wamp, attribute))
        yield CounterMetricFamily(
            "tantra_udp_reply_datagrams",
            "UDP reply datagrams sent",
            value=counters.udp.reply_datagrams,
        )
        yield CounterMetricFamily(
            "tantra_udp_reply_bytes", "UDP reply bytes sent", value=counters.udp.reply_bytes
        )

        connections = GaugeMetricFamily(
            "tantra_connections", "Open client connections, by transport", labels=["transport"]
        )
        for transport, count in self._connections.items():
            connections.add_metric([transport], count())
        yield connections
        yield GaugeMetricFamily(
            "tantra_subscribers", "Sinks subscribed to the hub", value=hub.subscriber_count
        )
        yield GaugeMetricFamily(
            "tantra_sensors", "Sensors in the last-value cache", value=hub.sensor_count()
        )
        yield GaugeMetricFamily(
            "tantra_devices", "Devices with a sensor in the cache", value=hub.device_count()
        )
        yield GaugeMetricFamily(
            "tantra_hub_pending", "Readings accepted, not yet delivered", value=hub.pending_count
        )
        yield _histogram(
            "tantra_delivery_latency_seconds",
            "Seconds from a reading's acceptance to its delivery to every sink",
            counters.latency.delivery,
        )
        yield _histogram(
            "tantra_store_commit_latency_seconds",
            "Seconds a history store commit took",
            counters.latency.commit,
        )
        yield from self._store(CounterMetricFamily, GaugeMetricFamily)
        yield from self._mqtt(CounterMetricFamily, GaugeMetricFamily)
        yield from self._auth(CounterMetricFamily)

    def _auth(self, counter: Any) -> Iterator[Any]:
        """Logins, refusals and abuse limits (``Counters.auth``, ``tantra.security``)."""
        auth = self._counters.auth
        yield _labelled(counter, "auth_logins", "Successful logins, by transport", "transport",
                        auth.logins)  # fmt: skip
        refused = counter(
            "tantra_auth_refused",
            "Refused logins, by transport and reason",
            labels=["transport", "reason"],
        )
        for key, value in sorted(auth.refused.items()):
            transport, _, reason = key.partition(":")
            refused.add_metric([transport, reason], value)
        yield refused
        yield _labelled(counter, "auth_wamp_denied", "WAMP requests refused for scope",
                        "action", auth.wamp_denied)  # fmt: skip
        for name, help_text, attribute in _AUTH_COUNTERS:
            yield counter(f"tantra_{name}", help_text, value=getattr(auth, attribute))

    def _store(self, counter: Any, gauge: Any) -> Iterator[Any]:
        """The history store's section, when the hub has a store (``Counters.store``)."""
        store = getattr(self._counters, "store", None)
        if store is None:
            return
        for name, help_text, attribute in _STORE_COUNTERS:
            yield counter(f"tantra_{name}", help_text, value=getattr(store, attribute))
        yield gauge("tantra_store_queued", "Readings waiting for the store", value=store.queued)
        yield gauge("tantra_store_queue_limit", "Most readings the store queues", store.queue_limit)
        yield gauge("tantra_store_up", "1 when the store writes, else 0", int(store.state == "ok"))

    def _mqtt(self, counter: Any, gauge: Any) -> Iterator[Any]:
        """The MQTT bus's section, when the hub has ``--mqtt`` (its state is not ``off``).

        The state is one gauge per possible state, 1 for the current one (the
        Prometheus way to export an enum), plus ``tantra_mqtt_up`` for alerts.
        """
        mqtt = getattr(self._counters, "mqtt", None)
        if mqtt is None or mqtt.state == "off":
            return
        yield gauge("tantra_mqtt_up", "1 while connected to the MQTT broker, else 0",
                    int(mqtt.state == "connected"))  # fmt: skip
        states = gauge(
            "tantra_mqtt_state", "The MQTT client's state (1: current)", labels=["state"]
        )
        for state in MQTT_STATES:
            states.add_metric([state], int(mqtt.state == state))
        yield states
        for name, help_text, attribute in _MQTT_GAUGES:
            yield gauge(f"tantra_{name}", help_text, getattr(mqtt, attribute))
        for name, help_text, attribute in _MQTT_COUNTERS:
            yield counter(f"tantra_{name}", help_text, value=getattr(mqtt, attribute))
        for name, help_text, attribute, label in _MQTT_LABELLED:
            yield _labelled(counter, name, help_text, label, getattr(mqtt, attribute))


def _labelled(family: Any, name: str, help_text: str, label: str, values: Mapping) -> Any:
    metric = family(f"tantra_{name}", help_text, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([str(key)], value)
    return metric


def _histogram(name: str, help_text: str, histogram: Histogram) -> Any:
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    cumulative, buckets = 0, []
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.buckets, strict=True):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=histogram.sum)


class MetricsResource(Resource):
    """``GET /metrics`` rendered in the reactor thread from a private registry."""

    isLeaf = True

    def __init__(self, collector: HubCollector, *, process: bool = True):
        super().__init__()
        from prometheus_client import CollectorRegistry, ProcessCollector

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # a duck-typed Collector
        if process:  # memory, CPU, open files of this process, from /proc
            ProcessCollector(registry=self.registry)

    def render_GET(self, request) -> bytes:
        from prometheus_client import generate_latest

        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self.registry)
