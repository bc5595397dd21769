"""The WAMP router's hardening without sockets: bad URIs, the outgoing limit, per-session bounds,
call timeouts, retained lookups by index and the per-turn work budget.

Sessions are driven through the same parse path as the transport
(``tantra.wamp.parse`` on serialized bytes, then ``RouterSession.receive``)
and answer through a real :class:`MessageOutbox` (so the outgoing limit is
the real one), on a ``task.Clock``. Every test that feeds bad input also
checks that a well-behaved WAMP subscriber and a dashboard alongside got the
reading published afterwards.
"""

from __future__ import annotations

import itertools
import json

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
import pytest
from autobahn.wamp.role import (
    RoleCalleeFeatures,
    RoleCallerFeatures,
    RolePublisherFeatures,
    RoleSubscriberFeatures,
)
from autobahn.wamp.serializer import JsonSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from zope.interface import implementer

from tantra.counters import Counters
from tantra.hub import EVERYTHING, Hub, ISink
from tantra.model import Reading
from tantra.wamp.bridge import HubBridge
from tantra.wamp.limits import LIMIT_EXCEEDED, TIMEOUT, TOO_LARGE, LogThrottle, WampLimits
from tantra.wamp.match import EXACT, PREFIX, WILDCARD, ObservationMap, matches
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.outbox import MessageOutbox
from tantra.wamp.parse import Refusal, Violation, parse
from tantra.wamp.peer import INVALID_URI, PROTOCOL_VIOLATION, IWampConnection
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession, State

NOW = 1_764_000_000.0
ROLES = {
    "publisher": RolePublisherFeatures(publisher_exclusion=True),
    "subscriber": RoleSubscriberFeatures(pattern_based_subscription=True),
    "caller": RoleCallerFeatures(progressive_call_results=True, call_canceling=True),
    "callee": RoleCalleeFeatures(progressive_call_results=True, call_canceling=True),
}


@implementer(IWampConnection)
class OutboxConnection:
    """A session's connection: a real MessageOutbox whose writes are decoded and kept."""

    def __init__(self, name: str, clock: task.Clock, max_message_bytes: int):
        self.peer = name
        self.serializer = keeping_disclosure(JsonSerializer())
        self.outbox = MessageOutbox(
            write=self._write,
            serialize=self.serializer.serialize,
            clock=clock,
            stall_timeout=30.0,
            on_stalled=lambda reason: None,
            counters=Counters(),
            max_message_bytes=max_message_bytes,
        )
        self.received: list[list] = []  # raw WAMP messages as the client decodes them
        self.sizes: list[int] = []
        self.closed: str | None = None
        self.failed = False
        self.reading_paused = False
        self.pauses = 0

    def _write(self, payload: bytes, is_binary: bool) -> None:
        self.sizes.append(len(payload))
        self.received.append(json.loads(payload))

    def send(self, msg, conflation_key=None):
        self.outbox.send(msg, conflation_key)

    def send_events(self, group):
        return self.outbox.send_events(group)

    def close(self, going_away=False):
        self.closed = "going away" if going_away else "normal"

    def internal_error(self):
        self.failed = True

    def writable(self):
        return self.outbox.writable

    def when_writable(self, callback):
        self.outbox.on_writable = callback

    def pause_reading(self):
        self.reading_paused = True
        self.pauses += 1

    def resume_reading(self):
        self.reading_paused = False

    def take(self, kind: int | None = None) -> list[list]:
        found = [m for m in self.received if kind is None or m[0] == kind]
        self.received.clear()
        return found


@implementer(ISink)
class RecordingSink:
    def __init__(self):
        self.readings: list[Reading] = []

    def deliver(self, batch):
        self.readings.extend(batch.readings)


ERROR, SUBSCRIBED, EVENT, RESULT, REGISTERED, INVOCATION, INTERRUPT, ABORT = (
    8,
    33,
    36,
    50,
    65,
    68,
    69,
    3,
)


