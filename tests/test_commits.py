"""Acks after commit (tantra.commits through Hub.commit_through), with a store whose commits the test fires."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tantra.commits import NotCommitted
from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.replies import for_outcome
from tests.support.fakes import ControlledStore, RecordingSink


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return ControlledStore()


@pytest.fixture
def hub(clock, store):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.commit_through(store)
    return hub


def send(hub, payload: bytes):
    return hub.ingest(payload, default_device="ip-1")


def results(deferred):
    seen = []
    deferred.addBoth(seen.append)
    return seen


def test_ack_waits_for_the_commit_but_the_broadcast_does_not(hub, clock, store):
    sink = RecordingSink()
    hub.subscribe(sink)
    outcome = send(hub, b'{"sensor":"a","value":1,"seq":7}')
    assert outcome.acks == [7] and outcome.settled is not None
    settled = results(outcome.settled)
    clock.advance(0)
    assert [r.seq for r in sink.readings] == [7], "dashboards do not wait for the store"
    assert [[r.seq for r in readings] for readings, _ in store.turns] == [[7]]
    assert settled == []
    store.commit()
    assert settled == [None]
    assert for_outcome(outcome) == [{"ack": 7}]


def test_readings_without_seq_ask_for_no_wait(hub, clock, store):
    outcome = send(hub, b'{"sensor":"a","value":1}')
    assert outcome.settled is None
    clock.advance(0)
    assert len(store.turns) == 1, "still stored"
    store.shed()  # nobody waits; no unhandled error either


def test_a_resend_before_the_commit_is_a_duplicate_that_waits_for_the_first_copy(hub, clock, store):
    sink = RecordingSink()
    hub.subscribe(sink)
    first = results(send(hub, b'{"sensor":"a","value":1,"seq":1}').settled)
    clock.advance(0)
    again = send(hub, b'{"sensor":"a","value":1,"seq":1}')
    clock.advance(0)
    assert again.duplicates and not again.accepted
    assert [r.seq for r in sink.readings] == [1], "not broadcast twice"
    waiting = results(again.settled)
    assert waiting == [] and first == []
    store.commit(0)
    assert first == [None] and waiting == [None]


def test_a_resend_after_the_commit_is_acked_at_once(hub, clock, store):
    send(hub, b'{"sensor":"a","value":1,"seq":1}')
    clock.advance(0)
    store.commit()
    again = send(hub, b'{"sensor":"a","value":1,"seq":1}')
    assert again.duplicates and again.settled is None
    assert hub.stats.duplicates == 1


def test_a_device_idle_past_the_window_is_heard_again_from_seq_1(hub, clock, store):
    for seq in (1, 2, 3):
        send(hub, b'{"sensor":"a","value":1,"seq":%d}' % seq)
    clock.advance(0)
    store.commit()
    clock.advance(61)  # idle longer than the window's seconds, then a reboot: counts from 1
    assert not hub.accepted_before("ip-1", 2)
    again = send(hub, b'{"sensor":"a","value":2,"seq":1}')
    assert again.accepted and not again.duplicates, "as without a store (SeqWindow.is_duplicate)"
    assert again.settled is not None


def test_without_a_store_accepted_before_forgets_a_device_idle_past_the_window(clock):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    send(hub, b'{"sensor":"a","value":1,"seq":2}')
    assert hub.accepted_before("ip-1", 2)
    clock.advance(61)
    assert not hub.accepted_before("ip-1", 2), "as accept would: the window forgot the device"


def test_a_shed_turn_sends_no_ack_and_the_resend_is_taken_afresh(hub, clock, store):
    sink = RecordingSink()
    hub.subscribe(sink)
    outcome = send(hub, b'[{"sensor":"a","value":1,"seq":5},{"sensor":"b","value":"x"}]')
    settled = results(outcome.settled)
    clock.advance(0)
    store.shed()
    assert len(settled) == 1 and settled[0].check(NotCommitted)
    assert for_outcome(outcome._replace(acks=[])) == [
        {
            "error": "invalid_reading",
            "detail": "value must be a finite number or boolean",
            "index": 1,
        }
    ]
    again = send(hub, b'{"sensor":"a","value":1,"seq":5}')
    assert again.accepted and not again.duplicates, "never acked as a duplicate of nothing"
    clock.advance(0)
    store.commit()
    assert results(again.settled) == [None]
    third = send(hub, b'{"sensor":"a","value":1,"seq":5}')
    assert third.duplicates and third.settled is None, "committed now: acked at once"


def test_a_payload_spanning_two_turns_waits_for_both(hub, clock, store):
    send(hub, b'{"sensor":"a","value":1,"seq":1}')
    clock.advance(0)
    mixed = send(hub, b'[{"sensor":"a","value":1,"seq":1},{"sensor":"a","value":2,"seq":2}]')
    clock.advance(0)
    settled = results(mixed.settled)
    store.commit(1)
    assert settled == [], "the re-sent seq 1 is not stored yet"
    store.commit(0)
    assert settled == [None]


def test_one_shed_turn_fails_a_payload_that_spans_it(hub, clock, store):
    send(hub, b'{"sensor":"a","value":1,"seq":1}')
    clock.advance(0)
    mixed = send(hub, b'[{"sensor":"a","value":1,"seq":1},{"sensor":"a","value":2,"seq":2}]')
    clock.advance(0)
    settled = results(mixed.settled)
    store.commit(1)
    store.shed(0)
    assert len(settled) == 1 and settled[0].check(NotCommitted)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["commit", "shed", "wait"])),
        min_size=1,
        max_size=30,
    )
)
def test_an_ack_is_only_ever_given_for_a_committed_seq(steps):
    """Whatever the order of re-sends, commits and sheds: acked implies committed."""
    clock, store = Clock(), ControlledStore()
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.commit_through(store)
    committed: set[int] = set()
    acked: set[int] = set()
    open_turns: list[int] = []
    known_turns = 0

    def settle(index, how):
        readings, deferred = store.turns[index]
        if how == "commit":
            committed.update(r.seq for r in readings)
            deferred.callback(None)
        else:
            deferred.errback(RuntimeError("shed"))

    for seq, action in steps:
        outcome = hub.ingest(b'{"sensor":"s","value":1,"seq":%d}' % seq, default_device="d")
        if outcome.settled is None:
            acked.add(seq)
            assert seq in committed
        else:
            outcome.settled.addCallbacks(lambda _, s=seq: acked.add(s), lambda f: None)
        clock.advance(0)
        open_turns.extend(range(known_turns, len(store.turns)))
        known_turns = len(store.turns)
        if action != "wait" and open_turns:
            settle(open_turns.pop(0), action)
        assert acked <= committed
    while open_turns:
        settle(open_turns.pop(0), "commit")
    assert acked <= committed


# -- without a store: acks wait for the broadcast (Hub.ack_after_broadcast) -----


@pytest.fixture
def storeless(clock):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.ack_after_broadcast()
    return hub


class OrderLog:
    """A sink and an ack waiter writing to one log: which came first."""

    def __init__(self, hub):
        self.events: list[str] = []
        hub.subscribe(self)

    def deliver(self, batch) -> None:
        self.events.extend(f"broadcast {r.seq}" for r in batch.readings)

    def ack_when_settled(self, outcome) -> None:
        assert outcome.settled is not None, "the ack would go before the broadcast"
        outcome.settled.addCallback(lambda _: self.events.append(f"ack {outcome.acks}"))


def test_without_a_store_an_ack_goes_only_after_its_reading_was_broadcast(storeless, clock):
    log = OrderLog(storeless)
    outcome = send(storeless, b'{"sensor":"a","value":1,"seq":7}')
    assert outcome.acks == [7] and outcome.settled.state is None
    log.ack_when_settled(outcome)
    assert log.events == [], "nothing before the hub's turn"
    clock.advance(0)
    assert log.events == ["broadcast 7", "ack [7]"]
    assert outcome.settled.state is True
    assert for_outcome(outcome) == [{"ack": 7}]


def test_without_a_store_a_batch_and_a_same_turn_duplicate_wait_for_the_one_broadcast(
    storeless, clock
):
    log = OrderLog(storeless)
    batch = send(storeless, b'[{"sensor":"a","value":1,"seq":1},{"sensor":"b","value":2,"seq":2}]')
    resent = send(storeless, b'{"sensor":"a","value":1,"seq":1}')
    assert resent.duplicates and not resent.accepted
    log.ack_when_settled(batch)
    log.ack_when_settled(resent)
    clock.advance(0)
    assert log.events == ["broadcast 1", "broadcast 2", "ack [1, 2]", "ack [1]"]


def test_without_a_store_a_duplicate_of_a_broadcast_reading_is_acked_at_once(storeless, clock):
    send(storeless, b'{"sensor":"a","value":1,"seq":1}')
    clock.advance(0)
    resent = send(storeless, b'{"sensor":"a","value":1,"seq":1}')
    assert resent.duplicates and resent.settled is None
    assert storeless.until_broadcast() is None
    lone = send(storeless, b'{"sensor":"a","value":1}')
    assert lone.settled is None, "a reading without seq owes no ack, so waits for nothing"
    assert storeless.until_broadcast() is not None, "a retry's first copy may be pending now"


def test_an_explicit_flush_releases_the_acks_it_broadcast(storeless, clock):
    """A clean stop flushes the hub before the goodbyes: pending acks go out with it."""
    outcome = send(storeless, b'{"sensor":"a","value":1,"seq":3}')
    storeless.flush()
    assert outcome.settled.state is True
    assert clock.getDelayedCalls() == []


def test_a_sink_that_raises_neither_stops_the_others_nor_strands_the_acks(storeless, clock):
    class Broken:
        def deliver(self, batch):
            raise RuntimeError("a bug in one sink")

    storeless.subscribe(Broken())
    log = OrderLog(storeless)
    outcome = send(storeless, b'{"sensor":"a","value":1,"seq":3}')
    log.ack_when_settled(outcome)
    storeless.flush()
    assert log.events == ["broadcast 3", "ack [3]"]


def test_a_store_makes_acks_wait_for_the_commit_instead(storeless, clock, store):
    storeless.commit_through(store)
    outcome = send(storeless, b'{"sensor":"a","value":1,"seq":3}')
    clock.advance(0)
    assert outcome.settled.state is None, "broadcast, but not yet committed"
    store.commit()
    assert outcome.settled.state is True


def test_without_the_call_acks_go_at_once(clock):
    """The bare hub (unit tests, embedders) keeps the old rule: acks at once."""
    hub = Hub(clock)
    assert send(hub, b'{"sensor":"a","value":1,"seq":3}').settled is None
