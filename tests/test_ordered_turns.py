"""Replies that wait for commits, settled once per turn (``Settlement``) rather than a Deferred per payload.

The per-payload Deferred path of ``OrderedReplies`` (any Deferred a caller
passes) is the behaviour before issue 14's change; the property test runs
both side by side on the same hub and store and compares what each
connection is written.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tantra.commits import Settlement
from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.transports import ordered
from tantra.transports.ordered import OrderedReplies
from tests.support.fakes import ControlledStore


def make_hub(clock: Clock, store: ControlledStore) -> Hub:
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.commit_through(store)
    return hub


def reading(seq: int | None, value: object = 1) -> dict:
    out: dict = {"sensor": "a", "value": value}
    if seq is not None:
        out["seq"] = seq
    return out


class Connection:
    """One device connection's ordered replies, recording each write."""

    def __init__(self, hub: Hub, device: str, **kwargs):
        self.hub = hub
        self.device = device
        self.writes: list[list[dict]] = []
        self.replies = OrderedReplies(self.writes.append, **kwargs)

    def send(self, *payload: dict, batch: bool = False) -> None:
        data = json.dumps(list(payload) if batch else payload[0]).encode()
        outcome = self.hub.ingest(data, default_device=self.device)
        if outcome.settled is not None or outcome.acks or outcome.errors:
            self.replies.add(outcome)

    @property
    def written(self) -> list[dict]:
        return [message for write in self.writes for message in write]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return ControlledStore()


def test_the_hub_hands_out_settlements_and_a_turn_tells_each_connection_once(clock, store):
    hub = make_hub(clock, store)
    one, two = Connection(hub, "d1"), Connection(hub, "d2")
    for seq in range(1, 6):
        one.send(reading(seq))
        two.send(reading(seq))
    outcome = hub.ingest(json.dumps(reading(9)).encode(), default_device="d3")
    assert isinstance(outcome.settled, Settlement)
    clock.advance(0)
    (turn,) = {t for t in outcome.settled.turns}
    assert list(turn.listeners) == [one.replies, two.replies], "once each, however many payloads"
    store.commit()
    assert one.writes == [[{"ack": seq} for seq in range(1, 6)]], "a turn's replies in one write"
    assert two.writes == [[{"ack": seq} for seq in range(1, 6)]]
    assert not turn.listeners


def test_order_across_connections_and_turns_a_later_commit_waits_behind_an_earlier_turn(
    clock, store
):
    hub = make_hub(clock, store)
    one, two = Connection(hub, "d1"), Connection(hub, "d2")
    one.send(reading(1))
    clock.advance(0)  # turn 0: d1/1
    two.send(reading(1))
    one.send(reading(2))
    one.send(reading(None, "x"))  # an error, queued behind the pending acks
    clock.advance(0)  # turn 1: d2/1, d1/2
    store.commit(1)
    assert one.written == [], "d1's first payload waits for turn 0"
    assert two.written == [{"ack": 1}]
    store.commit(0)
    assert [m.get("ack", m.get("error")) for m in one.written] == [1, 2, "invalid_reading"]
    assert len(one.writes) == 1, "everything now ready in one write"


def test_a_shed_turn_among_committed_ones_gets_errors_but_no_ack_and_the_resend_is_fresh(
    clock, store
):
    hub = make_hub(clock, store)
    conn = Connection(hub, "d1")
    conn.send(reading(1))
    clock.advance(0)
    conn.send(reading(2), reading(3, "x"), batch=True)
    clock.advance(0)
    conn.send(reading(4))
    clock.advance(0)
    store.commit(0)
    store.shed(1)
    store.commit(2)
    assert conn.written == [
        {"ack": 1},
        {"error": "invalid_reading", "detail": conn.written[1]["detail"], "index": 1},
        {"ack": 4},
    ]
    conn.send(reading(2))
    clock.advance(0)
    assert [r.seq for r in store.turns[-1][0]] == [2], "taken afresh, not as a duplicate"
    store.commit()
    assert conn.written[-1] == {"ack": 2}


def test_a_resend_of_a_pending_reading_waits_for_the_first_copys_turn(clock, store):
    hub = make_hub(clock, store)
    first, second = Connection(hub, "d1"), Connection(hub, "d1")
    first.send(reading(1))
    clock.advance(0)
    second.send(reading(1), reading(2), batch=True)  # spans turn 0 (the re-send) and turn 1
    clock.advance(0)
    store.commit(1)
    assert second.written == [], "seq 1 is not stored yet"
    store.commit(0)
    assert first.written == [{"ack": 1}]
    assert second.written == [{"ack": [1, 2]}]


def test_a_payload_spanning_a_shed_turn_is_answered_as_soon_as_that_turn_fails(clock, store):
    hub = make_hub(clock, store)
    first, second = Connection(hub, "d1"), Connection(hub, "d1")
    first.send(reading(1))
    clock.advance(0)
    second.send(reading(1), reading(2), batch=True)
    clock.advance(0)
    store.shed(0)
    assert first.written == [] and second.written == [], "no ack, and no errors to send"
    assert second.replies.waiting == 0, "answered (with nothing) without waiting for turn 1"


