"""/metrics, /healthz, /readyz: read from the one Counters object, on the reactor thread."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.counters import LATENCY_BUCKETS, Counters, Histogram
from tantra.health import Readiness, broker_check, listeners_check, store_check
from tantra.hub import Hub
from tantra.lifecycle import ListenerService
from tantra.settings import resolve
from tantra.tap import build_service
from tantra.web.health import HealthzResource, ReadyzResource
from tantra.web.metrics import (
    _MQTT_COUNTERS,
    _MQTT_GAUGES,
    _MQTT_LABELLED,
    HubCollector,
    MetricsResource,
)


class FakeSink:
    def __init__(self):
        self.batches = []

    def deliver(self, batch):
        self.batches.append(list(batch.readings))


def scrape(resource: MetricsResource) -> dict[str, dict[tuple, float]]:
    """Every sample of a /metrics answer as {name: {labels: value}} (parsed by prometheus_client)."""
    request = DummyRequest([b""])
    body = resource.render(request).decode()
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_histogram_buckets_counts_and_sum():
    histogram = Histogram()
    histogram.observe(0.0001)  # on a bound: that bucket (le is inclusive)
    histogram.observe(0.003, count=4)
    histogram.observe(99.0)
    assert histogram.buckets[0] == 1
    assert histogram.buckets[LATENCY_BUCKETS.index(0.005)] == 4
    assert histogram.buckets[-1] == 1
    assert histogram.count == 6
    assert histogram.sum == pytest.approx(0.0001 + 0.012 + 99.0)


def test_delivery_latency_is_accept_to_the_flush_turn_on_the_injected_clock():
    clock = Clock()
    hub = Hub(clock)
    sink = FakeSink()
    hub.subscribe(sink)
    hub.ingest(b'[{"sensor":"a","value":1},{"sensor":"b","value":2}]', default_device="d")
    clock.advance(0.002)  # the flush turn runs 2 ms after the accept
    assert len(sink.batches) == 1
    latency = hub.counters.latency.delivery
    assert latency.count == 2
    assert latency.sum == pytest.approx(0.004)
    assert latency.buckets[LATENCY_BUCKETS.index(0.0025)] == 2
    hub.ingest(b'{"sensor":"a","value":"bad"}', default_device="d")
    clock.advance(1)
    assert latency.count == 2  # rejected input is never "delivered"


def test_metrics_move_with_traffic_and_never_name_a_device():
    clock = Clock()
    counters = Counters()
    hub = Hub(clock, counters=counters)
    connections = {"websocket": lambda: 3, "tcp": lambda: 1}
    resource = MetricsResource(HubCollector(counters, hub, connections), process=False)
    before = scrape(resource)
    assert before["tantra_readings_accepted_total"][()] == 0
    assert before["tantra_connections"] == {
        (("transport", "tcp"),): 1,
        (("transport", "websocket"),): 3,
    }
    for n in range(200):
        hub.ingest(b'{"sensor":"soil","value":%d,"seq":1}' % n, default_device=f"secret-dev-{n}")
    hub.ingest(b'{"sensor":"soil","value":1,"seq":1}', default_device="secret-dev-0")
    hub.ingest(b"{nope", default_device="secret-dev-0")
    clock.advance(0.001)
    counters.wamp.errors_sent["wamp.error.no_such_procedure"] += 2
    counters.latency.commit.observe(0.02)  # the store's hook
    after = scrape(resource)
    assert after["tantra_readings_accepted_total"][()] == 200
    assert after["tantra_readings_duplicate_total"][()] == 1
    assert after["tantra_readings_rejected_total"] == {(("reason", "invalid_json"),): 1}
    assert after["tantra_sensors"][()] == 200 and after["tantra_devices"][()] == 200
    assert after["tantra_wamp_errors_sent_total"] == {
        (("error", "wamp.error.no_such_procedure"),): 2
    }
    assert after["tantra_delivery_latency_seconds_count"][()] == 200
    assert after["tantra_delivery_latency_seconds_bucket"][(("le", "0.001"),)] == 200
    assert after["tantra_delivery_latency_seconds_bucket"][(("le", "0.0005"),)] == 0
    assert after["tantra_store_commit_latency_seconds_count"][()] == 1
    assert after["tantra_store_commit_latency_seconds_bucket"][(("le", "0.025"),)] == 1
    assert "tantra_store_up" not in after  # no store, no store section
    body = resource.render(DummyRequest([b""])).decode()
    assert "secret-dev" not in body and "soil" not in body
    assert all(name.startswith("tantra_") for name in after)


class FakeStoreStats:
    def __init__(self, state: str, reason: str = ""):
        self.state, self.reason = state, reason
        self.queued, self.queue_limit = 5, 100
        self.stored = self.commits = self.shed = self.write_failures = self.pruned = 0


@attrs.define
class CountersWithStore(Counters):
    """``Counters`` as the history store extends it (a ``store`` section)."""

    store: Any = None


def test_store_section_when_the_hub_has_a_store():
    clock = Clock()
    counters = CountersWithStore(store=FakeStoreStats("failing", "disk full"))
    resource = MetricsResource(HubCollector(counters, Hub(clock, counters=counters)), process=False)
    samples = scrape(resource)
    assert samples["tantra_store_up"][()] == 0
    assert samples["tantra_store_queued"][()] == 5
    assert samples["tantra_store_readings_stored_total"][()] == 0


def render_json(resource, path=b"readyz"):
    request = DummyRequest([path])
    body = json.loads(resource.render(request))
    return request.responseCode or 200, body


def test_healthz_is_always_ok():
    assert render_json(HealthzResource(), b"healthz") == (200, {"status": "ok"})


def test_readyz_names_every_failing_check_with_its_reason():
    readiness = Readiness()
    store = FakeStoreStats("failing", "database is locked")
    readiness.add("store", store_check(lambda: store))
    readiness.report("mqtt", False, "broker unreachable")
    readiness.add("broken", lambda: 1 / 0)
    status, body = render_json(ReadyzResource(readiness))
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["checks"]["store"] == {"ok": False, "reason": "store failing: database is locked"}
    assert body["checks"]["mqtt"] == {"ok": False, "reason": "broker unreachable"}
    assert body["checks"]["broken"]["reason"].startswith("check failed: ZeroDivisionError")
    store.state = "ok"
    readiness.report("mqtt", True)
    readiness = Readiness()
    readiness.add("store", store_check(lambda: store))
    readiness.add("no-store", store_check(lambda: None))
    assert render_json(ReadyzResource(readiness)) == (
        200,
        {
            "status": "ready",
            "checks": {"store": {"ok": True, "reason": ""}, "no-store": {"ok": True, "reason": ""}},
        },
    )
    with pytest.raises(ValueError, match="exists already"):
        readiness.add("store", store_check(lambda: None))


def test_listeners_are_ready_once_bound_and_unready_once_stopped():
    listener = ListenerService("tcp", "tcp:9000", lambda: None, reactor=None)
    check = listeners_check(lambda: [listener])
    assert check() == (False, "not listening: tcp tcp:9000")
    listener.running = 1
    listener.address = "127.0.0.1:9000"
    assert check() == (True, "")
    listener.running = 0
    assert check()[0] is False


def test_the_wired_hub_mounts_metrics_healthz_and_readyz():
    from twisted.internet.testing import MemoryReactorClock

    reactor = MemoryReactorClock()
    top = build_service(resolve({}, {}), reactor)
    root = top.http_root
    for path in (b"metrics", b"healthz", b"readyz"):
        assert path in root.children
    assert top.readiness.names() == ["listeners", "store"]
    status, body = render_json(root.children[b"readyz"])
    assert status == 503 and "not listening" in body["checks"]["listeners"]["reason"]
    samples = scrape(root.children[b"metrics"])
    transports = {labels[0][1] for labels in samples["tantra_connections"]}
    assert transports == {"websocket", "tcp", "wamp"}
    assert "process_resident_memory_bytes" in samples


def test_readyz_reports_the_broker_with_its_state_and_reason():
    from tantra.counters import MqttStats

    mqtt = MqttStats(state="connecting")
    readiness = Readiness()
    readiness.add("broker", broker_check(lambda: mqtt))
    assert render_json(ReadyzResource(readiness)) == (
        503,
        {"status": "not_ready", "checks": {"broker": {"ok": False, "reason": "broker connecting"}}},
    )
    mqtt.state, mqtt.reason = "reconnecting", "cannot connect to mqtt://b:1883: refused"
    _, body = render_json(ReadyzResource(readiness))
    assert body["checks"]["broker"]["reason"] == (
        "broker reconnecting: cannot connect to mqtt://b:1883: refused"
    )
    mqtt.state = "connected"  # the client clears the reason on CONNACK; ok hides it anyway
    assert render_json(ReadyzResource(readiness))[0] == 200


def test_the_broker_check_is_wired_only_with_mqtt():
    from twisted.internet.testing import MemoryReactorClock

    settings = resolve({"mqtt": "mqtt://u:secret@broker.invalid"}, {})
    top = build_service(settings, MemoryReactorClock())
    assert top.readiness.names() == ["broker", "listeners", "store"]
    status, body = render_json(top.http_root.children[b"readyz"])
    assert status == 503
    assert body["checks"]["broker"] == {"ok": False, "reason": "broker: not started"}


def test_mqtt_section_only_with_mqtt_state_as_an_enum_and_counters_total():
    clock = Clock()
    counters = Counters()
    hub = Hub(clock, counters=counters)
    resource = MetricsResource(HubCollector(counters, hub), process=False)
    assert not any(name.startswith("tantra_mqtt") for name in scrape(resource))  # no --mqtt
    mqtt = counters.mqtt
    mqtt.state, mqtt.reason = "reconnecting", "cannot connect to mqtt://b:1883"
    mqtt.connects, mqtt.connect_failures, mqtt.acks_sent = 2, 5, 7
    mqtt.rejected["invalid_topic"] += 3
    mqtt.publish_dropped["reading"] += 4
    mqtt.readings_conflated, mqtt.readings_held = 11, 3
    samples = scrape(resource)
    assert samples["tantra_mqtt_up"][()] == 0
    assert samples["tantra_mqtt_state"] == {
        (("state", "connecting"),): 0,
        (("state", "connected"),): 0,
        (("state", "reconnecting"),): 1,
        (("state", "disconnected"),): 0,
    }
    assert samples["tantra_mqtt_connects_total"][()] == 2
    assert samples["tantra_mqtt_connect_failures_total"][()] == 5
    assert samples["tantra_mqtt_acks_sent_total"][()] == 7
    assert samples["tantra_mqtt_messages_rejected_total"] == {(("reason", "invalid_topic"),): 3}
    assert samples["tantra_mqtt_publish_dropped_total"] == {(("kind", "reading"),): 4}
    assert samples["tantra_mqtt_readings_conflated_total"][()] == 11
    assert samples["tantra_mqtt_readings_held"][()] == 3
    # Every MqttStats field is exported (a new counter must not be forgotten here).
    exported = {"state", "reason"} | {attr for *_, attr in _MQTT_COUNTERS}
    exported |= {attr for _, _, attr, _ in _MQTT_LABELLED}
    exported |= {attr for *_, attr in _MQTT_GAUGES}
    assert exported == set(attrs.fields_dict(type(mqtt)))
    mqtt.state = "connected"
    samples = scrape(resource)
    assert samples["tantra_mqtt_up"][()] == 1
    assert samples["tantra_mqtt_state"][(("state", "connected"),)] == 1