class Realm:
    def __init__(self, limits: WampLimits | None = None, max_sensors: int = 100_000):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.hub = Hub(self.clock, max_sensors=max_sensors)
        self.limits = limits or WampLimits()
        self.router = Router(
            "tantra",
            new_global_id=itertools.count(1000).__next__,
            limits=self.limits,
            clock=self.clock,
        )
        HubBridge(self.hub, self.router.broker, self.router.dealer, self.router.stats).start()
        self.dashboard = RecordingSink()
        self.hub.subscribe(self.dashboard, EVERYTHING)
        self.request = itertools.count(1).__next__

    def join(self, name="client") -> tuple[RouterSession, OutboxConnection]:
        connection = OutboxConnection(name, self.clock, self.limits.max_outgoing_bytes)
        session = RouterSession(self.router, connection)
        self.send(session, connection, [1, "tantra", {"roles": _roles()}])
        [welcome] = connection.take()
        assert welcome[0] == 2 and session.state is State.JOINED
        return session, connection

    def send(self, session, connection, *raws: list, batched: bool = False) -> None:
        """Serialize like a client (JSON), parse like the transport, hand to the session."""
        if batched:
            payload = b"".join(json.dumps(raw).encode() + b"\x18" for raw in raws)
            serializer = keeping_disclosure(JsonSerializer(batched=True))
        else:
            [raw] = raws
            payload = json.dumps(raw).encode()
            serializer = connection.serializer
        session.receive(parse(serializer, payload, False, max_uri_bytes=self.limits.max_uri_bytes))

    def reading(self, device="farm-1", sensor="soil", value=1.0, ts=None):
        fields = {"device": device, "sensor": sensor, "value": value, "unit": "%"}
        if ts is not None:
            fields["ts"] = ts
        self.hub.ingest(json.dumps(fields), default_device=device)

    def turn(self):
        self.clock.advance(0)

    def fill(self, sensors: int) -> None:
        """``sensors`` cached sensors over 100 devices."""
        lines = [
            json.dumps({"device": f"d{n % 100}", "sensor": f"s{n}", "value": n, "unit": "%"})
            for n in range(sensors)
        ]
        for start in range(0, len(lines), 500):
            self.hub.ingest("[" + ",".join(lines[start : start + 500]) + "]", default_device="x")
        self.turn()


def _roles() -> dict:
    return {name: {"features": dict(role.__dict__)} for name, role in ROLES.items()}


@pytest.fixture
def realm() -> Realm:
    return Realm()


def well_behaved_pair(realm: Realm):
    """A WAMP subscriber of everything; the dashboard sink is ``realm.dashboard``."""
    session, connection = realm.join("good")
    realm.send(session, connection, [32, realm.request(), {"match": "prefix"}, "tantra.reading."])
    [[_, _, subscription]] = connection.take(SUBSCRIBED)
    return session, connection, subscription


def assert_nothing_lost(realm: Realm, good: OutboxConnection, subscription: int) -> None:
    """A reading published now reaches the good subscriber and the dashboard, once."""
    before = len(realm.dashboard.readings)
    realm.reading("farm-9", "probe", 7.0)
    realm.turn()
    assert [r.sensor for r in realm.dashboard.readings[before:]] == ["probe"]
    events = [m for m in good.take(EVENT) if m[1] == subscription]
    assert [e[4][0]["sensor"] for e in events] == ["probe"]


# -- item 2: invalid URIs and unparseable messages ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "request_type"),
    [
        ([32, 11, {}, "a b"], 32),
        ([32, 11, {"match": "prefix"}, "a#b"], 32),
        ([16, 11, {"acknowledge": True}, "a b"], 16),
        ([16, 11, {"acknowledge": True}, "com..x"], 16),
        ([48, 11, {}, "x y"], 48),
        ([64, 11, {}, "x..y"], 64),
        ([64, 11, {}, 17], 64),
        ([32, 11, {}, "a." * 300 + "b"], 32),  # 601 bytes > 512
        ([48, 11, {}, "é" * 300], 48),  # 600 UTF-8 bytes
    ],
)
def test_invalid_uri_gets_error_invalid_uri_and_the_session_goes_on(realm, raw, request_type):
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("bad")
    realm.send(session, connection, raw)
    [error] = connection.take()
    assert error[:5] == [ERROR, request_type, 11, {}, INVALID_URI]
    assert len(error[5][0]) < 300  # the text never echoes the whole URI
    assert session.state is State.JOINED and connection.closed is None
    assert realm.router.stats.errors_sent[INVALID_URI] == 1
    realm.send(session, connection, [32, 12, {}, "com.example.ok"])
    assert connection.take(SUBSCRIBED)[0][1] == 12
    assert_nothing_lost(realm, good, subscription)


