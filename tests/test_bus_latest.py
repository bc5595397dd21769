"""Retained readings under back-pressure (tantra.bus.latest, and the bridge around it), in memory.

A fake publisher with an in-flight window refuses (capacity 0, publish
False) when full; ``ack(n)`` plays the broker's PUBACKs. No sockets, no time.
"""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest
from twisted.internet.task import Clock

from tantra.bus.bridge import MqttBridge
from tantra.bus.latest import LatestOut
from tantra.bus.topics import Topics
from tantra.counters import MqttStats
from tantra.hub import Hub
from tantra.model import ParsedPayload, Reading


class WindowPublisher:
    """A broker connection with ``window`` places; refuses a publish when they are taken."""

    def __init__(self, window: int, *, connected: bool = True):
        self.window = window
        self.connected = connected
        self.in_flight: list[tuple[str, bytes]] = []
        self.delivered: list[tuple[str, bytes]] = []  # what the broker has, in order
        self.refused = 0

    def capacity(self) -> int:
        return max(0, self.window - len(self.in_flight)) if self.connected else 0

    def publish(self, topic, payload, *, qos=1, retain=False, properties=None) -> bool:
        if not self.connected or len(self.in_flight) >= self.window:
            self.refused += 1
            return False
        self.in_flight.append((topic, payload))
        return True

    def subscribe(self, topic, options) -> None:
        pass

    def ack(self, count: int | None = None) -> None:
        count = len(self.in_flight) if count is None else count
        self.delivered += self.in_flight[:count]
        del self.in_flight[:count]

    def retained(self) -> dict[str, bytes]:
        """What a late subscriber gets: the last message per topic the broker received."""
        last: dict[str, bytes] = {}
        for topic, payload in self.delivered:
            last[topic] = payload
        return last


def run_until_drained(out: LatestOut, publisher: WindowPublisher, limit: int = 100_000) -> None:
    for _ in range(limit):
        publisher.ack()
        if out.drain() == 0 and not publisher.in_flight:
            return
    raise AssertionError("never drained")


def test_with_room_every_message_is_sent_at_once_in_order():
    stats = MqttStats()
    publisher = WindowPublisher(100)
    out = LatestOut(publisher, stats, qos=1, max_topics=10)
    out.send([("a", b"1"), ("a", b"2"), ("b", b"3")])
    assert publisher.in_flight == [("a", b"1"), ("a", b"2"), ("b", b"3")]
    assert (stats.readings_published, stats.readings_conflated, stats.readings_held) == (3, 0, 0)
    assert out.held == 0


def test_the_newest_value_per_topic_is_the_one_the_broker_ends_with():
    stats = MqttStats()
    publisher = WindowPublisher(4)
    out = LatestOut(publisher, stats, qos=1, max_topics=100)
    rng = random.Random(14)
    topics = [f"t/reading/d/s{i}" for i in range(10)]
    newest: dict[str, bytes] = {}
    sent = 0
    for step in range(5000):
        batch = []
        for _ in range(rng.randint(1, 30)):
            topic = rng.choice(topics)
            payload = b"%d" % sent
            sent += 1
            newest[topic] = payload
            batch.append((topic, payload))
        out.send(batch)
        if step % 7 == 0:  # the broker acks now and then, fewer than were sent
            publisher.ack(rng.randint(0, 4))
            out.drain()
    # Mid-way, the window was far too small: most payloads were replaced.
    assert stats.readings_conflated > sent / 2
    run_until_drained(out, publisher)
    assert publisher.retained() == newest
    # Each topic's messages went out in the order the hub accepted them.
    for topic in topics:
        values = [int(p) for t, p in publisher.delivered if t == topic]
        assert values == sorted(values)
    # Nothing lost: each payload was either sent or replaced by a newer one.
    assert stats.readings_published + stats.readings_conflated == sent
    assert stats.publish_dropped == {}
    assert stats.readings_held == 0
    # Never more in flight than the window: held payloads waited, none was refused.
    assert publisher.refused == 0


def test_held_topics_go_out_in_turn_so_a_hot_sensor_does_not_starve_the_others():
    stats = MqttStats()
    publisher = WindowPublisher(1)
    out = LatestOut(publisher, stats, qos=1, max_topics=100)
    out.send([("busy", b"0")])  # takes the one place
    out.send([("busy", b"1"), ("quiet-a", b"a"), ("quiet-b", b"b")])
    for value in range(2, 50):
        publisher.ack()
        out.drain()
        out.send([("busy", b"%d" % value)])
    run_until_drained(out, publisher)
    order = [t for t, _ in publisher.delivered]
    # The quiet topics went out within the first turns, not after the hot one's backlog.
    assert order.index("quiet-a") <= 2 and order.index("quiet-b") <= 3
    assert publisher.retained() == {"busy": b"49", "quiet-a": b"a", "quiet-b": b"b"}


