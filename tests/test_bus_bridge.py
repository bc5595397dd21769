"""The bridge, the cluster and the hub's remote readings, in memory (a fake publisher, a Clock)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from zope.interface import implementer

from tantra.bus.bridge import MqttBridge
from tantra.bus.cluster import FILL_MAX_SECONDS, FILL_QUIET_SECONDS, Cluster
from tantra.bus.service import MqttBus
from tantra.bus.topics import Topics, encode_cluster_batch
from tantra.dedupe import SeqWindow
from tantra.hub import Batch, Hub, ISink, Remote
from tantra.model import ParsedPayload, Reading
from tests.support.fakes import ControlledStore


class FakeClient:
    """Records what would be published; refuses once ``room`` messages are queued."""

    client_id = "hub-a"

    def __init__(self, room: int = 10**9):
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.room = room
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []

    def publish(self, topic, payload, *, qos=1, retain=False, properties=None):
        if len(self.sent) >= self.room:
            return False
        self.sent.append((topic, payload, qos, retain))
        return True

    def capacity(self):
        return max(0, self.room - len(self.sent))

    def subscribe(self, topic, options):
        self.subscribed.append(topic)

    def unsubscribe(self, topic):
        self.unsubscribed.append(topic)

    def on(self, prefix):
        return [(t, json.loads(p)) for t, p, _, _ in self.sent if t.startswith(prefix)]


@implementer(ISink)
class Recorder:
    def __init__(self):
        self.batches: list[Batch] = []

    def deliver(self, batch):
        self.batches.append(batch)

    @property
    def readings(self):
        return [r for b in self.batches for r in b.readings]


def make(clock, *, cluster=None, discovery=False, max_sensors=100_000, room=10**9, dedupe=None):
    hub = Hub(clock, max_sensors=max_sensors, dedupe=dedupe)
    client = FakeClient(room)
    topics = Topics("t1")
    bridge = MqttBridge(
        hub, client, topics, hub.counters.mqtt, discovery=discovery, max_announced=max_sensors
    )
    part = None
    if cluster:
        part = Cluster(
            hub,
            client,
            topics,
            hub.counters.mqtt,
            clock,
            name=cluster,
            member="hub-a",
            subscribe=client.subscribe,
            unsubscribe=client.unsubscribe,
        )
    bus = MqttBus(hub, client, bridge, part)
    hub.subscribe(bus)
    return hub, client, bus


def message(topic, payload, retain=False, props=None):
    return SimpleNamespace(topic=topic, payload=payload, retain=retain, properties=props)


def test_device_messages_are_acked_published_retained_and_errors_answered(clock):
    hub, client, bus = make(clock)
    dashboard = Recorder()
    hub.subscribe(dashboard)
    bus.route(message("t1/in/esp-1", b'{"sensor":"t","value":1,"seq":5}'))
    bus.route(message("t1/in/esp-1", b'{"sensor":"t","value":1,"seq":5}'))  # a re-send
    bus.route(message("t1/in/esp-1", b'[{"sensor":"a","value":2,"seq":6},{"sensor":"b"}]'))
    bus.route(message("t1/in/esp-1/h", b"oops"))
    bus.route(message("t1/in/bad name", b"1"))
    clock.advance(0)
    assert client.on("t1/ack/") == [
        ("t1/ack/esp-1", {"ack": 5}),
        ("t1/ack/esp-1", {"ack": 5}),
        ("t1/ack/esp-1", {"ack": [6]}),
    ]
    errors = client.on("t1/error/")
    assert [(t, e["error"], e.get("index")) for t, e in errors] == [
        ("t1/error/esp-1", "invalid_reading", 1),
        ("t1/error/esp-1", "invalid_json", None),
    ]
    readings = [(t, json.loads(p)["value"]) for t, p, _, retain in client.sent if retain]
    assert readings == [("t1/reading/esp-1/t", 1), ("t1/reading/esp-1/a", 2)]
    assert [r.key for r in dashboard.readings] == [("esp-1", "t"), ("esp-1", "a")]
    stats = hub.counters.mqtt.as_dict()
    assert (stats["received"], stats["acks_sent"], stats["errors_sent"]) == (5, 3, 2)
    assert stats["rejected"] == {"invalid_reading": 1, "invalid_json": 1, "invalid_topic": 1}
    assert hub.stats.rejected["invalid_topic"] == 1
    assert hub.stats.duplicates == 1


def test_a_full_publish_queue_is_counted_not_raised(clock):
    # Replies beyond the window wait in order (tests/test_bus_latest.py bounds
    # and counts them); readings are held, the newest per topic, never lost.
    hub, client, bus = make(clock, room=1)
    for seq in range(3):
        bus.route(message("t1/in/d", b'{"sensor":"t","value":%d,"seq":%d}' % (seq, seq)))
    clock.advance(0)
    stats = hub.counters.mqtt
    assert stats.publish_dropped == {}
    assert (stats.readings_conflated, stats.readings_held, stats.readings_published) == (2, 1, 0)
    assert bus.bridge.waiting_count == 3  # two replies, one reading topic
    assert hub.stats.accepted == 3
    client.room = 10
    assert bus.bridge.drain() == 0
    assert [ack["ack"] for _, ack in client.on("t1/ack/")] == [0, 1, 2]
    readings = client.on("t1/reading/")
    assert [(t, r["value"]) for t, r in readings] == [("t1/reading/d/t", 2)]
    assert (stats.readings_held, stats.readings_published) == (0, 1)


def test_discovery_once_per_sensor_and_bounded_by_the_cache_size(clock):
    hub, client, bus = make(clock, discovery=True, max_sensors=1000)
    for _ in range(3):
        bus.route(message("t1/in/d", b'{"sensor":"t","value":1,"unit":"C"}'))
    clock.advance(0)
    configs = client.on("homeassistant/")
    assert [t for t, _ in configs] == ["homeassistant/sensor/tantra/d_t/config"]
    # 10^5 distinct device names: the announced set stays at the hub's cache size.
    for n in range(100_000):
        bus.route(message(f"t1/in/dev{n}/s", b"1"))
        if n % 5000 == 0:
            clock.advance(0)
            client.sent.clear()  # the fake's record, not the hub's memory
    clock.advance(0)
    assert bus.bridge.announced_count == 1000
    assert hub.sensor_count() == 1000
    assert hub.counters.mqtt.discovery_published == 100_001


def test_ten_to_the_five_device_names_on_every_input_path_stay_bounded(clock):
    """The in, cluster and retained-fill topics, each with 10^5 distinct device names
    (the value topic: the discovery test): the hub's cache and seq windows stay at
    their bounds, the bridge keeps no per-device state, and a good device alongside
    is still acked and served."""
    dedupe = SeqWindow(max_devices=1000)
    hub, client, bus = make(clock, cluster="c1", max_sensors=1000, dedupe=dedupe)
    dashboard = Recorder()
    hub.subscribe(dashboard)
    names = 100_000

    def drain():
        clock.advance(0)
        client.sent.clear()
        dashboard.batches.clear()

    for n in range(names):
        bus.route(message(f"t1/in/j{n}", b'{"sensor":"s","value":1,"seq":1}'))
        if n % 5000 == 0:
            drain()
    drain()
    now = hub.now_ms()
    for start in range(0, names, 1000):
        batch = [Reading(f"c{n}", "s", 1, now, seq=1) for n in range(start, start + 1000)]
        bus.route(message("t1/cluster/c1/hub-b", encode_cluster_batch(batch)))
        drain()
    bus.cluster.start_fill()
    for n in range(names):
        body = b'{"device":"r%d","sensor":"s","value":1,"ts":%d}' % (n, now - 1)
        bus.route(message(f"t1/reading/r{n}/s", body, retain=True))
        if n % 5000 == 0:
            drain()
    drain()
    stats = hub.counters.mqtt
    assert stats.received == names
    assert (stats.cluster_received, stats.retained_filled) == (names, names)
    assert hub.sensor_count() == 1000
    assert hub.device_count() == 1000
    assert len(dedupe) == 1000
    assert bus.bridge.announced_count == 0
    # A good device alongside: acked, published, on the dashboard, re-send a duplicate.
    for _ in range(2):
        bus.route(message("t1/in/esp-1", b'{"sensor":"t","value":2,"seq":7}'))
    clock.advance(0)
    assert client.on("t1/ack/") == [("t1/ack/esp-1", {"ack": 7})] * 2
    assert [t for t, _, _, retain in client.sent if retain] == ["t1/reading/esp-1/t"]
    assert [r.key for r in dashboard.readings] == [("esp-1", "t")]
    assert hub.reading_of("esp-1", "t").value == 2
    assert hub.stats.duplicates == 1


def test_remote_readings_reach_sinks_and_cache_but_not_local(clock):
    hub = Hub(clock)
    sink = Recorder()
    hub.subscribe(sink)
    origin = object()
    local = Reading("a", "t", 1, 1, seq=1)
    remote = Reading("b", "t", 2, 1, seq=1)
    hub.accept(ParsedPayload((local,), ()))
    outcome = hub.accept(ParsedPayload((remote,), ()), origin=origin, remote=True)
    hub.flush()
    (batch,) = sink.batches
    assert list(batch.readings) == [local, remote]
    assert list(batch.local()) == [local]
    assert [o for _, o in batch.with_origins()] == [None, Remote(origin)]
    assert hub.reading_of("b", "t") == remote
    assert outcome.acks == [1]
    # A remote re-send of what this hub has already is a duplicate everywhere.
    again = hub.accept(ParsedPayload((remote,), ()), origin=origin, remote=True)
    assert again.duplicates == [remote]


def test_cluster_publishes_only_what_this_hub_accepted(clock):
    hub, client, bus = make(clock, cluster="c1")
    assert client.subscribed == ["t1/cluster/c1/+", "$share/c1/t1/in/#"]
    bus.route(message("t1/in/d", b'{"sensor":"t","value":1}'))
    clock.advance(0)
    other = [Reading("x", "t", 5, hub.now_ms(), seq=1), Reading("x", "u", 6, hub.now_ms())]
    bus.route(message("t1/cluster/c1/hub-b", encode_cluster_batch(other)))
    clock.advance(0)
    sent = client.on("t1/cluster/")
    assert [(t, [r["device"] for r in p]) for t, p in sent] == [("t1/cluster/c1/hub-a", ["d"])]
    assert [t for t, _, _, _ in client.sent if t.startswith("t1/reading/")] == ["t1/reading/d/t"]
    assert hub.reading_of("x", "u").value == 6
    assert hub.counters.mqtt.cluster_received == 2
    bus.route(message("t1/cluster/c1/hub-b", b"not json"))
    assert hub.counters.mqtt.cluster_rejected == 1


def test_cluster_splits_a_large_turn(clock):
    hub, client, _bus = make(clock, cluster="c1")
    hub.accept(ParsedPayload(tuple(Reading("d", f"s{n}", n, 1) for n in range(2500)), ()))
    clock.advance(0)
    assert [len(p) for _, p in client.on("t1/cluster/")] == [1000, 1000, 500]


def test_retained_fill_takes_unknown_or_newer_readings_then_unsubscribes(clock):
    hub, client, bus = make(clock, cluster="c1")
    cluster = bus.cluster
    now = hub.now_ms()
    hub.accept(ParsedPayload((Reading("known", "t", 1, now),), ()))
    clock.advance(0)
    cluster.start_fill()
    assert "t1/reading/+/+" in client.subscribed

    def retained(device, value, ts, retain=True):
        body = b'{"device":"%s","sensor":"t","value":%d,"ts":%d}' % (device.encode(), value, ts)
        bus.route(message(f"t1/reading/{device}/t", body, retain=retain))

    retained("new", 7, now - 100)
    retained("known", 9, now - 100)  # older than ours: ignored
    retained("live", 3, now, retain=False)  # live: the cluster topic brings those
    clock.advance(0)
    assert hub.reading_of("new", "t").value == 7
    assert hub.reading_of("known", "t").value == 1
    assert hub.reading_of("live", "t") is None
    assert hub.counters.mqtt.retained_filled == 1
    clock.advance(FILL_QUIET_SECONDS + 0.01)
    assert client.unsubscribed == ["t1/reading/+/+"]
    retained("late", 1, now)
    assert hub.reading_of("late", "t") is None
    # With no retained message at all the fill still ends.
    cluster.start_fill()
    clock.advance(FILL_MAX_SECONDS)
    assert client.unsubscribed == ["t1/reading/+/+"] * 2
    # The filled readings are Remote: never published again by this hub.
    assert [t for t, _, _, _ in client.sent if "/new/" in t] == []


# -- with a history store: acks after commit, remote readings outside the commit turns --


def committed(clock, **kwargs):
    """``make`` with a ControlledStore behind the hub's commit gate."""
    store = ControlledStore()
    hub, client, bus = make(clock, **kwargs)
    hub.commit_through(store)
    return hub, client, bus, store


