"""The router without sockets: sessions driven with Autobahn message objects.

Each test builds a realm (router + hub bridge on a ``task.Clock`` hub), joins
fake connections that record what the router sends, and checks the messages.
"""

from __future__ import annotations

import itertools

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
import pytest
from autobahn.wamp import message
from autobahn.wamp.role import (
    RoleCalleeFeatures,
    RoleCallerFeatures,
    RolePublisherFeatures,
    RoleSubscriberFeatures,
)
from autobahn.wamp.serializer import JsonSerializer
from twisted.internet import task
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tantra.hub import EVERYTHING, Hub
from tantra.wamp.bridge import HubBridge
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.peer import IWampConnection, IWampPeer
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession, State
from tests.support.fakes import RecordingSink

NOW = 1_764_000_000.0
ROLES = {
    "publisher": RolePublisherFeatures(publisher_exclusion=True),
    "subscriber": RoleSubscriberFeatures(pattern_based_subscription=True),
    "caller": RoleCallerFeatures(progressive_call_results=True, call_canceling=True),
    "callee": RoleCalleeFeatures(progressive_call_results=True, call_canceling=True),
}


@implementer(IWampConnection)
class FakeConnection:
    def __init__(self, name: str):
        self.peer = name
        self.sent: list[tuple[message.Message, object]] = []
        self.closed: str | None = None

    def send(self, msg, conflation_key=None):
        self.sent.append((msg, conflation_key))

    def send_events(self, group):
        self.sent.extend(group.events)
        return 0

    def close(self, going_away=False):
        self.closed = "going away" if going_away else "normal"

    def take(self, kind=message.Message) -> list:
        """Messages of ``kind`` sent since the last take (all others are dropped too)."""
        found = [m for m, _ in self.sent if isinstance(m, kind)]
        self.sent.clear()
        return found


class Realm:
    def __init__(self, realm: str = "tantra"):
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.hub = Hub(self.clock)
        self.router = Router(realm, new_global_id=itertools.count(1000).__next__)
        HubBridge(self.hub, self.router.broker, self.router.dealer, self.router.stats).start()
        self.dashboard = RecordingSink()
        self.hub.subscribe(self.dashboard, EVERYTHING)

    def connect(self, name="client") -> tuple[RouterSession, FakeConnection]:
        connection = FakeConnection(name)
        return RouterSession(self.router, connection), connection

    def join(self, name="client", **hello) -> tuple[RouterSession, FakeConnection]:
        session, connection = self.connect(name)
        hello.setdefault("roles", dict(ROLES))
        session.on_message(message.Hello("tantra", **hello))
        [welcome] = connection.take(message.Welcome)
        assert session.state is State.JOINED
        assert welcome.session == session.session_id
        return session, connection

    def turn(self):
        self.clock.advance(0)


req = itertools.count(1).__next__


@pytest.fixture
def realm() -> Realm:
    return Realm()


# -- handshake and lifecycle ------------------------------------------------------------


def test_welcome_announces_implemented_features_as_booleans(realm):
    session, connection = realm.connect()
    session.on_message(message.Hello("tantra", roles=dict(ROLES)))
    [welcome] = connection.take()
    assert isinstance(welcome, message.Welcome)
    details = welcome.marshal()[2]
    assert details["realm"] == "tantra"
    assert details["authrole"] == details["authmethod"] == "anonymous"
    broker = details["roles"]["broker"]["features"]
    dealer = details["roles"]["dealer"]["features"]
    assert broker == {
        "pattern_based_subscription": True,
        "publisher_identification": True,
        "publisher_exclusion": True,
        "subscriber_blackwhite_listing": True,
        "event_retention": True,
    }
    assert dealer == {
        "caller_identification": True,
        "progressive_call_results": True,
        "call_canceling": True,
    }
    assert verifyObject(IWampPeer, session)


def test_unknown_realm_is_aborted_with_no_such_realm(realm):
    session, connection = realm.connect()
    session.on_message(message.Hello("elsewhere", roles=dict(ROLES)))
    [abort] = connection.take()
    assert isinstance(abort, message.Abort) and abort.reason == "wamp.error.no_such_realm"
    assert connection.closed == "normal" and session.state is State.CLOSED
    assert realm.router.sessions == {}
    assert realm.router.stats.aborts_sent["wamp.error.no_such_realm"] == 1


