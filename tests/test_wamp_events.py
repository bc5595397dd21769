"""A turn's events as lists (not Autobahn objects), and the broker's kept send functions.

Checked: :func:`event_message` is exactly what Autobahn's ``Event.marshal``
makes, so every serializer encodes the same bytes as before; the ``Event``
objects a group still offers round-trip; the broker's kept ``send_events``
of a subscription follow joins, unsubscriptions and sessions that leave and
come back; a subscriber given up in the middle of a turn costs only itself;
a session that is not joined is sent nothing.
"""

from __future__ import annotations

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
from autobahn.wamp import message
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from hypothesis import given
from hypothesis import strategies as st

from tantra.wamp.broker import senders_of
from tantra.wamp.events import EventGroup, as_event, encoding_of, event_message
from tests.test_wamp_fanout import Realm, events

ids = st.integers(min_value=1, max_value=2**53)
names = st.text(max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "args": st.lists(values, max_size=3),
        "kwargs": st.dictionaries(names, values, max_size=3),
        "publisher": ids,
        "publisher_authid": names,
        "publisher_authrole": names,
        "topic": names,
        "retained": st.booleans(),
    },
)


@given(subscription=ids, publication=ids, fields=fields)
def test_an_event_list_is_what_autobahn_marshals_and_encodes_the_same(
    subscription, publication, fields
):
    ours = event_message(subscription, publication, **fields)
    theirs = message.Event(subscription, publication, **fields)
    assert ours == theirs.marshal()
    for serializer in (JsonSerializer(), CBORSerializer(), MsgPackSerializer(batched=True)):
        objects = serializer._serializer
        assert objects.serialize(ours) == theirs.serialize(objects)
    assert as_event(ours).marshal() == ours


def test_a_group_encodes_once_per_encoding_and_switches_back_without_encoding_again():
    calls = []

    class Counting:
        BINARY = False

        def serialize(self, raw):
            calls.append(raw)
            return repr(raw).encode()

    one, other = Counting(), Counting()
    first, second = encoding_of(one, 1000, None), encoding_of(other, 1000, None)
    assert encoding_of(one, 1000, None) is first  # one shared object per encoding
    group = EventGroup([(event_message(1, 2, args=[1]), None), (event_message(1, 3), ("k",))])
    group.use(first)
    items = group.items
    group.use(first)
    assert len(calls) == 2 and group.items is items
    group.use(second)
    group.use(first)
    assert len(calls) == 4 and group.encoding is first and group.items is items
    assert [key for _, _, key in items] == [None, ("k",)]
    assert group.too_large == 0 and group.framed == b""
    assert [(type(event), key) for event, key in group.events] == [
        (message.Event, None),
        (message.Event, ("k",)),
    ]


def test_kept_send_functions_follow_subscribe_unsubscribe_and_leaving():
    realm = Realm()
    a, a_c = realm.join("a")
    b, b_c = realm.join("b")
    sid = realm.subscribe(a, a_c, "tantra.reading", "prefix")
    realm.readings(("d", "x", 1))  # the subscription's send functions are kept from here
    assert realm.subscribe(b, b_c, "tantra.reading", "prefix") == sid
    realm.readings(("d", "x", 2))
    assert events(a_c.take()) == [(sid, "d", "x", 1), (sid, "d", "x", 2)]
    assert events(b_c.take()) == [(sid, "d", "x", 2)]
    realm.send(a, a_c, [34, realm.request(), sid])  # UNSUBSCRIBE
    realm.readings(("d", "x", 3))
    assert events(a_c.take()) == [] and events(b_c.take()) == [(sid, "d", "x", 3)]
    # b says GOODBYE (leaves the realm, keeps the transport), then joins again
    realm.send(b, b_c, [6, {}, "wamp.close.normal"])
    realm.readings(("d", "x", 4))
    assert events(b_c.take()) == []
    realm.send(b, b_c, [1, "tantra", {"roles": {"subscriber": {}}}])
    assert [m[0] for m in b_c.take()] == [2]  # WELCOME
    again = realm.subscribe(b, b_c, "tantra.reading", "prefix")
    realm.readings(("d", "x", 5))
    assert events(b_c.take()) == [(again, "d", "x", 5)]  # once, not twice