def test_mqtt_acks_wait_for_the_commit_and_none_for_what_was_not_stored(clock):
    hub, client, bus, store = committed(clock)
    dashboard = Recorder()
    hub.subscribe(dashboard)
    bus.route(message("t1/in/esp-1", b'[{"sensor":"t","value":1,"seq":5},{"sensor":"x"}]'))
    clock.advance(0)
    assert [r.seq for r in dashboard.readings] == [5], "shown at once"
    assert client.on("t1/ack/") == client.on("t1/error/") == [], "replies wait for the commit"
    bus.route(message("t1/in/esp-1", b'{"sensor":"t","value":1,"seq":5}'))  # re-sent, uncommitted
    assert client.on("t1/ack/") == []
    store.commit()
    assert client.on("t1/ack/") == [("t1/ack/esp-1", {"ack": [5]}), ("t1/ack/esp-1", {"ack": 5})]
    assert [e["index"] for _, e in client.on("t1/error/")] == [1]
    # A turn the store sheds: errors yes, no ack; the device's re-send is stored afresh.
    bus.route(message("t1/in/esp-1", b'[{"sensor":"t","value":2,"seq":6},{"sensor":"y"}]'))
    clock.advance(0)
    store.shed()
    assert len(client.on("t1/ack/")) == 2
    assert [e["index"] for _, e in client.on("t1/error/")] == [1, 1]
    bus.route(message("t1/in/esp-1", b'{"sensor":"t","value":2,"seq":6}'))
    clock.advance(0)
    assert [r.seq for r in store.turns[-1][0]] == [6]
    store.commit()
    assert client.on("t1/ack/")[-1] == ("t1/ack/esp-1", {"ack": 6})
    assert hub.counters.mqtt.acks_sent == 3