def test_only_anonymous_authentication_is_offered(realm):
    session, connection = realm.connect()
    session.on_message(message.Hello("tantra", roles=dict(ROLES), authmethods=["ticket"]))
    [abort] = connection.take()
    assert abort.reason == "wamp.error.no_auth_method"


@pytest.mark.parametrize(
    "first",
    [
        message.Subscribe(1, "a.b"),
        message.Goodbye(),
        message.Publish(1, "a.b"),
        message.Authenticate("sig"),
    ],
)
def test_anything_before_hello_is_a_protocol_violation(realm, first):
    session, connection = realm.connect()
    session.on_message(first)
    [abort] = connection.take()
    assert abort.reason == "wamp.error.protocol_violation"
    assert connection.closed and realm.router.stats.protocol_violations == 1
    session.on_message(message.Hello("tantra", roles=dict(ROLES)))  # ignored after the abort
    assert connection.take() == []


@pytest.mark.parametrize(
    "unexpected",
    [
        message.Hello("tantra", roles=dict(ROLES)),
        message.Event(1, 2),
        message.Result(1),
        message.Invocation(1, 2),
        message.Error(message.Call.MESSAGE_TYPE, 1, "x.y"),
    ],
)
def test_router_to_client_messages_from_a_client_are_protocol_violations(realm, unexpected):
    session, connection = realm.join()
    realm.router.broker.subscribe(session, message.Subscribe(req(), "a.b"))
    session.on_message(unexpected)
    [abort] = connection.take(message.Abort)
    assert abort.reason == "wamp.error.protocol_violation"
    assert len(realm.router.broker.subscriptions) == 0  # cleaned up


def test_goodbye_is_answered_and_everything_of_the_session_is_removed(realm):
    session, connection = realm.join()
    other, other_connection = realm.join("caller")
    session.on_message(message.Subscribe(req(), "a.b"))
    session.on_message(message.Subscribe(req(), "a.", match="prefix"))
    session.on_message(message.Register(req(), "app.add"))
    other.on_message(message.Call(call := req(), "app.add", args=[1, 2]))
    connection.take()
    session.on_message(message.Goodbye())
    [goodbye] = connection.take()
    assert isinstance(goodbye, message.Goodbye) and goodbye.reason == "wamp.close.goodbye_and_out"
    assert len(realm.router.broker.subscriptions) == 0
    assert realm.router.dealer.procedures == [
        "tantra.latest",
        "tantra.sensors",
        "tantra.history",
        "tantra.aggregate",
    ]
    # The pending call of the leaving callee fails instead of hanging.
    [error] = other_connection.take(message.Error)
    assert (error.request, error.error) == (call, "wamp.error.canceled")
    # The transport may carry a new session.
    assert session.state is State.NEW
    session.on_message(message.Hello("tantra", roles=dict(ROLES)))
    assert isinstance(connection.take()[0], message.Welcome)


def test_connection_lost_cleans_up_like_goodbye(realm):
    session, _ = realm.join()
    session.on_message(message.Subscribe(req(), "a..c", match="wildcard"))
    session.on_message(message.Register(req(), "app.echo"))
    session.connection_lost()
    assert len(realm.router.broker.subscriptions) == 0
    assert "app.echo" not in realm.router.dealer.procedures
    assert realm.router.sessions == {}


def test_router_shutdown_says_goodbye_and_waits_for_the_answer(realm):
    session, connection = realm.join()
    realm.router.shut_down()
    [goodbye] = connection.take()
    assert goodbye.reason == "wamp.close.system_shutdown"
    assert realm.router.sessions == {}
    session.on_message(message.Goodbye())
    assert connection.closed == "going away"


# -- broker ------------------------------------------------------------