def test_while_disconnected_the_newest_per_topic_waits_and_goes_out_after_the_connect():
    stats = MqttStats()
    publisher = WindowPublisher(10, connected=False)
    out = LatestOut(publisher, stats, qos=1, max_topics=100)
    for value in range(1000):
        out.send([("a", b"a%d" % value), ("b", b"b%d" % value)])
    assert (out.held, stats.readings_held, stats.readings_conflated) == (2, 2, 1998)
    assert out.drain() == 2  # still down: nothing sent
    publisher.connected = True
    assert out.drain() == 0
    publisher.ack()
    assert publisher.retained() == {"a": b"a999", "b": b"b999"}
    assert stats.readings_published == 2


def test_a_publish_the_client_refuses_keeps_its_place_first_in_line():
    class QueueFull(WindowPublisher):
        """Says there is room, refuses anyway: paho's own queue is full of replies."""

        def capacity(self) -> int:
            return 5

        def publish(self, topic, payload, **kwargs) -> bool:
            self.refused += 1
            return False

    stats = MqttStats()
    publisher = QueueFull(5)
    out = LatestOut(publisher, stats, qos=1, max_topics=100)
    out.send([("a", b"1"), ("b", b"2"), ("a", b"3")])
    assert out.held == 2
    out.drain()
    assert out.held == 2
    room = WindowPublisher(5)
    out._publisher = room  # the queue emptied
    out.drain()
    assert room.in_flight == [("a", b"3"), ("b", b"2")]
    assert stats.publish_dropped == {}


def test_distinct_topics_are_bounded_the_oldest_held_is_evicted_and_counted():
    stats = MqttStats()
    publisher = WindowPublisher(10, connected=False)
    out = LatestOut(publisher, stats, qos=1, max_topics=1000)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(100_000):
            out.send([(f"t/reading/dev-{i}/s", b'{"value":1}')])
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.held == stats.readings_held == 1000
    assert stats.publish_dropped == {"reading": 99_000}
    # 1000 held topics and their strings: well under 1 MB, not 10^5 of them.
    assert after - before < 1_000_000
    publisher.connected = True
    run_until_drained(out, publisher)
    # The topics kept are the newest 1000 (the oldest held were evicted).
    assert sorted(publisher.retained()) == sorted(
        f"t/reading/dev-{i}/s" for i in range(99_000, 100_000)
    )


def test_max_topics_must_be_positive():
    with pytest.raises(ValueError):
        LatestOut(WindowPublisher(1), MqttStats(), qos=1, max_topics=0)


# -- the bridge: readings conflated, replies and discovery never ------------------------


def reading(device: str, sensor: str, value: float) -> Reading:
    return Reading(device=device, sensor=sensor, value=value, unit="C", ts=1_764_000_000_000)


def bridge_on(publisher: WindowPublisher, *, discovery: bool = False, max_sensors: int = 100):
    clock = Clock()
    hub = Hub(clock, max_sensors=max_sensors)
    bridge = MqttBridge(
        hub,
        publisher,  # type: ignore[arg-type]
        Topics("t1"),
        hub.counters.mqtt,
        discovery=discovery,
        max_announced=max_sensors,
    )
    return clock, hub, bridge


def test_bridge_readings_end_on_the_newest_value_replies_are_never_conflated():
    publisher = WindowPublisher(3)
    _, hub, bridge = bridge_on(publisher)
    stats = hub.counters.mqtt
    for value in range(200):
        bridge.publish([reading("d", "t", value), reading("d", "h", -value)])
        # Every ack of the device is published, none replaced by a later one.
        bridge._reply("d", [{"ack": value}])
        if value % 10 == 0:
            publisher.ack(2)
            bridge.drain()
    # The window was full most of the time: replies waited in order, each its own.
    assert stats.acks_sent == 200
    for _ in range(1000):
        publisher.ack()
        if bridge.drain() == 0 and not publisher.in_flight:
            break
    retained = publisher.retained()
    assert json.loads(retained["t1/reading/d/t"])["value"] == 199
    assert json.loads(retained["t1/reading/d/h"])["value"] == -199
    acks = [json.loads(p)["ack"] for t, p in publisher.delivered if t == "t1/ack/d"]
    assert acks == list(range(200))
    assert stats.readings_published + stats.readings_conflated == 400
    assert stats.readings_conflated > 0
    assert stats.publish_dropped == {}


def test_replies_and_held_readings_take_turns_so_neither_starves():
    stats = MqttStats()
    publisher = WindowPublisher(2)
    out = LatestOut(publisher, stats, qos=1, max_topics=100)
    out.send([("r/a", b"0"), ("r/b", b"0")])  # the window is full
    for value in range(1, 50):  # a flood: each turn a reading and three acks
        out.send([("r/a", b"%d" % value)])
        for n in range(3):
            assert out.reply("ack/d", b"%d" % (value * 3 + n))
    publisher.ack()
    out.drain()
    # One reply and one reading went out: readings are not stuck behind 147 acks.
    assert [t for t, _ in publisher.in_flight] == ["ack/d", "r/a"]
    run_until_drained(out, publisher)
    acks = [int(p) for t, p in publisher.delivered if t == "ack/d"]
    assert acks == list(range(3, 150))  # every ack, in order, none merged
    assert publisher.retained()["r/a"] == b"49"