def test_remote_readings_are_never_submitted_and_count_as_seen_with_a_store(clock):
    hub, client, bus, store = committed(clock, cluster="c1")
    now = hub.now_ms()
    # A turn with only remote readings submits nothing and makes no commit turn.
    bus.route(
        message("t1/cluster/c1/hub-b", encode_cluster_batch([Reading("b", "t", 1, now, seq=7)]))
    )
    clock.advance(0)
    assert store.turns == []
    assert hub.reading_of("b", "t").value == 1
    # A mixed turn submits only the local readings; the cluster gets only those.
    bus.route(message("t1/in/a", b'{"sensor":"t","value":2,"seq":1}'))
    bus.route(
        message("t1/cluster/c1/hub-b", encode_cluster_batch([Reading("b", "t", 3, now, seq=8)]))
    )
    clock.advance(0)
    assert [[r.key for r in readings] for readings, _ in store.turns] == [[("a", "t")]]
    assert client.on("t1/cluster/") == [], "the cluster waits for the commit"
    # The device of the remote reading fails over here and re-sends seq 7: the other
    # hub accepted (and stores) it, so it is a duplicate, acked at once, not stored again.
    bus.route(message("t1/in/b", b'{"sensor":"t","value":1,"seq":7}'))
    assert client.on("t1/ack/b") == [("t1/ack/b", {"ack": 7})]
    clock.advance(0)
    assert len(store.turns) == 1
    # A cluster copy of a reading still waiting here for its commit is a duplicate too,
    # and a shed turn is still taken afresh on re-send (the remote copy did not mark it).
    bus.route(message("t1/in/c", b'{"sensor":"t","value":4,"seq":1}'))
    bus.route(
        message("t1/cluster/c1/hub-b", encode_cluster_batch([Reading("c", "t", 4, now, seq=1)]))
    )
    assert hub.stats.duplicates == 2
    clock.advance(0)
    store.shed()
    bus.route(message("t1/in/c", b'{"sensor":"t","value":4,"seq":1}'))
    clock.advance(0)
    assert [r.key for r in store.turns[-1][0]] == [("c", "t")]
    assert hub._gate.uncommitted == 2  # a's seq 1 and c's seq 1; never a remote one
    # Only local readings, and only committed ones, reach the cluster: never c's shed turn.
    store.commit(0)
    assert [p[0]["device"] for _, p in client.on("t1/cluster/")] == ["a"]