def test_exact_prefix_and_wildcard_subscriptions_and_event_topics(realm):
    subscriber, connection = realm.join("subscriber")
    publisher, _ = realm.join("publisher")
    ids = {}
    for topic, match in [("a.b.c", "exact"), ("a.b", "prefix"), ("a..c", "wildcard")]:
        subscriber.on_message(message.Subscribe(req(), topic, match=match))
        [subscribed] = connection.take()
        ids[subscribed.subscription] = match
    publisher.on_message(message.Publish(req(), "a.b.c", args=[1], kwargs={"k": "v"}))
    events = connection.take(message.Event)
    assert sorted(ids[e.subscription] for e in events) == ["exact", "prefix", "wildcard"]
    for event in events:
        assert event.args == [1] and event.kwargs == {"k": "v"}
        # Pattern subscribers learn the concrete topic; exact ones know it already.
        assert event.topic == (None if ids[event.subscription] == "exact" else "a.b.c")
        assert event.publisher is None
    publisher.on_message(message.Publish(req(), "a.x.c"))
    assert [ids[e.subscription] for e in connection.take(message.Event)] == ["wildcard"]


def test_subscribers_of_one_pattern_share_one_subscription_and_unsubscribe(realm):
    one, one_connection = realm.join("one")
    two, two_connection = realm.join("two")
    one.on_message(message.Subscribe(req(), "a.b"))
    two.on_message(message.Subscribe(req(), "a.b"))
    [first] = one_connection.take()
    [second] = two_connection.take()
    assert first.subscription == second.subscription
    one.on_message(message.Unsubscribe(r := req(), first.subscription))
    assert isinstance(one_connection.take()[0], message.Unsubscribed)
    one.on_message(message.Unsubscribe(r2 := req(), first.subscription))
    [error] = one_connection.take()
    assert (error.request, error.error) == (r2, "wamp.error.no_such_subscription")
    assert r != r2
    two.on_message(message.Publish(req(), "a.b", exclude_me=False))
    assert len(two_connection.take(message.Event)) == 1
    assert one_connection.take(message.Event) == []


def test_exact_subscription_with_empty_component_is_an_invalid_uri(realm):
    session, connection = realm.join()
    session.on_message(message.Subscribe(r := req(), "a..c"))
    [error] = connection.take()
    assert (error.request, error.error) == (r, "wamp.error.invalid_uri")


def test_publish_acknowledge_exclude_me_and_disclose_me(realm):
    session, connection = realm.join()
    session.on_message(message.Subscribe(req(), "a.b"))
    connection.take()
    session.on_message(message.Publish(r := req(), "a.b", acknowledge=True))
    [published] = connection.take()
    assert isinstance(published, message.Published) and published.request == r
    session.on_message(message.Publish(req(), "a.b", exclude_me=False))
    [event] = connection.take()
    assert event.publisher is None
    # disclose_me arrives through the serializer (Autobahn's parser drops it).
    serializer = keeping_disclosure(JsonSerializer())
    raw = b'[16, 7, {"disclose_me": true, "exclude_me": false}, "a.b", [1]]'
    [publish] = serializer.unserialize(raw, False)
    session.on_message(publish)
    [event] = connection.take()
    assert (event.publisher, event.publisher_authid, event.publisher_authrole) == (
        session.session_id,
        session.authid,
        "anonymous",
    )


def test_exclude_and_eligible_by_session_authid_and_authrole(realm):
    sessions = [realm.join(f"s{n}", authid=f"user-{n}") for n in range(3)]
    for session, connection in sessions:
        session.on_message(message.Subscribe(req(), "a.b"))
        connection.take()
    publisher, _ = realm.join("publisher")
    ids = [s.session_id for s, _ in sessions]

    def receivers(**options):
        publisher.on_message(message.Publish(req(), "a.b", **options))
        return [n for n, (_, c) in enumerate(sessions) if c.take(message.Event)]

    assert receivers() == [0, 1, 2]
    assert receivers(exclude=[ids[0]]) == [1, 2]
    assert receivers(eligible=[ids[0], ids[1]]) == [0, 1]
    assert receivers(eligible=[ids[0], ids[1]], exclude=[ids[1]]) == [0]
    assert receivers(exclude_authid=["user-2"]) == [0, 1]
    assert receivers(eligible_authid=["user-2"]) == [2]
    assert receivers(exclude_authrole=["anonymous"]) == []
    assert receivers(eligible_authrole=["anonymous"]) == [0, 1, 2]
    assert receivers(eligible_authrole=["admin"]) == []


