"""Auth and acks-after-commit together, in memory: refusals keep payload order, acks mean stored.

With a history store a device's acks wait for the commit (``tantra.commits``);
the auth layer adds replies that are not ingest outcomes (the TCP login
answer) and errors inside outcomes (``forbidden``, ``rate_limited``,
``replayed``). These tests pin that none of them jumps ahead of an ack the
device is owed, and that a signed UDP retry is acked only once stored.
"""

from __future__ import annotations

import json

import pytest

from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.security.gate import Auth, Ingress
from tantra.security.replay import ReplayGuard
from tantra.security.tokens import TokenTable
from tests.support.fakes import ControlledStore, RecordingSink
from tests.test_security_transports import Keys, Tcp, Udp, WebSocket, reading, signed


@pytest.fixture
def store():
    return ControlledStore()


@pytest.fixture
def hub(clock, store):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.commit_through(store)
    return hub


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def ingress(hub, keys):
    auth = Auth(TokenTable(keys.tokens), hub.counters)
    return Ingress(hub, auth=auth, replay=ReplayGuard(margin=1000), device_rate=2)


@pytest.fixture
def watcher(hub):
    sink = RecordingSink()
    hub.subscribe(sink)
    return sink


FORBIDDEN = {"error": "forbidden", "detail": "this token sends as device farm-1 only", "index": 0}


def test_tcp_login_answer_at_once_then_refusals_wait_behind_owed_acks(
    hub, clock, store, ingress, keys, watcher
):
    device = Tcp(hub, clock, ingress)
    assert device.send(json.dumps({"auth": keys.farm1}).encode()) == [
        {"ok": "auth", "device": "farm-1"}
    ], "nothing waits before the login: answered at once"
    assert device.send(reading(seq=1)) == [], "the ack waits for the commit"
    assert device.send(reading(device="farm-2", seq=2)) == [], "behind the ack it follows"
    assert device.send(reading(seq=3)) == []
    assert device.send(reading(seq=4)) == [], "over --device-rate 2: behind the acks too"
    clock.advance(0)
    assert [(r.device, r.seq) for r in watcher.readings] == [("farm-1", 1), ("farm-1", 3)]
    store.commit()
    assert [json.loads(x) for x in device.transport.drain().splitlines()] == [
        {"ack": 1},
        FORBIDDEN,
        {"ack": 3},
        {
            "error": "rate_limited",
            "detail": "more than 2 readings per second for farm-1",
            "index": 0,
        },
    ]
    assert hub.counters.auth.forbidden == 1 and hub.counters.auth.rate_limited == 1


def test_tcp_refusal_alone_is_written_at_once(hub, clock, store, ingress, keys):
    device = Tcp(hub, clock, ingress)
    device.send(json.dumps({"auth": keys.farm1}).encode())
    assert device.send(reading(device="farm-2", seq=2)) == [FORBIDDEN]
    assert store.turns == [], "nothing was accepted, nothing to commit"


def test_websocket_device_token_replies_keep_order_with_commits(
    hub, clock, store, ingress, keys, watcher
):
    client = WebSocket(hub, clock, ingress, f"/?token={keys.farm1}")
    assert client.status == 101
    assert client.send(reading(seq=7)) == []
    assert client.send(reading(device="farm-2", seq=8)) == []
    clock.advance(0)
    assert [r["seq"] for r in client.readings()] == [7], "broadcast before the commit"
    store.commit()
    assert client.readings() == [{"ack": 7}, FORBIDDEN]


def test_udp_signed_ack_after_commit_and_retry_waits_for_the_first_copy(
    hub, clock, store, ingress, keys, watcher
):
    udp = Udp(hub, clock, ingress)
    datagram = signed(keys.farm1, device="farm-1", seq=10)
    assert udp.send(datagram) is None, "no ack before the commit"
    assert udp.send(datagram) is None, "a retry of an uncommitted reading waits too"
    clock.advance(0)
    store.commit()
    assert udp.protocol.transport.sent == [(b'{"ack":10}', ("10.1.2.3", 1))] * 2
    udp.protocol.transport.sent = []
    assert udp.send(datagram) == [{"ack": 10}], "committed before: acked at once"
    clock.advance(0)
    assert [r.seq for r in watcher.readings] == [10], "accepted once"
    assert [[r.seq for r in readings] for readings, _ in store.turns] == [[10]]