def test_the_cache_fill_runs_on_the_first_connect_and_after_a_lost_session_only(clock):
    hub = Hub(clock)
    hooks = {}

    def client_factory(on_message, on_connected, on_room):
        hooks["connected"] = on_connected
        return FakeClient()

    bus = MqttBus.build(
        hub,
        clock,
        client_factory,
        lambda client: MqttBridge(hub, client, Topics("t1"), hub.counters.mqtt),
        "c1",
    )
    fills = lambda: bus.client.subscribed.count("t1/reading/+/+")  # noqa: E731
    hooks["connected"](True)  # this process's first connect: its cache is empty
    assert fills() == 1
    clock.advance(FILL_MAX_SECONDS)
    # A reconnect to a session the broker kept: the cluster messages queued meanwhile
    # come with their seqs; retained readings (no seq) on top would be shown twice.
    hooks["connected"](True)
    assert fills() == 1
    hooks["connected"](False)  # the broker lost the session (or it expired): fill again
    assert fills() == 2


class StoreWithIds(ControlledStore):
    def __init__(self, first):
        from tantra.store.ids import CounterIds

        super().__init__()
        self.ids = CounterIds(first)


def test_cluster_readings_keep_the_accepting_hubs_id_and_are_never_numbered_here(clock):
    hub, client, bus = make(clock, cluster="c1")
    store = StoreWithIds(100)
    hub.keep_history(store)
    dashboard = Recorder()
    hub.subscribe(dashboard)
    # Local readings are numbered from this hub's store; what goes to the cluster carries the id.
    bus.route(message("t1/in/a", b'{"sensor":"t","value":1,"seq":1}'))
    clock.advance(0)
    store.commit()
    assert [p for _, p in client.on("t1/cluster/")] == [
        [{"device": "a", "sensor": "t", "value": 1, "ts": hub.now_ms(), "seq": 1, "id": 100}]
    ]
    # Remote readings keep the id they carry (or have none); they take no id from this store.
    now = hub.now_ms()
    batch = b'[{"device":"b","sensor":"t","value":2,"ts":%d,"seq":3,"id":7},' % now
    batch += b'{"device":"b","sensor":"u","value":3,"ts":%d,"seq":4}]' % now
    bus.route(message("t1/cluster/c1/hub-b", batch))
    clock.advance(0)
    assert [(r.key, r.id) for r in dashboard.readings[1:]] == [(("b", "t"), 7), (("b", "u"), None)]
    assert b'"id":7}' in dashboard.readings[1].json
    assert hub.last_id == 100 and len(store.turns) == 1
    # An id that is not a positive integer makes the element invalid, not the message.
    bad = b'[{"device":"b","sensor":"v","value":1,"id":"x"},{"device":"b","sensor":"w","value":1,"id":0},'
    bad += b'{"device":"b","sensor":"z","value":1,"id":true},{"device":"b","sensor":"y","value":1}]'
    bus.route(message("t1/cluster/c1/hub-b", bad))
    clock.advance(0)
    assert hub.counters.mqtt.cluster_rejected == 3
    assert [r.key for r in dashboard.readings[3:]] == [("b", "y")]


