"""WAMP fan-out per turn: events grouped by subscription, encoded and framed once, written once.

Sessions answer through a real :class:`MessageOutbox` wired as the transport
wires it (``write_framed`` + the transport's ``frame_all``), so what a client
would read is decoded from WebSocket frames. Checked: each subscriber gets
its own subscription id and every event in publication order (also across
two subscriptions and around a publication with an ``exclude`` list); a
group's bytes are built once for all its subscribers and reach each in one
write; a paused subscriber conflates per (subscription, sensor) while the
others lose nothing; an event over the outgoing limit is counted and
skipped for everyone while the rest of the turn goes out.
"""

from __future__ import annotations

import itertools
import json

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from zope.interface import implementer

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.wamp.bridge import HubBridge
from tantra.wamp.limits import WampLimits
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.outbox import MessageOutbox
from tantra.wamp.parse import parse
from tantra.wamp.peer import IWampConnection
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession
from tantra.wamp.transport import frame, frame_all
from tests.support.wire import server_frames

NOW = 1_764_000_000.0
JSON, CBOR = JsonSerializer(), CBORSerializer()
SUBSCRIBED, EVENT = 33, 36
ROLES = {
    "publisher": {"features": {"publisher_exclusion": True}},
    "subscriber": {"features": {"pattern_based_subscription": True}},
}


@implementer(IWampConnection)
class FramedConnection:
    """A session's connection as the transport makes it: framed writes, decoded here."""

    def __init__(self, name, clock, limits, serializer=None):
        self.peer = name
        # Autobahn copies the factory's serializer per connection: they share the
        # object serializer, which is what a group's encodings are memoized by.
        self.serializer = keeping_disclosure(serializer or JSON)
        self.writes: list[bytes] = []
        self.counters = Counters()
        self.clock = clock
        self.limit_to(limits.max_outgoing_bytes)

    def limit_to(self, max_message_bytes):
        """A fresh outbox with this outgoing limit (the WELCOME needs the default one)."""
        self.outbox = MessageOutbox(
            write=lambda payload, binary: self.writes.append(frame(payload, binary)),
            write_framed=self.writes.append,
            frame_all=frame_all,
            serialize=self.serializer.serialize,
            clock=self.clock,
            stall_timeout=30.0,
            on_stalled=lambda reason: None,
            counters=self.counters,
            max_message_bytes=max_message_bytes,
        )

    def send(self, msg, conflation_key=None):
        self.outbox.send(msg, conflation_key)

    def send_events(self, group):
        return self.outbox.send_events(group)

    def close(self, going_away=False):
        pass

    def internal_error(self):
        raise AssertionError("no internal error expected")

    def writable(self):
        return self.outbox.writable

    def when_writable(self, callback):
        self.outbox.on_writable = callback

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def take(self) -> list[list]:
        """Every WAMP message written since the last take, decoded like a client."""
        messages = []
        for data in self.writes:
            for _, payload in server_frames(data):
                messages.extend(
                    self.serializer.unserialize(payload, self.serializer._serializer.BINARY)
                )
        self.writes.clear()
        return [m.marshal() for m in messages]


class Realm:
    def __init__(self, limits: WampLimits | None = None):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.hub = Hub(self.clock)
        self.limits = limits or WampLimits()
        self.router = Router(
            "tantra", new_global_id=itertools.count(1000).__next__, limits=self.limits,
            clock=self.clock,
        )  # fmt: skip
        HubBridge(self.hub, self.router.broker, self.router.dealer, self.router.stats).start()
        self.request = itertools.count(1).__next__

    def join(self, name, serializer=None):
        connection = FramedConnection(name, self.clock, self.limits, serializer)
        session = RouterSession(self.router, connection)
        self.send(session, connection, [1, "tantra", {"roles": ROLES}])
        [welcome] = connection.take()
        assert welcome[0] == 2
        return session, connection

    def send(self, session, connection, raw):
        """Serialize like a client of that kind, parse like the transport."""
        ours = connection.serializer._serializer
        payload = ours.serialize(raw)
        session.receive(parse(connection.serializer, payload, ours.BINARY, max_uri_bytes=1024))

    def subscribe(self, session, connection, topic, match="exact") -> int:
        self.send(session, connection, [32, self.request(), {"match": match}, topic])
        [subscribed] = connection.take()
        assert subscribed[0] == SUBSCRIBED
        return subscribed[2]

    def readings(self, *pairs):
        """One hub turn with these (device, sensor, value) readings."""
        lines = [
            json.dumps({"device": d, "sensor": s, "value": v, "unit": "%"}) for d, s, v in pairs
        ]
        self.hub.ingest("\n".join(lines).encode() if len(lines) == 1 else
                        ("[" + ",".join(lines) + "]").encode(), default_device="x")  # fmt: skip
        self.hub.flush()