def test_retained_events_reach_exact_and_pattern_subscriptions(realm):
    publisher, _ = realm.join("publisher")
    publisher.on_message(message.Publish(req(), "farm.f1.rpm", args=[1], retain=True))
    publisher.on_message(message.Publish(req(), "farm.f1.rpm", args=[2], retain=True))
    publisher.on_message(message.Publish(req(), "farm.f2.rpm", args=[3], retain=True))
    publisher.on_message(message.Publish(req(), "farm.f3.rpm", args=[4]))  # not retained
    subscriber, connection = realm.join("subscriber")
    subscriber.on_message(message.Subscribe(req(), "farm.f1", match="prefix", get_retained=True))
    subscribed, event = connection.take()
    assert isinstance(subscribed, message.Subscribed)  # SUBSCRIBED first, then the events
    assert (event.args, event.retained, event.topic) == ([2], True, "farm.f1.rpm")
    subscriber.on_message(
        message.Subscribe(req(), "farm..rpm", match="wildcard", get_retained=True)
    )
    _, *events = connection.take()
    assert sorted(e.args[0] for e in events) == [2, 3]
    subscriber.on_message(message.Subscribe(req(), "farm.f2.rpm", get_retained=True))
    _, event = connection.take()
    assert event.args == [3] and event.topic is None
    subscriber.on_message(message.Subscribe(req(), "farm.f1.rpm"))  # no get_retained
    assert len(connection.take()) == 1


def test_retained_events_respect_the_publishers_exclusions(realm):
    publisher, _ = realm.join("publisher")
    publisher.on_message(message.Publish(req(), "a.b", retain=True, exclude_authid=["nosy"]))
    nosy, connection = realm.join("nosy", authid="nosy")
    nosy.on_message(message.Subscribe(req(), "a.b", get_retained=True))
    assert len(connection.take()) == 1  # SUBSCRIBED only


def test_retained_store_is_bounded():
    realm = Realm()
    realm.router.broker._max_retained = 2
    publisher, _ = realm.join()
    for n in range(3):
        publisher.on_message(message.Publish(req(), f"t.{n}", retain=True))
    subscriber, connection = realm.join()
    subscriber.on_message(message.Subscribe(req(), "t.", match="prefix", get_retained=True))
    assert sorted(e.topic for e in connection.take(message.Event)) == ["t.1", "t.2"]
    assert realm.router.stats.retained_evicted == 1


# -- hub bridge ------------------------------------------------------------


def reading(device="farm-1", sensor="soil", value=42, **extra) -> dict:
    return {"device": device, "sensor": sensor, "value": value, **extra}


def test_hub_readings_become_retained_events_on_reading_topics(realm):
    subscriber, connection = realm.join()
    subscriber.on_message(message.Subscribe(req(), "tantra.reading..soil", match="wildcard"))
    connection.take()
    realm.hub.ingest(
        b'[{"device": "farm-1", "sensor": "soil", "value": 42, "unit": "%"},'
        b' {"device": "farm-1", "sensor": "rpm", "value": 7}]',
        default_device="x",
    )
    realm.turn()
    [(event, key)] = connection.sent
    assert event.topic == "tantra.reading.farm-1.soil"
    assert event.args == [
        {"device": "farm-1", "sensor": "soil", "value": 42, "unit": "%", "ts": int(NOW * 1000)}
    ]
    assert key == (event.subscription, ("farm-1", "soil"))  # conflated per sensor if slow
    # The retained events are the hub's last-value cache, also for prefix subscriptions.
    late, late_connection = realm.join()
    late.on_message(
        message.Subscribe(req(), "tantra.reading.farm-1", match="prefix", get_retained=True)
    )
    _, *retained = late_connection.take()
    assert sorted(e.topic for e in retained) == [
        "tantra.reading.farm-1.rpm",
        "tantra.reading.farm-1.soil",
    ]
    assert all(e.retained for e in retained)
    assert [r["sensor"] for e in retained for r in e.args] == [r.sensor for r in realm.hub.latest()]