def test_udp_signed_retry_after_a_shed_commit_is_stored_afresh(
    hub, clock, store, ingress, keys, watcher
):
    udp = Udp(hub, clock, ingress)
    datagram = signed(keys.farm1, device="farm-1", seq=20)
    assert udp.send(datagram) is None
    clock.advance(0)
    store.shed()
    assert udp.protocol.transport.sent == [], "not stored: no ack"
    assert udp.send(datagram) is None, "the replay guard saw it, but it was never stored"
    clock.advance(0)
    assert [[r.seq for r in readings] for readings, _ in store.turns] == [[20], [20]]
    store.commit()
    assert udp.protocol.transport.sent == [(b'{"ack":20}', ("10.1.2.3", 1))]
    assert hub.counters.auth.replayed == 0


def test_udp_replayed_answered_after_the_commit_it_shares_a_datagram_with(
    hub, clock, store, ingress, keys
):
    udp = Udp(hub, clock, ingress)
    for seq in range(100, 170):
        udp.send(signed(keys.farm1, device="farm-1", seq=seq))
        clock.advance(1)  # one a second: under --device-rate
    store.commit()
    for index in range(len(store.turns)):
        if not store.turns[index][1].called:
            store.commit(index)
    udp.protocol.transport.sent = []
    from tantra.security import signing

    batch = signing.sign(
        b"[" + reading(device="farm-1", seq=100) + b"," + reading(device="farm-1", seq=170) + b"]",
        keys.farm1,
    )
    assert udp.send(batch) is None, "the new reading's ack waits; the refusal waits with it"
    clock.advance(0)
    store.commit()
    (sent,) = udp.protocol.transport.sent
    assert [json.loads(x) for x in sent[0].split(b"\n")] == [
        {"ack": [170]},
        {"error": "replayed", "detail": "seq 100 was used already", "index": 0},
    ]


def test_udp_retry_after_a_clean_restart_is_acked_as_stored_not_replayed(clock, keys):
    """The new hub after a clean stop: its replay floor is the old mark, and its
    de-dup window was rebuilt from the store. A retry of a reading the old hub
    stored (its ack never left) is a duplicate: acked, neither stored nor
    broadcast again. A seq at the floor that was never stored is ``replayed``."""
    store = ControlledStore()
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.remember_committed([("farm-1", 7, 0), ("farm-1", 10, 0)])  # what the store held
    hub.commit_through(store)
    sink = RecordingSink()
    hub.subscribe(sink)
    auth = Auth(TokenTable(keys.tokens), hub.counters)
    guard = ReplayGuard(margin=1000, floors={"farm-1": 10})  # "clean": the exact mark
    udp = Udp(hub, clock, Ingress(hub, auth=auth, replay=guard))
    for seq in (10, 7):
        assert udp.send(signed(keys.farm1, device="farm-1", seq=seq)) == [{"ack": seq}]
    assert udp.send(signed(keys.farm1, device="farm-1", seq=9)) == [
        {"error": "replayed", "detail": "seq 9 was used already", "index": 0}
    ], "at the floor and never stored: refused"
    assert udp.send(signed(keys.farm1, device="farm-1", seq=11)) is None, "new: waits"
    clock.advance(0)
    store.commit()
    assert udp.protocol.transport.sent == [(b'{"ack":11}', ("10.1.2.3", 1))]
    assert [r.seq for r in sink.readings] == [11]
    assert [[r.seq for r in readings] for readings, _ in store.turns] == [[11]]
    assert (hub.counters.auth.replayed, hub.counters.auth.replayed_acked) == (1, 2)


def test_udp_retry_below_the_replay_window_waits_for_its_uncommitted_first_copy(
    hub, clock, store, ingress, keys, watcher
):
    """Below the replay window but not yet committed: a duplicate whose ack waits for
    the first copy's commit; if that copy is shed, the next retry is ``replayed``
    (never stored twice: the device re-numbers it)."""
    udp = Udp(hub, clock, ingress)
    for seq in range(100, 170):
        udp.send(signed(keys.farm1, device="farm-1", seq=seq))
        clock.advance(1)  # one a second: under --device-rate
    first = 0  # the turn holding seq 100
    assert udp.send(signed(keys.farm1, device="farm-1", seq=100)) is None, "waits for its turn"
    assert hub.counters.auth.replayed_acked == 1
    store.commit(first)
    assert udp.protocol.transport.sent == [(b'{"ack":100}', ("10.1.2.3", 1))] * 2
    udp.protocol.transport.sent = []
    store.shed(1)  # the turn holding seq 101: never stored, never acked
    assert udp.protocol.transport.sent == []
    assert udp.send(signed(keys.farm1, device="farm-1", seq=101)) == [
        {"error": "replayed", "detail": "seq 101 was used already", "index": 0}
    ]
    clock.advance(0)
    assert sum(len(readings) for readings, _ in store.turns) == 70, "nothing stored twice"
    assert [r.seq for r in watcher.readings] == list(range(100, 170))