def test_unacknowledged_publish_with_invalid_uri_is_counted_not_answered(realm):
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("bad")
    realm.send(session, connection, [16, 11, {}, "a b", [1]])
    assert connection.take() == []
    assert realm.router.stats.errors_sent[INVALID_URI] == 1
    assert session.state is State.JOINED
    assert_nothing_lost(realm, good, subscription)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ([1, "a b", {"roles": {"subscriber": {}}}], "invalid URI"),  # HELLO again: no request id
        ([32, "x", {}, "a b"], "malformed"),  # no usable request id
        ([32, 1, {"match": 3}, "a"], "malformed"),
        ([999, 1], "unknown WAMP message type"),
        ({"not": "a list"}, "non-empty array"),
        ([], "non-empty array"),
        (["1", 2], "integer"),
        ([36, 1, 2, {}], "EVENT"),
    ],
)
def test_unanswerable_messages_abort_with_protocol_violation(realm, raw, detail):
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("bad")
    realm.send(session, connection, raw)
    [abort] = connection.take()
    assert abort[0] == ABORT and abort[2] == PROTOCOL_VIOLATION
    assert detail in abort[1]["message"]
    assert connection.closed == "normal" and session.state is State.CLOSED
    assert_nothing_lost(realm, good, subscription)


def test_a_batch_is_handled_up_to_its_first_violation(realm):
    session, connection = realm.join("bad")
    realm.send(
        session,
        connection,
        [32, 1, {}, "com.ok"],
        [32, 2, {}, "a b"],
        [999],
        [32, 3, {}, "com.never"],
        batched=True,
    )
    kinds = [(m[0], m[1] if m[0] != ABORT else m[2]) for m in connection.take()]
    assert kinds == [(SUBSCRIBED, 1), (ERROR, 32), (ABORT, PROTOCOL_VIOLATION)]


def test_invalid_uri_before_hello_is_a_violation(realm):
    connection = OutboxConnection("early", realm.clock, realm.limits.max_outgoing_bytes)
    session = RouterSession(realm.router, connection)
    realm.send(session, connection, [32, 1, {}, "a b"])
    [abort] = connection.take()
    assert abort[0] == ABORT and abort[2] == PROTOCOL_VIOLATION


def test_log_lines_about_bad_input_are_throttled_and_counted():
    now = [0.0]
    throttle = LogThrottle(lambda: now[0], interval=1.0)
    assert throttle.allow("x") == 0
    assert [throttle.allow("x") for _ in range(1000)] == [None] * 1000
    assert throttle.allow("y") == 0  # kinds are separate
    now[0] = 1.5
    assert throttle.allow("x") == 1000


# Any JSON value, and arrays that look like WAMP messages with random fields.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
uris = st.sampled_from(["a b", "com..x", "com.x", "", ".", "a.", "tantra.reading.d.s", "é"])
option_values = st.dictionaries(
    st.sampled_from(["match", "acknowledge", "get_retained", "receive_progress", "exclude"]),
    json_values | st.sampled_from(["prefix", "wildcard", "exact"]),
    max_size=3,
)
wamp_like = st.builds(
    lambda kind, request, options, uri, rest: [kind, request, options, uri, *rest],
    st.sampled_from([1, 2, 3, 6, 8, 16, 32, 34, 36, 48, 49, 50, 64, 66, 68, 70, 99]),
    st.integers(-1, 2**54) | json_values,
    option_values | json_values,
    uris | json_values,
    st.lists(json_values, max_size=3),
)
raw_messages = st.lists(wamp_like | json_values, min_size=1, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_messages, st.booleans())
def test_fuzzed_message_lists_always_get_an_answer_and_never_crash(raws, joined_first):
    realm = Realm()
    if joined_first:
        session, connection = realm.join("fuzz")
    else:
        connection = OutboxConnection("fuzz", realm.clock, realm.limits.max_outgoing_bytes)
        session = RouterSession(realm.router, connection)
    payload = b"".join(json.dumps(raw).encode() + b"\x18" for raw in raws)
    serializer = keeping_disclosure(JsonSerializer(batched=True))
    items = parse(serializer, payload, False, max_uri_bytes=512)
    session.receive(items)
    realm.turn()
    assert not connection.failed  # no internal error: every input had an intended answer
    received = connection.take()
    for item in items:
        if isinstance(item, Violation):
            assert received[-1][0] == ABORT and received[-1][2] == PROTOCOL_VIOLATION
            assert session.state is State.CLOSED
        elif isinstance(item, Refusal) and not item.silent and session.state is State.JOINED:
            assert [ERROR, item.request_type, item.request, {}, INVALID_URI] in [
                m[:5] for m in received
            ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["json", "msgpack", "cbor"]), st.booleans())