def test_a_wamp_reading_feeds_the_hub_once(realm):
    publisher, publisher_connection = realm.join("publisher")
    subscriber, connection = realm.join("subscriber")
    publisher.on_message(message.Subscribe(req(), "tantra.reading", match="prefix"))
    subscriber.on_message(message.Subscribe(req(), "tantra.reading", match="prefix"))
    publisher_connection.take()
    connection.take()
    publisher.on_message(
        message.Publish(
            r := req(),
            "tantra.reading.farm-2.rpm",
            args=[{"value": 1200, "unit": "rpm", "seq": 5}],
            acknowledge=True,
        )
    )
    [published] = publisher_connection.take()
    assert isinstance(published, message.Published) and published.request == r
    assert connection.take() == []  # nothing before the hub's turn
    realm.turn()
    [event] = connection.take()
    assert event.publication == published.publication  # one publication, end to end
    assert event.args[0]["device"] == "farm-2" and event.args[0]["seq"] == 5
    assert publisher_connection.take() == []  # exclude_me holds for readings too
    assert [(x.device, x.value) for x in realm.dashboard.readings] == [("farm-2", 1200)]
    assert realm.hub.stats.accepted == 1
    # The same seq again: acknowledged, but de-duplicated like any device reading.
    publisher.on_message(
        message.Publish(
            req(), "tantra.reading.farm-2.rpm", kwargs={"value": 1, "seq": 5}, acknowledge=True
        )
    )
    realm.turn()
    assert isinstance(publisher_connection.take()[0], message.Published)
    assert connection.take() == []
    assert realm.hub.stats.duplicates == 1


@pytest.mark.parametrize(
    ("topic", "args", "kwargs", "detail"),
    [
        ("tantra.reading.farm-1.soil", [{"value": "wet"}], None, "value must be a finite"),
        ("tantra.reading.farm-1.soil", [{"value": 1, "rssi": -70}], None, "unknown field"),
        ("tantra.reading.farm-1.soil", [{"value": 1, "device": "farm-2"}], None, "disagrees"),
        ("tantra.reading.farm-1.soil", None, {"value": 1, "sensor": "rpm"}, "disagrees"),
        ("tantra.reading.farm-1.soil", [{"value": 1}], {"value": 2}, "not both"),
        ("tantra.reading.farm-1.soil", [1, 2], None, "exactly one reading"),
        ("tantra.reading.farm-1.soil", None, None, "missing reading"),
        ("tantra.reading.farm-1", [{"value": 1}], None, "tantra.reading.<device>.<sensor>"),
        ("tantra.reading.farm-1.soil.x", [{"value": 1}], None, "<device>.<sensor>"),
    ],
)
def test_invalid_wamp_readings_are_refused_and_counted(realm, topic, args, kwargs, detail):
    publisher, connection = realm.join()
    publisher.on_message(
        message.Publish(r := req(), topic, args=args, kwargs=kwargs, acknowledge=True)
    )
    [error] = connection.take()
    assert isinstance(error, message.Error)
    assert (error.request, error.error) == (r, "wamp.error.invalid_argument")
    assert detail in error.args[0]
    assert error.kwargs["code"] == "invalid_reading"
    assert realm.hub.stats.rejected["invalid_reading"] == 1
    # Without acknowledge: no reply, still counted.
    publisher.on_message(message.Publish(req(), topic, args=args, kwargs=kwargs))
    assert connection.take() == []
    assert realm.hub.stats.rejected["invalid_reading"] == 2
    realm.turn()
    assert realm.dashboard.readings == []