def test_a_retained_reading_keeps_its_id(clock):
    hub, _client, bus = make(clock, cluster="c1")
    bus.cluster.start_fill()
    now = hub.now_ms()
    payload = b'{"device":"b","sensor":"t","value":2,"ts":%d,"seq":3,"id":9}' % now
    bus.route(message("t1/reading/b/t", payload, retain=True))
    clock.advance(0)
    assert hub.reading_of("b", "t").id == 9
    bus.route(message("t1/reading/b/u", payload.replace(b'"id":9', b'"id":-1'), retain=True))
    assert hub.reading_of("b", "u") is None and hub.counters.mqtt.cluster_rejected == 1


def test_a_shed_turn_never_reaches_the_cluster_and_a_committed_one_does_in_order(clock):
    hub, client, bus, store = committed(clock, cluster="c1")
    dashboard = Recorder()
    hub.subscribe(dashboard)
    for seq in (1, 2, 3):  # three turns: the store sheds the second
        bus.route(message("t1/in/a", b'{"sensor":"t","value":%d,"seq":%d}' % (seq, seq)))
        clock.advance(0)
    bus.route(message("t1/in/b", b'{"sensor":"t","value":9}'))  # no seq: its turn waits too
    clock.advance(0)
    assert [r.value for r in dashboard.readings] == [1, 2, 3, 9], "local dashboards at once"
    assert len(client.on("t1/reading/")) == 4, "retained values at once"
    assert client.on("t1/cluster/") == [], "nothing before its commit"
    store.shed(1)
    assert client.on("t1/cluster/") == []
    store.commit(0)
    store.commit(2)
    store.shed(3)
    assert [[r["seq"] for r in p] for _, p in client.on("t1/cluster/")] == [[1], [3]]
    stats = hub.counters.mqtt
    assert (stats.cluster_published, stats.cluster_unstored) == (2, 2)
    assert client.on("t1/ack/a") == [("t1/ack/a", {"ack": 1}), ("t1/ack/a", {"ack": 3})]