def test_parse_never_raises_on_any_bytes(payload, name, batched):
    from autobahn.wamp.serializer import CBORSerializer, MsgPackSerializer

    kinds = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
    serializer = keeping_disclosure(kinds[name](batched=batched))
    items = parse(serializer, payload, name != "json", max_uri_bytes=512)
    assert isinstance(items, list)
    assert all(not isinstance(i, Violation) for i in items[:-1])


# -- item 3: outgoing messages over the limit ------------------------------------------


def test_tantra_latest_too_large_is_an_error_not_a_close():
    realm = Realm(WampLimits(max_outgoing_bytes=65536))
    realm.fill(1000)
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("caller")
    realm.send(session, connection, [48, 5, {}, "tantra.latest"])
    [error] = connection.take()
    assert error[:5] == [ERROR, 48, 5, {}, TOO_LARGE]
    assert "limit=" in error[5][0] and "receive_progress" in error[5][0]
    assert session.state is State.JOINED and connection.closed is None
    assert realm.router.stats.too_large["result"] == 1
    assert_nothing_lost(realm, good, subscription)


def test_tantra_latest_with_receive_progress_comes_in_pieces_that_fit():
    realm = Realm(WampLimits(max_outgoing_bytes=65536))
    realm.fill(1000)
    session, connection = realm.join("caller")
    realm.send(session, connection, [48, 5, {"receive_progress": True}, "tantra.latest"])
    results = connection.take()
    assert all(m[0] == RESULT and m[1] == 5 for m in results)
    assert [m[2].get("progress", False) for m in results] == [True] * (len(results) - 1) + [False]
    assert len(results) > 1 and max(connection.sizes[-len(results) :]) <= 65536
    readings = [r for m in results for r in m[3][0]]
    assert readings == [r.to_dict() for r in realm.hub.latest()]


def test_tantra_latest_pages_with_limit_and_after_cover_every_sensor_once():
    realm = Realm(WampLimits(max_outgoing_bytes=65536))
    realm.fill(1000)
    session, connection = realm.join("caller")
    seen: list[tuple[str, str]] = []
    after = None
    while True:
        realm.send(
            session, connection, [48, 5, {}, "tantra.latest", [], {"limit": 300, "after": after}]
        )
        [result] = connection.take()
        assert result[0] == RESULT, result
        page = result[3][0]
        if not page:
            break
        seen += [(r["device"], r["sensor"]) for r in page]
        after = f"{page[-1]['device']}.{page[-1]['sensor']}"
    assert seen == sorted(r.key for r in realm.hub.latest())


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": True}, {"limit": 10**6}, {"after": "x"}])
def test_tantra_latest_bad_paging_arguments_are_invalid_argument(realm, bad):
    session, connection = realm.join("caller")
    realm.send(session, connection, [48, 5, {}, "tantra.latest", [], bad])
    [error] = connection.take()
    assert error[:5] == [ERROR, 48, 5, {}, "wamp.error.invalid_argument"]


def test_large_retained_event_reaches_later_get_retained_subscribers():
    """A 60 KB retained PUBLISH (inside the 64 KB incoming limit) becomes a larger EVENT:
    with the outgoing limit separate it is delivered, not a 1011 close."""
    realm = Realm()
    publisher, _ = realm.join("publisher")
    realm.send(publisher, _, [16, 1, {"retain": True}, "com.big", ["x" * 60_000]])
    for name in ("late-1", "late-2"):
        session, connection = realm.join(name)
        realm.send(session, connection, [32, 2, {"get_retained": True, "match": "prefix"}, "com."])
        realm.turn()  # retained events follow SUBSCRIBED from the next turn on
        subscribed, event = connection.take()
        assert subscribed[0] == SUBSCRIBED and event[0] == EVENT
        assert event[3]["retained"] is True and len(event[4][0]) == 60_000


def test_event_over_the_outgoing_limit_is_dropped_and_counted_not_closed():
    realm = Realm(WampLimits(max_outgoing_bytes=4096))
    _, good, subscription = well_behaved_pair(realm)
    publisher, _ = realm.join("publisher")
    realm.send(publisher, _, [16, 1, {"retain": True}, "com.big", ["x" * 5000]])
    session, connection = realm.join("late")
    realm.send(session, connection, [32, 2, {"get_retained": True}, "com.big"])
    realm.turn()
    [subscribed] = connection.take()
    assert subscribed[:2] == [SUBSCRIBED, 2]
    assert realm.router.stats.too_large["event"] == 1
    assert session.state is State.JOINED
    assert_nothing_lost(realm, good, subscription)