def test_tantra_latest_and_sensors(realm):
    realm.hub.ingest(
        b'[{"device": "a", "sensor": "x", "value": 1, "unit": "V"},'
        b' {"device": "b", "sensor": "x", "value": 2},'
        b' {"device": "a", "sensor": "y", "value": 3}]',
        default_device="d",
    )
    realm.turn()
    caller, connection = realm.join()

    def call(*args, **kwargs):
        caller.on_message(message.Call(req(), *args, **kwargs))
        [answer] = connection.take()
        return answer

    assert [r["value"] for r in call("tantra.latest").args[0]] == [1, 2, 3]
    assert [r["value"] for r in call("tantra.latest", args=["a"]).args[0]] == [1, 3]
    assert [r["value"] for r in call("tantra.latest", kwargs={"sensor": "x"}).args[0]] == [1, 2]
    assert call("tantra.latest", args=[None, "y"]).args[0][0]["value"] == 3
    assert call("tantra.latest", kwargs={"device": "a", "sensor": "x"}).args[0] == [
        realm.hub.latest()[0].to_dict()
    ]
    assert call("tantra.sensors").args[0][0] == {
        "device": "a",
        "sensor": "x",
        "unit": "V",
        "ts": int(NOW * 1000),
    }
    for bad in [
        {"kwargs": {"colour": "red"}},
        {"args": ["a", "x", "z"]},
        {"args": ["bad name!"]},
        {"args": ["a"], "kwargs": {"device": "a"}},
    ]:
        error = call("tantra.latest", **bad)
        assert error.error == "wamp.error.invalid_argument", bad


# -- dealer ------------------------------------------------------------


def test_register_call_yield_and_errors(realm):
    callee, callee_connection = realm.join("callee")
    caller, caller_connection = realm.join("caller")
    callee.on_message(message.Register(req(), "app.add"))
    [registered] = callee_connection.take()
    caller.on_message(message.Call(c := req(), "app.add", args=[2, 3], kwargs={"k": 1}))
    [invocation] = callee_connection.take()
    assert (invocation.registration, invocation.args, invocation.kwargs) == (
        registered.registration,
        [2, 3],
        {"k": 1},
    )
    assert invocation.caller is None  # not disclosed unless asked
    callee.on_message(message.Yield(invocation.request, args=[5]))
    [result] = caller_connection.take()
    assert isinstance(result, message.Result) and (result.request, result.args) == (c, [5])
    # A callee's ERROR goes to the caller with the callee's URI and payload.
    caller.on_message(message.Call(c := req(), "app.add", args=["x"]))
    [invocation] = callee_connection.take()
    callee.on_message(
        message.Error(
            message.Invocation.MESSAGE_TYPE,
            invocation.request,
            "app.error.bad_type",
            args=["numbers only"],
        )
    )
    [error] = caller_connection.take()
    assert (error.request_type, error.request, error.error, error.args) == (
        message.Call.MESSAGE_TYPE,
        c,
        "app.error.bad_type",
        ["numbers only"],
    )
    # Late or foreign answers are ignored.
    callee.on_message(message.Yield(invocation.request, args=[1]))
    caller.on_message(message.Yield(invocation.request, args=[1]))
    assert caller_connection.take() == []


@pytest.mark.parametrize(
    ("procedure", "uri"),
    [
        ("tantra.latest", "wamp.error.procedure_already_exists"),
        ("tantra.mine", "wamp.error.not_authorized"),
        ("wamp.session.list", "wamp.error.not_authorized"),
    ],
)
def test_reserved_and_taken_procedures_cannot_be_registered(realm, procedure, uri):
    callee, connection = realm.join()
    callee.on_message(message.Register(r := req(), procedure))
    [error] = connection.take()
    assert (error.request, error.error) == (r, uri)


def test_one_callee_per_procedure_exact_only(realm):
    first, _ = realm.join()
    second, connection = realm.join()
    first.on_message(message.Register(req(), "app.x"))
    second.on_message(message.Register(req(), "app.x"))
    assert connection.take()[0].error == "wamp.error.procedure_already_exists"
    second.on_message(message.Register(req(), "app.", match="prefix"))
    assert connection.take()[0].error == "wamp.error.invalid_argument"
    second.on_message(message.Unregister(req(), 999))
    assert connection.take()[0].error == "wamp.error.no_such_registration"


def test_call_to_unknown_procedure(realm):
    caller, connection = realm.join()
    caller.on_message(message.Call(c := req(), "app.nothing"))
    [error] = connection.take()
    assert (error.request, error.error) == (c, "wamp.error.no_such_procedure")