def test_a_subscriber_given_up_in_the_middle_of_a_turn_costs_only_itself():
    realm = Realm()
    joined = [realm.join(f"c{n}") for n in range(3)]
    sid, *others = [realm.subscribe(s, c, "tantra.reading", "prefix") for s, c in joined]
    assert others == [sid, sid]
    (_, first), (middle, middle_c), (_, last) = joined
    realm.readings(("d", "x", 1))
    middle_c.outbox._max_held_bytes = 10  # the next held event is over it: given up
    # and, as the transport does, the session leaves: the subscription changes mid-turn
    middle_c.outbox._on_give_up = lambda reason: middle.connection_lost()
    middle_c.outbox.pauseProducing()
    realm.readings(("d", "x", 2))
    assert middle_c.counters.hub.clients_dropped["backlog"] == 1
    realm.readings(("d", "x", 3))
    for connection in (first, last):
        assert [e[3] for e in events(connection.take())] == [1, 2, 3]
    assert [e[3] for e in events(middle_c.take())] == [1]
    assert realm.router.broker.subscriptions.get(sid) is not None
    assert len(realm.router.broker.subscriptions.get(sid).observers) == 2


def test_a_session_that_is_not_joined_is_sent_no_events():
    realm = Realm()
    session, connection = realm.join("c")
    realm.send(session, connection, [6, {}, "wamp.close.normal"])  # GOODBYE: not joined
    connection.take()
    group = EventGroup([(event_message(1, 2, args=[1]), None)])
    assert session.send_events(group) == 0
    assert connection.writes == []


def test_send_functions_are_called_on_their_objects_or_as_they_are():
    class Outbox:
        def __init__(self, name):
            self.name, self.got = name, []

        def send_events(self, group):
            self.got.append(group)
            return 1

    a, b = Outbox("a"), Outbox("b")
    method, targets = senders_of([a.send_events, b.send_events])
    assert method is Outbox.send_events and targets == (a, b)  # no bound method kept
    seen = []
    mixed = [a.send_events, lambda group: seen.append(group) or 0]
    function, targets = senders_of(mixed)
    assert [function(target, "g") for target in targets] == [1, 0]
    assert seen == ["g"] and a.got == ["g"]


def test_subscribers_with_different_send_functions_all_get_the_turn():
    realm = Realm()
    (plain, plain_c), (odd, odd_c) = realm.join("plain"), realm.join("odd")
    sid = realm.subscribe(plain, plain_c, "tantra.reading", "prefix")
    realm.subscribe(odd, odd_c, "tantra.reading", "prefix")
    odd.send_events = lambda group: odd_c.outbox.send_events(group)  # not a bound method
    realm.router.broker.subscriptions.get(sid).derived = None  # as a new subscription would
    realm.readings(("d", "x", 1))
    assert events(plain_c.take()) == events(odd_c.take()) == [(sid, "d", "x", 1)]


def test_the_direct_path_follows_pause_resume_and_close():
    realm = Realm()
    session, connection = realm.join("c")
    sid = realm.subscribe(session, connection, "tantra.reading", "prefix")
    outbox = connection.outbox
    outbox.pauseProducing()
    realm.readings(("d", "x", 1))
    assert connection.writes == [] and outbox.backlog == 1
    outbox.resumeProducing()
    realm.readings(("d", "x", 2))
    assert events(connection.take()) == [(sid, "d", "x", 1), (sid, "d", "x", 2)]
    # Writing what was held fills the buffer again: Twisted pauses during the resume.
    outbox.pauseProducing()
    realm.readings(("d", "x", 3))
    outbox._write = lambda payload, binary: outbox.pauseProducing()
    outbox.resumeProducing()
    realm.readings(("d", "y", 4))
    assert connection.writes == [] and outbox.backlog == 1  # held, not written past the pause
    outbox.close()
    realm.readings(("d", "x", 5))
    assert connection.writes == [] and outbox.backlog == 0


def test_a_client_closed_for_its_backlog_gets_stall_timeout_to_reach_the_4001_frame():
    """It still reads, but the close frame sits behind what its socket holds: the 5 s
    close timeout would cut the connection before the frame arrives. A client closed
    for not reading keeps the close timeout (nothing of its own to wait for)."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock

    from tantra.hub import Hub
    from tantra.wamp import build_wamp

    clock = Clock()
    wamp, _ = build_wamp(Hub(clock), clock, realm="tantra")
    given_up = {}
    for reason in ("backlog", "stalled"):
        protocol = wamp.buildProtocol(IPv4Address("TCP", "10.0.0.5", 5000))
        # Autobahn copies the factory's options onto the protocol on connect.
        close_timeout = protocol.closeHandshakeTimeout = wamp.closeHandshakeTimeout
        protocol.state = protocol.STATE_CLOSED  # no socket here: no close frame to write
        protocol._on_stalled(reason)
        given_up[reason] = protocol.closeHandshakeTimeout
    assert wamp.stall_timeout > close_timeout
    assert given_up == {"backlog": wamp.stall_timeout, "stalled": close_timeout}