def test_callee_result_over_the_limit_becomes_an_error_for_the_caller():
    realm = Realm(WampLimits(max_outgoing_bytes=4096))
    callee, callee_conn = realm.join("callee")
    realm.send(callee, callee_conn, [64, 1, {}, "com.big"])
    callee_conn.take(REGISTERED)
    caller, caller_conn = realm.join("caller")
    realm.send(caller, caller_conn, [48, 7, {}, "com.big"])
    [invocation] = callee_conn.take(INVOCATION)
    realm.send(callee, callee_conn, [70, invocation[1], {}, ["y" * 5000]])
    [error] = caller_conn.take()
    assert error[:5] == [ERROR, 48, 7, {}, TOO_LARGE]
    assert realm.router.dealer.pending_calls == 0


# -- item 7: bounds ------------------------------------------


def test_subscriptions_per_session_are_bounded():
    realm = Realm(WampLimits(max_subscriptions=3))
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("greedy")
    for n in range(3):
        realm.send(session, connection, [32, n + 1, {}, f"com.t{n}"])
    realm.send(session, connection, [32, 9, {}, "com.t0"])  # the same one again: no new one
    assert [m[0] for m in connection.take()] == [SUBSCRIBED] * 4
    realm.send(session, connection, [32, 10, {}, "com.t3"])
    [error] = connection.take()
    assert error[:5] == [ERROR, 32, 10, {}, LIMIT_EXCEEDED]
    assert realm.router.stats.limits_hit["subscriptions"] == 1
    assert_nothing_lost(realm, good, subscription)


def test_registrations_per_session_are_bounded():
    realm = Realm(WampLimits(max_registrations=2))
    session, connection = realm.join("greedy")
    for n in range(3):
        realm.send(session, connection, [64, n + 1, {}, f"com.p{n}"])
    answers = connection.take()
    assert [m[0] for m in answers] == [REGISTERED, REGISTERED, ERROR]
    assert answers[2][:5] == [ERROR, 64, 3, {}, LIMIT_EXCEEDED]


def _callee(realm: Realm, procedure="com.slow"):
    callee, conn = realm.join("callee")
    realm.send(callee, conn, [64, 1, {}, procedure])
    conn.take()
    return callee, conn


def test_pending_calls_per_session_are_bounded_and_a_leaving_caller_costs_its_own_calls():
    realm = Realm(WampLimits(max_pending_calls=50))
    _, callee_conn = _callee(realm)
    other, other_conn = realm.join("other-caller")
    realm.send(other, other_conn, [48, 1, {}, "com.slow"])
    caller, caller_conn = realm.join("caller")
    for n in range(51):
        realm.send(caller, caller_conn, [48, n + 1, {}, "com.slow"])
    [error] = caller_conn.take()
    assert error[:5] == [ERROR, 48, 51, {}, LIMIT_EXCEEDED]
    assert realm.router.dealer.pending_calls == 51
    callee_conn.take()
    caller.connection_lost()
    interrupts = callee_conn.take(INTERRUPT)
    assert len(interrupts) == 50 and all(i[2] == {"mode": "killnowait"} for i in interrupts)
    assert realm.router.dealer.pending_calls == 1  # the other caller's call is untouched


def test_a_call_nobody_answers_times_out():
    realm = Realm(WampLimits(call_timeout=10.0))
    callee, callee_conn = _callee(realm)
    caller, caller_conn = realm.join("caller")
    realm.send(caller, caller_conn, [48, 1, {}, "com.slow"])
    realm.clock.advance(5)
    realm.send(caller, caller_conn, [48, 2, {}, "com.slow"])
    [first, second] = callee_conn.take(INVOCATION)
    realm.clock.advance(5)
    [error] = caller_conn.take()
    assert error[:5] == [ERROR, 48, 1, {}, TIMEOUT]
    [interrupt] = callee_conn.take(INTERRUPT)
    assert interrupt[1] == first[1]
    realm.send(callee, callee_conn, [70, second[1], {}, ["done"]])  # answered in time
    [result] = caller_conn.take()
    assert result[:2] == [RESULT, 2]
    realm.clock.advance(10)
    assert caller_conn.take() == [] and realm.router.dealer.pending_calls == 0
    assert realm.router.stats.calls_timed_out == 1
    assert realm.clock.getDelayedCalls() == []  # no timer left behind