def events(messages):
    return [(m[1], m[4][0]["device"], m[4][0]["sensor"], m[4][0]["value"]) for m in messages
            if m[0] == EVENT]  # fmt: skip


def test_subscribers_of_one_subscription_share_one_write_of_the_whole_turn():
    realm = Realm()
    sessions = [realm.join(f"c{n}") for n in range(3)]
    sub_ids = {realm.subscribe(s, c, "tantra.reading", "prefix") for s, c in sessions}
    assert len(sub_ids) == 1  # one subscription, three observers
    (sid,) = sub_ids
    realm.readings(("d", "a", 1), ("d", "b", 2), ("e", "a", 3))
    writes = [c.writes[:] for _, c in sessions]
    assert all(len(w) == 1 for w in writes)  # the turn in one write each
    assert writes[0][0] is writes[1][0] is writes[2][0]  # built once, shared
    for _, connection in sessions:
        assert events(connection.take()) == [(sid, "d", "a", 1), (sid, "d", "b", 2),
                                             (sid, "e", "a", 3)]  # fmt: skip
    assert realm.router.stats.events_sent == 9


def test_each_subscription_gets_its_own_id_and_order_holds_across_subscriptions():
    realm = Realm()
    both, both_c = realm.join("both")
    prefix_only, prefix_c = realm.join("prefix")
    exact_only, exact_c = realm.join("exact")
    everything = realm.subscribe(both, both_c, "tantra.reading", "prefix")
    assert realm.subscribe(prefix_only, prefix_c, "tantra.reading", "prefix") == everything
    exact = realm.subscribe(both, both_c, "tantra.reading.d.b")
    assert realm.subscribe(exact_only, exact_c, "tantra.reading.d.b") == exact
    realm.readings(("d", "a", 1), ("d", "b", 2), ("d", "a", 3))
    # WAMP: one publisher's events reach a subscriber in publication order, across topics.
    assert events(both_c.take()) == [(everything, "d", "a", 1), (exact, "d", "b", 2),
                                     (everything, "d", "b", 2), (everything, "d", "a", 3)]  # fmt: skip
    assert events(prefix_c.take()) == [(everything, "d", "a", 1), (everything, "d", "b", 2),
                                       (everything, "d", "a", 3)]  # fmt: skip
    assert events(exact_c.take()) == [(exact, "d", "b", 2)]


def test_an_exclude_list_is_honoured_and_the_turn_keeps_its_order():
    realm = Realm()
    publisher, pub_c = realm.join("publisher")
    other, other_c = realm.join("other")
    sid = realm.subscribe(publisher, pub_c, "tantra.reading", "prefix")
    realm.subscribe(other, other_c, "tantra.reading", "prefix")
    realm.hub.ingest(b'{"device":"d","sensor":"a","value":1}', default_device="d")
    # A WAMP publication in the same turn: exclude_me (default) keeps it from its publisher.
    realm.send(publisher, pub_c, [16, realm.request(), {}, "tantra.reading.d.w", [{"value": 5}]])
    realm.hub.ingest(b'{"device":"d","sensor":"b","value":2}', default_device="d")
    realm.hub.flush()
    assert events(other_c.take()) == [(sid, "d", "a", 1), (sid, "d", "w", 5), (sid, "d", "b", 2)]
    assert events(pub_c.take()) == [(sid, "d", "a", 1), (sid, "d", "b", 2)]