def test_replies_beyond_their_bound_are_refused_for_the_caller_to_count():
    stats = MqttStats()
    publisher = WindowPublisher(1, connected=False)
    out = LatestOut(publisher, stats, qos=1, max_topics=10, max_replies=5)
    assert [out.reply("ack/d", b"%d" % n) for n in range(7)] == [True] * 5 + [False] * 2
    assert out.waiting == 5
    publisher.connected = True
    run_until_drained(out, publisher)
    assert [p for _, p in publisher.delivered] == [b"0", b"1", b"2", b"3", b"4"]


def test_bridge_counts_a_reply_its_queue_refused_as_dropped():
    publisher = WindowPublisher(1, connected=False)
    _, hub, bridge = bridge_on(publisher)
    bridge._latest._max_replies = 3
    bridge._reply("d", [{"ack": n} for n in range(5)] + [{"error": "invalid_json"}])
    stats = hub.counters.mqtt
    assert (stats.acks_sent, stats.errors_sent, stats.publish_dropped) == (3, 0, {"reply": 3})


def test_bridge_reply_flood_while_the_broker_is_down_is_held_to_the_default_bound():
    # A device that floods while the broker never takes anything: the bridge's
    # own (default) bound holds, not only one a test sets.
    publisher = WindowPublisher(1, connected=False)
    _, hub, bridge = bridge_on(publisher)
    bound = bridge._latest._max_replies
    assert bound == 10_000  # the client's old queue bound (max_queued)
    bridge._reply("d", [{"ack": n} for n in range(bound + 500)])
    stats = hub.counters.mqtt
    assert bridge.waiting_count == bound
    assert (stats.acks_sent, stats.publish_dropped) == (bound, {"reply": 500})


def test_bridge_replies_are_sent_while_readings_wait():
    publisher = WindowPublisher(2)
    _, hub, bridge = bridge_on(publisher)
    bridge.publish([reading("d", "t", v) for v in range(10)])
    assert bridge.held_count == 1  # 2 in flight, the rest conflated into one
    publisher.ack()
    bridge._reply("d", [{"ack": 1}, {"ack": 2}])  # room for both: straight to the client
    assert [t for t, _ in publisher.in_flight] == ["t1/ack/d", "t1/ack/d"]
    assert hub.counters.mqtt.acks_sent == 2
    assert bridge.drain() == 1  # no room left: the reading still waits
    publisher.ack()
    assert bridge.drain() == 0
    assert json.loads(publisher.in_flight[-1][1])["value"] == 9


def test_bridge_discovery_keeps_its_semantics_while_readings_are_held():
    publisher = WindowPublisher(1, connected=False)
    _, hub, bridge = bridge_on(publisher, discovery=True)
    bridge.publish([reading("d", "t", 1)])
    # Refused while down: counted, not remembered, tried again with the next reading.
    assert hub.counters.mqtt.publish_dropped == {"discovery": 1}
    assert bridge.announced_count == 0
    publisher.connected = True
    publisher.window = 10
    bridge.publish([reading("d", "t", 2)])
    topics = [t for t, _ in publisher.in_flight]
    assert topics.count("homeassistant/sensor/tantra/d_t/config") == 1
    assert json.loads(publisher.in_flight[0][1])["value"] == 2  # the held one, newest


def test_bridge_10_to_the_5_sensor_names_cost_the_cache_size():
    publisher = WindowPublisher(10, connected=False)
    _, hub, bridge = bridge_on(publisher, max_sensors=1000)
    for i in range(100):
        bridge.publish([reading(f"dev-{i}", f"s{j}", 1.0) for j in range(1000)])
    assert bridge.held_count == 1000
    assert hub.counters.mqtt.publish_dropped == {"reading": 99_000}


def test_through_the_hub_the_bus_sink_conflates_too():
    from tantra.bus.service import MqttBus

    publisher = WindowPublisher(1)
    clock, hub, bridge = bridge_on(publisher)
    bus = MqttBus(hub, publisher, bridge, None)  # type: ignore[arg-type]
    hub.subscribe(bus)
    for value in range(5):
        hub.accept(ParsedPayload((reading("d", "t", value),), ()), source="test")
        clock.advance(0)
    run = 0
    while bridge.drain() or publisher.in_flight:
        publisher.ack()
        run += 1
        assert run < 100
    assert [json.loads(p)["value"] for _, p in publisher.delivered] == [0, 4]


def test_a_new_value_never_overtakes_a_held_older_one_of_the_same_topic():
    # Room frees (PUBACKs) but the drain has not run yet when the next turn
    # comes: the new value must not go out ahead of the held older one.
    stats = MqttStats()
    publisher = WindowPublisher(1)
    out = LatestOut(publisher, stats, qos=1, max_topics=10)
    out.send([("a", b"1"), ("a", b"2")])  # 1 in flight, 2 held
    publisher.ack()  # room, no drain
    out.send([("a", b"3"), ("b", b"4")])
    run_until_drained(out, publisher)
    assert publisher.retained() == {"a": b"3", "b": b"4"}
    assert [p for t, p in publisher.delivered if t == "a"] == [b"1", b"3"]