def test_prefix_index_holds_a_node_per_pattern_not_per_character():
    observations: ObservationMap[str] = ObservationMap(itertools.count(1).__next__)
    long = "x" * 60_000
    for n in range(20):
        observations.add(f"{long}.{n:02d}", PREFIX, "s")
    trie = observations._prefix
    assert trie.node_count() <= 2 * 20 + 1
    assert [o.pattern for o in observations.matching(f"{long}.07.tail")] == [f"{long}.07"]
    observations.remove_observer("s")
    assert trie.node_count() == 1 and not trie.root.children


# -- item 8: retained lookups by index; work spread over turns ---------------------------


patterns = st.one_of(
    st.tuples(
        st.sampled_from(["tantra.reading.d1.s1", "tantra.reading.d2.s3", "tantra.reading.d9.x"]),
        st.just(EXACT),
    ),
    st.tuples(
        st.sampled_from(
            ["", "t", "tantra.", "tantra.reading.", "tantra.reading.d", "tantra.reading.d1",
             "tantra.reading.d1.", "tantra.reading.d1.s", "tantra.readings", "com."]
        ),
        st.just(PREFIX),
    ),
    st.tuples(
        st.sampled_from(
            ["tantra.reading..s1", "tantra.reading.d2.", "..d1.s1", "tantra...", "a.b", "...."]
        ),
        st.just(WILDCARD),
    ),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=30),
    patterns,
)
def test_retained_by_index_equals_a_scan_of_the_cache_even_after_eviction(sensors, pattern):
    realm = Realm(max_sensors=5)
    for n, (device, sensor) in enumerate(sensors):
        realm.reading(f"d{device}", f"s{sensor}", float(n), ts=1_000 + n)
        if n % 3 == 0:
            realm.turn()
    realm.turn()
    bridge_retained = realm.router.broker._namespaces[0].retained(*pattern)
    found = sorted(topic for topic, _, _ in bridge_retained)
    expected = sorted(
        f"tantra.reading.{r.device}.{r.sensor}"
        for r in realm.hub.latest()
        if matches(*pattern, f"tantra.reading.{r.device}.{r.sensor}")
    )
    assert found == expected


def test_a_batch_of_joins_is_spread_over_turns_and_ingest_runs_between():
    realm = Realm(WampLimits(turn_budget=100))
    realm.fill(2000)
    _, good, subscription = well_behaved_pair(realm)
    session, connection = realm.join("joiner")
    joins = [
        [32, n + 1, {"get_retained": True}, f"tantra.reading.d{n % 100}.s{n}"] for n in range(1000)
    ]
    realm.send(session, connection, *joins, batched=True)
    first_turn = connection.take()
    assert 0 < len(first_turn) <= 100 + 1  # the budget, plus the message that crossed it
    assert connection.reading_paused
    realm.reading("farm-9", "probe", 7.0)  # ingest queued while the joins wait
    one_turn(realm.clock)
    assert [r.sensor for r in realm.dashboard.readings[-1:]] == ["probe"]  # not starved
    assert realm.clock.getDelayedCalls()  # the joins are not done yet
    answers = first_turn + connection.take()
    more_turns, later = turns_until_idle(realm.clock, connection)
    turns, answers = 1 + more_turns, answers + later
    assert turns >= 10
    assert not connection.reading_paused and connection.pauses == 1
    subscribed = [m[1] for m in answers if m[0] == SUBSCRIBED]
    assert subscribed == list(range(1, 1001))
    retained = [m for m in answers if m[0] == EVENT]
    assert len(retained) == 1000 and all(m[3]["retained"] for m in retained)
    assert [e[4][0]["sensor"] for e in good.take(EVENT) if e[1] == subscription] == ["probe"]


def turns_until_idle(clock: task.Clock, connection, limit: int = 10_000) -> tuple[int, list]:
    """Reactor turns until nothing is scheduled: how many, and what ``connection`` got."""
    turns, got = 0, []
    while clock.getDelayedCalls() and turns < limit:
        one_turn(clock)
        turns += 1
        got += connection.take()
    return turns, got


def one_turn(clock: task.Clock) -> None:
    """Run the calls due now, but not those they schedule (a reactor turn, unlike advance(0))."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in sorted(due, key=lambda c: c.getTime()):
        if call.active():
            clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)