def test_unregister_then_call_fails(realm):
    callee, callee_connection = realm.join()
    caller, caller_connection = realm.join()
    callee.on_message(message.Register(req(), "app.x"))
    [registered] = callee_connection.take()
    callee.on_message(message.Unregister(u := req(), registered.registration))
    [unregistered] = callee_connection.take()
    assert isinstance(unregistered, message.Unregistered) and unregistered.request == u
    caller.on_message(message.Call(req(), "app.x"))
    assert caller_connection.take()[0].error == "wamp.error.no_such_procedure"


def test_progressive_results_and_caller_disclosure(realm):
    callee, callee_connection = realm.join("callee")
    caller, caller_connection = realm.join("caller")
    callee.on_message(message.Register(req(), "app.count"))
    callee_connection.take()
    serializer = keeping_disclosure(JsonSerializer())
    [call] = serializer.unserialize(
        b'[48, 77, {"receive_progress": true, "disclose_me": true}, "app.count", [3]]', False
    )
    caller.on_message(call)
    [invocation] = callee_connection.take()
    assert invocation.receive_progress is True and invocation.caller == caller.session_id
    for n in (1, 2):
        callee.on_message(message.Yield(invocation.request, args=[n], progress=True))
    callee.on_message(message.Yield(invocation.request, args=[3]))
    results = caller_connection.take()
    assert [(r.args, bool(r.progress)) for r in results] == [([1], True), ([2], True), ([3], False)]
    assert {r.request for r in results} == {77}


@pytest.mark.parametrize(
    ("mode", "interrupts", "answered_at_once"),
    [
        ("skip", False, True),
        ("killnowait", True, True),
        ("kill", True, False),
    ],
)
def test_cancel_modes(realm, mode, interrupts, answered_at_once):
    callee, callee_connection = realm.join("callee")
    caller, caller_connection = realm.join("caller")
    callee.on_message(message.Register(req(), "app.slow"))
    callee_connection.take()
    caller.on_message(message.Call(c := req(), "app.slow"))
    [invocation] = callee_connection.take()
    caller.on_message(message.Cancel(c, mode=mode))
    interrupts_sent = callee_connection.take(message.Interrupt)
    assert bool(interrupts_sent) is interrupts
    errors = caller_connection.take(message.Error)
    assert bool(errors) is answered_at_once
    if not answered_at_once:
        callee.on_message(
            message.Error(
                message.Invocation.MESSAGE_TYPE, invocation.request, "wamp.error.canceled"
            )
        )
        errors = caller_connection.take(message.Error)
    assert [(e.request, e.error) for e in errors] == [(c, "wamp.error.canceled")]


def test_a_caller_that_leaves_interrupts_its_calls(realm):
    callee, callee_connection = realm.join("callee")
    caller, _ = realm.join("caller")
    callee.on_message(message.Register(req(), "app.slow"))
    caller.on_message(message.Call(req(), "app.slow"))
    callee_connection.take()
    caller.connection_lost()
    [interrupt] = callee_connection.take()
    assert isinstance(interrupt, message.Interrupt) and interrupt.mode == "killnowait"


# -- the realm setting ------------------------------------------------------------


def test_realm_setting_defaults_to_tantra_and_must_be_a_uri():
    from tantra.settings import SettingsError, resolve

    assert resolve({}, {}).realm == "tantra"
    assert resolve({"realm": "com.example.farm"}, {}).realm == "com.example.farm"
    assert resolve({}, {"realm": "farm"}).realm == "farm"
    for bad in ["", "two words", "a..b", 7]:
        with pytest.raises(SettingsError, match="realm"):
            resolve({"realm": bad}, {})


def test_a_refused_wamp_reading_is_logged_with_its_session(realm):
    from twisted.logger import globalLogPublisher

    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        publisher, _ = realm.join()
        publisher.on_message(message.Publish(req(), "tantra.reading.farm-1.soil", args=[{"v": 1}]))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    [event] = [e for e in seen if e.get("code") == "invalid_reading"]
    assert event["source"] == f"WAMP session {publisher.session_id}"
    assert event["detail"].startswith("tantra.reading.farm-1.soil: ")