def test_a_paused_subscriber_conflates_per_sensor_while_the_others_lose_nothing():
    realm = Realm()
    slow, slow_c = realm.join("slow")
    fast, fast_c = realm.join("fast")
    sid = realm.subscribe(slow, slow_c, "tantra.reading", "prefix")
    realm.subscribe(fast, fast_c, "tantra.reading", "prefix")
    slow_c.outbox.pauseProducing()
    realm.readings(("d", "a", 1), ("d", "b", 2))
    realm.readings(("d", "a", 3))
    assert slow_c.writes == [] and slow_c.outbox.backlog == 2
    assert slow_c.counters.hub.conflated == 1
    slow_c.outbox.resumeProducing()
    assert events(slow_c.take()) == [(sid, "d", "b", 2), (sid, "d", "a", 3)]
    assert events(fast_c.take()) == [(sid, "d", "a", 1), (sid, "d", "b", 2), (sid, "d", "a", 3)]


def test_an_event_over_the_outgoing_limit_is_skipped_and_counted_the_rest_goes_out():
    realm = Realm()
    sessions = [realm.join(f"c{n}") for n in range(2)]
    for s, c in sessions:
        sid = realm.subscribe(s, c, "tantra.reading", "prefix")
        c.limit_to(200)  # after the WELCOME, which is larger
    realm.readings(("d", "a", 1), ("d", "b" * 60, 2), ("d", "c", 3))
    for _, connection in sessions:
        assert events(connection.take()) == [(sid, "d", "a", 1), (sid, "d", "c", 3)]
    assert realm.router.stats.too_large["event"] == 2
    assert realm.router.stats.events_sent == 4


def test_each_serializer_kind_gets_its_own_encoding():
    realm = Realm()
    json_s, json_c = realm.join("json")
    cbor_s, cbor_c = realm.join("cbor", CBOR)
    sid = realm.subscribe(json_s, json_c, "tantra.reading", "prefix")
    realm.subscribe(cbor_s, cbor_c, "tantra.reading", "prefix")
    realm.readings(("d", "a", 1), ("d", "b", 2))
    assert server_frames(json_c.writes[0])[0][0] == 1  # text
    assert server_frames(cbor_c.writes[0])[0][0] == 2  # binary
    assert (
        events(json_c.take()) == events(cbor_c.take()) == [(sid, "d", "a", 1), (sid, "d", "b", 2)]
    )


@settings(max_examples=60, deadline=None)
@given(
    subs=st.lists(
        st.sampled_from(["tantra.reading", "tantra.reading.d", "tantra.reading.e.a", "..a"]),
        min_size=1, max_size=3, unique=True,
    ),
    turn=st.lists(st.tuples(st.sampled_from("de"), st.sampled_from("ab")), min_size=1, max_size=6),
)  # fmt: skip
def test_grouped_fan_out_sends_what_one_event_at_a_time_would(subs, turn):
    """Property: per subscriber, the grouped turn equals publishing each reading alone."""
    policies = {"tantra.reading": "prefix", "tantra.reading.d": "prefix", "..a": "wildcard"}
    grouped, one_by_one = Realm(), Realm()
    seen = []
    for realm in (grouped, one_by_one):
        joined = [realm.join(f"c{n}") for n in range(len(subs))]
        # client n holds subscriptions subs[n:] (overlapping sets, several groups)
        for n, (s, c) in enumerate(joined):
            for topic in subs[n:]:
                realm.subscribe(s, c, topic, policies.get(topic, "exact"))
        seen.append(joined)
    readings = [(d, s, i) for i, (d, s) in enumerate(turn)]
    grouped.readings(*readings)
    for reading in readings:
        one_by_one.readings(reading)
    for (_, a), (_, b) in zip(seen[0], seen[1], strict=True):
        assert events(a.take()) == events(b.take())