def test_close_mid_turn_forgets_the_replies_and_wakes_when_written(clock, store):
    hub = make_hub(clock, store)
    closing, staying = Connection(hub, "d1"), Connection(hub, "d2")
    closing.send(reading(1))
    staying.send(reading(1))
    clock.advance(0)
    written = []
    closing.replies.when_written().addCallback(written.append)
    closing.replies.close()
    assert written == [None]
    store.commit()
    assert closing.writes == []
    assert staying.written == [{"ack": 1}]


def test_when_written_waits_for_the_turn(clock, store):
    hub = make_hub(clock, store)
    conn = Connection(hub, "d1")
    conn.send(reading(1))
    clock.advance(0)
    written = []
    conn.replies.when_written().addCallback(written.append)
    assert written == []
    store.commit()
    assert written == [None] and conn.written == [{"ack": 1}]


def test_a_turn_settle_below_the_bound_says_on_room(clock, store, monkeypatch):
    monkeypatch.setattr(ordered, "MAX_WAITING", 3)
    hub = make_hub(clock, store)
    events = []
    conn = Connection(
        hub, "d1", on_full=lambda: events.append("full"), on_room=lambda: events.append("room")
    )
    for seq in (1, 2, 3):
        conn.send(reading(seq))
    assert conn.replies.full and events == ["full"]
    clock.advance(0)
    store.commit()
    assert events == ["full", "room"] and not conn.replies.full
    assert conn.written == [{"ack": 1}, {"ack": 2}, {"ack": 3}]


def test_a_settlement_used_as_a_deferred_behaves_as_one(clock, store):
    hub = make_hub(clock, store)
    outcome = hub.ingest(json.dumps(reading(1)).encode(), default_device="d1")
    seen = []
    assert outcome.settled.addCallback(lambda _: "first") is outcome.settled.deferred()
    outcome.settled.addBoth(seen.append)
    clock.advance(0)
    store.commit()
    assert seen == ["first"], "later callbacks chain on the same Deferred"


# -- the per-turn path against the per-payload Deferred path ------------------

_values = st.sampled_from([1, 1, 1, 1, "x"])
_seqs = st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.none())
_readings = st.builds(reading, _seqs, _values)
_send = st.tuples(st.just("send"), st.integers(0, 2), st.lists(_readings, min_size=1, max_size=4))
_steps = st.lists(
    st.one_of(
        _send,
        _send,
        _send,
        st.tuples(st.just("flush")),
        st.tuples(st.just("flush")),
        st.tuples(st.sampled_from(["commit", "commit", "shed"]), st.integers(0, 9)),
        st.tuples(st.sampled_from(["commit", "commit", "shed"]), st.integers(0, 9)),
        st.tuples(st.just("close"), st.integers(0, 2)),
        # the device's last seq again, with a new one: a payload spanning two turns
        st.tuples(st.just("resend"), st.integers(0, 2), st.just([])),
    ),
    min_size=20,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_steps)
def test_per_turn_settling_writes_what_per_payload_deferreds_write(steps):
    """Each connection gets the same replies in the same order, and ``when_written``
    fires at the same step, whichever way its payloads wait."""
    clock, store = Clock(), ControlledStore()
    hub = make_hub(clock, store)
    devices = ["d0", "d1", "d0"]  # two connections of one device: re-sends across them
    written_new: list[list[dict]] = [[], [], []]
    written_old: list[list[dict]] = [[], [], []]
    new = [OrderedReplies(written.extend) for written in written_new]
    old = [OrderedReplies(written.extend) for written in written_old]
    done_new: list[list[int]] = [[], [], []]
    done_old: list[list[int]] = [[], [], []]
    last: dict[str, int] = {}
    for step, action in enumerate(steps):
        if action[0] in ("send", "resend"):
            _, c, payload = action
            if action[0] == "resend":
                again = last.get(devices[c], 1)
                payload = [reading(again), reading(again + 1)]
            for sent in payload:
                if "seq" in sent:
                    last[devices[c]] = sent["seq"]
            data = json.dumps(payload if len(payload) > 1 else payload[0]).encode()
            outcome = hub.ingest(data, default_device=devices[c])
            if outcome.settled is None and not (outcome.acks or outcome.errors):
                continue
            new[c].add(outcome)
            settled = outcome.settled
            if isinstance(settled, Settlement):
                settled = settled.deferred()
            old[c].add(outcome._replace(settled=settled))
            new[c].when_written().addCallback(lambda _, c=c, s=step: done_new[c].append(s))
            old[c].when_written().addCallback(lambda _, c=c, s=step: done_old[c].append(s))
        elif action[0] == "flush":
            clock.advance(0)
        elif action[0] == "close":
            new[action[1]].close()
            old[action[1]].close()
        else:
            pending = [i for i, (_, d) in enumerate(store.turns) if not d.called]
            if pending:
                index = pending[action[1] % len(pending)]
                getattr(store, action[0])(index)
        assert written_new == written_old
        assert [r.waiting for r in new] == [r.waiting for r in old]
        assert done_new == done_old
