"""The resume switch-over in memory: a controlled store, the real hub, a ResumeOutbox.

The store's commits and its history reads are fired by the test, so every
interleaving the reactor can produce (readings accepted while a page is
being read, readings still uncommitted at join, a client that stops reading)
is reproduced exactly.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer

from tantra.hub import EVERYTHING, Filter, Hub
from tantra.model import Reading
from tantra.resume import (
    HISTORY_FAILED,
    OVERFLOW,
    BadSince,
    ResumeOutbox,
    parse_since,
    resume_fetch,
)
from tantra.store.ids import CounterIds
from tantra.store.query import StoredReading


class History:
    """A store whose commits and reads the test fires; reads answer from what is committed."""

    def __init__(self):
        self.ids = CounterIds(1)
        self.unsettled: list[tuple[list[Reading], defer.Deferred]] = []
        self.committed: list[Reading] = []
        self.reads: list[tuple[tuple, defer.Deferred]] = []

    def submit(self, readings):
        d = defer.Deferred()
        self.unsettled.append((list(readings), d))
        return d

    def commit_all(self):
        while self.unsettled:
            readings, d = self.unsettled.pop(0)
            self.committed.extend(readings)
            d.callback([r.id for r in readings])

    def uncommitted(self):
        return [r for readings, _ in self.unsettled for r in readings]

    def query(self, name, *args):
        assert name == "readings_after_id"
        d = defer.Deferred()
        self.reads.append((args, d))
        return d

    def answer(self, index=-1):
        (after, wanted, limit, before), d = self.reads[index]
        rows = [
            StoredReading(r.id, r.device, r.sensor, r.value, r.unit, r.ts, r.seq)
            for r in sorted(self.committed, key=lambda r: r.id)
            if after < r.id < before
            and (not wanted.devices or r.device in wanted.devices)
            and (not wanted.sensors or r.sensor in wanted.sensors)
        ][:limit]
        d.callback(rows)


class Client:
    """What the outbox wrote, decoded from the frames it would have sent."""

    def __init__(self):
        self.chunks: list[list[dict]] = []
        self.gave_up: list[str] = []

    def write(self, data: bytes) -> None:
        self.chunks.append([orjson.loads(line) for line in data.split(b"\n") if line])

    @property
    def ids(self) -> list[int]:
        return [item["id"] for chunk in self.chunks for item in chunk]


def encode(readings):
    return b"".join(r.json + b"\n" for r in readings)


def encode_stored(rows):
    return b"".join(orjson.dumps(row.to_dict()) + b"\n" for row in rows)


@pytest.fixture
def history():
    return History()


@pytest.fixture
def hub(clock, history):
    hub = Hub(clock)
    hub.keep_history(history)
    return hub


def outbox_for(
    hub, clock, client, filter_=EVERYTHING, encode_stored=encode_stored, **kwargs
) -> ResumeOutbox:
    return ResumeOutbox(
        write=client.write,
        encode=encode,
        encode_stored=encode_stored,
        fetch=resume_fetch(hub, filter_),
        clock=clock,
        stall_timeout=30.0,
        on_give_up=client.gave_up.append,
        counters=hub.counters,
        **kwargs,
    )


def send(hub, *values, device="a", sensor="t"):
    for value in values:
        hub.ingest(
            orjson.dumps({"device": device, "sensor": sensor, "value": value}), default_device="x"
        )
    hub.flush()


def test_every_reading_after_since_exactly_once_across_commits_pages_and_live(hub, clock, history):
    send(hub, 1, 2, 3, 4, 5)  # ids 1-5, committed
    history.commit_all()
    send(hub, 6, 7, 8)  # ids 6-8, handed to the store, not committed yet
    hub.ingest(b'{"sensor":"t","value":9}', default_device="a")  # accepted, not yet flushed
    client = Client()
    outbox = outbox_for(hub, clock, client, page=2)
    outbox.join(hub, EVERYTHING, since=2)
    assert history.reads[0][0][0::3] == (2, 6), "reads 2 < id < first uncommitted"
    hub.flush()  # id 9 arrives live during the replay: held
    history.commit_all()  # 6-9 commit while the history is being read
    send(hub, 10)
    assert client.chunks == [] and outbox.backlog == 5
    history.answer()  # 3, 4: a full page, the next is asked for
    assert history.reads[1][0][0::3] == (4, 6)
    send(hub, 11)
    history.answer()  # 5: the last page; then what was held
    assert outbox.replayed == 3 and not outbox.replaying
    send(hub, 12)
    assert client.ids == list(range(3, 13))
    assert [item["value"] for chunk in client.chunks for item in chunk] == list(range(3, 13))
    assert client.gave_up == []


def test_a_filter_applies_to_the_history_the_uncommitted_and_live_readings(hub, clock, history):
    send(hub, 1, device="a")
    send(hub, 2, device="b")
    history.commit_all()
    send(hub, 3, device="b")
    send(hub, 4, device="a")
    client = Client()
    only_a = Filter.of(["a"])
    outbox = outbox_for(hub, clock, client, only_a)
    outbox.join(hub, only_a, since=0)
    assert history.reads[0][0][1].devices == ("a",)
    send(hub, 5, device="b")
    send(hub, 6, device="a")
    history.answer()
    assert [item["value"] for chunk in client.chunks for item in chunk] == [1, 4, 6]


def test_a_client_that_is_up_to_date_goes_live_at_once(hub, clock, history):
    send(hub, 1, 2)
    history.commit_all()
    client = Client()
    outbox = outbox_for(hub, clock, client)
    outbox.join(hub, EVERYTHING, since=2)
    assert history.reads == [] and not outbox.replaying
    send(hub, 3)
    assert client.ids == [3]


def test_paused_the_replay_waits_and_live_readings_are_held_whole_not_conflated(
    hub, clock, history
):
    send(hub, *range(1, 6))
    history.commit_all()
    client = Client()
    outbox = outbox_for(hub, clock, client, page=2)
    outbox.join(hub, EVERYTHING, since=0)
    outbox.pauseProducing()
    history.answer()
    assert len(history.reads) == 1, "no next page while the socket is full"
    send(hub, 6, 7)  # the same sensor twice: both kept
    outbox.resumeProducing()
    history.answer()
    history.answer()
    outbox.pauseProducing()
    send(hub, 8, 9)
    assert client.ids == [1, 2, 3, 4, 5, 6, 7]
    outbox.resumeProducing()
    assert client.ids == list(range(1, 10))
    assert hub.counters.hub.conflated == 0


def test_past_the_bound_the_client_is_given_up_to_resume_again(hub, clock, history):
    send(hub, 1)
    history.commit_all()
    send(hub, 2)  # uncommitted at join: does not count towards the bound
    client = Client()
    outbox = outbox_for(hub, clock, client, limit=3)
    outbox.join(hub, EVERYTHING, since=0)
    send(hub, 3, 4, 5)
    assert client.gave_up == []
    send(hub, 6)
    assert client.gave_up == [OVERFLOW]
    assert hub.counters.hub.clients_dropped[OVERFLOW] == 1
    history.answer()
    send(hub, 7)
    assert client.chunks == [], "nothing written after giving up"


def test_a_history_that_cannot_be_read_gives_the_client_up(hub, clock, history):
    send(hub, 1)
    history.commit_all()
    client = Client()
    outbox_for(hub, clock, client).join(hub, EVERYTHING, since=0)
    history.reads[0][1].errback(RuntimeError("database is down"))
    assert client.gave_up == [HISTORY_FAILED]


def test_a_history_page_that_cannot_be_encoded_gives_the_client_up(hub, clock, history):
    """A bug in encoding a page ends the resume with 4002 like a failed read, never a hang."""
    send(hub, 1)
    history.commit_all()
    client = Client()

    def broken(rows):
        raise TypeError("Integer exceeds 64-bit range")

    outbox_for(hub, clock, client, encode_stored=broken).join(hub, EVERYTHING, since=0)
    history.answer()
    assert client.gave_up == [HISTORY_FAILED] and client.chunks == []


def test_since_needs_a_store_a_number_and_no_id_from_the_future(clock, hub):
    with pytest.raises(BadSince, match="keeps history \\(--store\\); this one keeps none"):
        parse_since(["1"], Hub(clock))
    send(hub, 1, 2)
    assert parse_since(["0"], hub) == 0 and parse_since(["2"], hub) == 2
    with pytest.raises(BadSince, match="newer than this hub's newest id \\(2\\)"):
        parse_since(["3"], hub)
    with pytest.raises(BadSince, match="more than once"):
        parse_since(["1", "2"], hub)


@given(st.text(max_size=30).filter(lambda t: not (t.isascii() and t.isdigit())))
def test_anything_but_a_whole_number_is_a_bad_since(text):
    hub = Hub(__import__("twisted.internet.task", fromlist=["Clock"]).Clock())
    hub.keep_history(History())
    with pytest.raises(BadSince):
        parse_since([text], hub)
