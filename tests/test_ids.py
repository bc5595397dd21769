"""Reading ids: numbered by the hub at its flush from the store's id source, stored as given."""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from tantra.hub import Filter, Hub
from tantra.model import Reading, number
from tantra.store import backend_for
from tantra.store.ids import BlockIds, CounterIds
from tantra.store.query import ReadingsQuery
from tantra.store.writer import Store
from tantra.wamp.bridge import HubBridge
from tests.support.fakes import ControlledStore, RecordingSink
from tests.support.stores import BACKENDS, store_url

T0 = 1_764_000_000_000


@given(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.booleans()),
    st.one_of(st.none(), st.text(max_size=16)),
    st.one_of(st.none(), st.integers(0, 2**53 - 1)),
)  # fmt: skip
def test_the_spliced_json_is_the_reading_with_its_id(id_, value, unit, seq):
    reading = Reading("d", "s", value, T0, unit, seq)
    assert b'"id"' not in reading.json and "id" not in reading.to_dict()
    assert number([reading], [id_]) == 1
    assert reading.id == id_
    assert (
        orjson.loads(reading.json)
        == {**reading.to_dict()}
        == {
            **orjson.loads(orjson.dumps(Reading("d", "s", value, T0, unit, seq).to_dict())),
            "id": id_,
        }
    )
    assert reading == Reading("d", "s", value, T0, unit, seq), "the id is not part of equality"


class StoreWithIds(ControlledStore):
    def __init__(self, ids):
        super().__init__()
        self.ids = ids


def test_the_hub_numbers_each_flush_before_any_sink_sees_it_and_only_with_a_store(clock):
    plain = Hub(clock)
    sink = RecordingSink()
    plain.subscribe(sink)
    plain.ingest(b'{"sensor":"t","value":1}', default_device="d")
    plain.flush()
    assert sink.readings[0].id is None and b'"id"' not in sink.readings[0].json
    assert plain.last_id is None

    hub = Hub(clock)
    store = StoreWithIds(CounterIds(41))
    hub.keep_history(store)
    assert hub.history is store and hub.last_id == 40
    sink = RecordingSink()
    hub.subscribe(sink)
    hub.ingest(b'[{"sensor":"t","value":1},{"sensor":"u","value":2}]', default_device="d")
    hub.flush()
    hub.ingest(b'{"sensor":"t","value":3}', default_device="d")
    hub.flush()
    assert [(r.id, orjson.loads(r.json)["id"]) for r in sink.readings] == [
        (41, 41),
        (42, 42),
        (43, 43),
    ]
    assert [r.id for readings, _ in store.turns for r in readings] == [41, 42, 43]
    assert hub.last_id == 43
    _, snapshot = hub.subscribe(RecordingSink(), Filter.of(["d"]))
    assert [(r.sensor, r.to_dict()["id"]) for r in snapshot] == [("u", 42), ("t", 43)]


def test_block_ids_reserve_ahead_hand_out_what_they_have_and_retry_after_a_failure():
    clock = Clock()
    asked: list[defer.Deferred] = []

    def reserve(count):
        asked.append(defer.Deferred())
        return asked[-1]

    ids = BlockIds(reserve, seconds=clock.seconds, block=4, first=range(1, 5), last=0)
    assert ids.take(3) == [1, 2, 3] and ids.last == 3
    assert len(asked) == 1, "fewer than a block left: the next one is asked for at once"
    assert ids.take(1) == [4]
    assert len(asked) == 1, "one reservation at a time"
    assert ids.take(2) == [] and ids.missed == 2 and ids.last == 4, "none ready: none given"
    asked[0].callback([7, 9, 10, 11])  # another hub took 8 in between
    assert ids.take(5) == [7, 9, 10, 11] and ids.missed == 3
    asked[1].errback(RuntimeError("database down"))
    assert ids.take(1) == [] and len(asked) == 2, "no retry within the second"
    clock.advance(1.0)
    assert ids.take(1) == [] and len(asked) == 3
    asked[2].callback(range(20, 24))
    assert ids.take(2) == [20, 21] and ids.last == 21


def test_the_wamp_event_of_a_published_reading_carries_its_id(clock):
    from autobahn.wamp import message

    from tantra.wamp.broker import Broker
    from tantra.wamp.dealer import Dealer
    from tantra.wamp.peer import WampStats

    hub = Hub(clock)
    hub.keep_history(StoreWithIds(CounterIds(7)))
    stats = WampStats()
    ids = iter(range(1, 1000))
    broker = Broker(
        new_subscription_id=lambda: 1, new_publication_id=lambda: next(ids), stats=stats
    )
    sent: list = []
    broker.dispatch_batch = sent.extend  # type: ignore[method-assign]
    broker.subscriptions = {1: None}  # type: ignore[assignment]  # "someone subscribed"
    bridge = HubBridge(hub, broker, Dealer(new_registration_id=lambda: 1,
                                           new_request_id=lambda: 1, stats=stats), stats)  # fmt: skip
    hub.subscribe(bridge)

    class Peer:
        session_id, authid, authrole = 5, "a", "r"

        def send(self, msg):
            pass

    bridge.publish(Peer(), message.Publish(1, "tantra.reading.d.s", args=[{"value": 1}]), 99)
    hub.ingest(b'{"sensor":"t","value":2}', default_device="d")
    hub.flush()
    assert [(p.id, p.args[0]["id"]) for p in sent] == [(99, 7), (sent[1].id, 8)]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with store_url(request.param, tmp_path) as made:
        yield made


@pytest_twisted.ensureDeferred
async def test_the_store_keeps_the_ids_the_hub_gave_and_numbers_the_rest_above_them(url):
    store = Store(backend_for(url), reactor)
    store.start()
    try:
        hub = Hub(reactor)
        hub.keep_history(store)
        sink = RecordingSink()
        hub.subscribe(sink)
        hub.ingest(b'[{"sensor":"a","value":10},{"sensor":"b","value":2.5}]', default_device="d")
        hub.flush()
        given_ids = [r.id for r in sink.readings]
        assert given_ids[1] == given_ids[0] + 1
        # no id ready (a PostgreSQL block that did not come in time): the writer numbers it
        orphan = Reading("d", "c", True, T0)
        stored = await store.submit([orphan]).addTimeout(10, reactor)
        hub.ingest(b'{"sensor":"a","value":3}', default_device="d")
        hub.flush()
        await store.submit([]).addTimeout(10, reactor)  # after the flush's group
        rows = await store.query("readings", ReadingsQuery(order="asc")).addTimeout(10, reactor)
        by_value = {row.value: row.id for row in rows}
        assert by_value[10] == given_ids[0] and by_value[2.5] == given_ids[1]
        assert by_value[True] == stored[0] > max(given_ids)
        assert sink.readings[-1].id == by_value[3] and hub.last_id == by_value[3]
        assert len(set(by_value.values())) == 4
    finally:
        await store.stop()