def test_a_failover_after_a_shed_turn_loses_no_acked_reading(clock):
    # Hub A sheds the turn with seq 5 and dies; the device re-sends to hub B, which
    # never heard of seq 5 from the cluster, so it stores it and acks after its commit.
    _, client_a, bus_a, store_a = committed(clock, cluster="c1")
    _, client_b, bus_b, store_b = committed(clock, cluster="c1")
    bus_a.route(message("t1/in/esp", b'{"sensor":"t","value":1,"seq":5}'))
    clock.advance(0)
    store_a.shed()
    for topic, payload, _, _ in client_a.sent:
        if topic.startswith("t1/cluster/"):
            bus_b.route(message(topic, payload))
    assert client_a.on("t1/ack/") == []
    bus_b.route(message("t1/in/esp", b'{"sensor":"t","value":1,"seq":5}'))
    clock.advance(0)
    assert [[r.seq for r in readings] for readings, _ in store_b.turns] == [[5]]
    store_b.commit()
    assert client_b.on("t1/ack/esp") == [("t1/ack/esp", {"ack": 5})]
    # A committed turn does reach B, and B acks the re-send as a duplicate without storing it.
    bus_a.route(message("t1/in/esp", b'{"sensor":"t","value":2,"seq":6}'))
    clock.advance(0)
    store_a.commit()
    for topic, payload, _, _ in client_a.sent:
        if topic.startswith("t1/cluster/"):
            bus_b.route(message(topic, payload))
    bus_b.route(message("t1/in/esp", b'{"sensor":"t","value":2,"seq":6}'))
    clock.advance(0)
    assert client_b.on("t1/ack/esp")[-1] == ("t1/ack/esp", {"ack": 6})
    assert len(store_b.turns) == 1
