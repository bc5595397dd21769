"""Issue 8, the hub core: hostile values, cardinality and joins cost only their sender.

Each class of bad input: the exact reply, the memory bound, and a well-behaved
device and dashboard alongside that lose nothing.
"""

from __future__ import annotations

import json
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.counters import Counters
from tantra.dedupe import SeqWindow
from tantra.hub import EVERYTHING, Batch, Filter, Hub
from tantra.model import (
    INT_MAX,
    INT_MIN,
    TS_MAX_AGE_MS,
    TS_MAX_AHEAD_MS,
    Reading,
    parse_payload,
    validate_reading,
)
from tantra.outbox import SNAPSHOT_CHUNK, Outbox
from tantra.transports.dashboard import DashboardFactory, encode_text_frames
from tantra.transports.raw import DeviceDatagramProtocol
from tantra.web.site import StatsResource
from tests.support.fakes import START, RecordingSink
from tests.test_raw import SOURCE, FakeDatagramTransport, connect_tcp, lines

NOW_MS = int(START * 1000)


@pytest.fixture
def hub(clock):
    return Hub(clock)


def frames_to_objects(data: bytes) -> list[dict]:
    """Decode consecutive unmasked text frames (the dashboard encoding) to objects."""
    out = []
    while data:
        length = data[1]
        start = 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        out.append(json.loads(data[start : start + length]))
        data = data[start + length :]
    return out


# -- item 1: an integer beyond 64 bits ---------------------------------------------


def test_bigint_datagram_is_kept_as_a_float_and_poisons_no_snapshot(hub, clock):
    udp = DeviceDatagramProtocol(hub, clock, error_rate=10)
    udp.transport = FakeDatagramTransport()
    live = RecordingSink()
    hub.subscribe(live)
    udp.datagramReceived(
        b'{"device":"u","sensor":"x","value":18446744073709551616,"ts":1e400,"seq":5}', SOURCE
    )
    udp.datagramReceived(b'{"device":"good","sensor":"t","value":21.5,"seq":1}', SOURCE)
    clock.advance(0)
    assert udp.transport.sent == [(b'{"ack":5}', SOURCE), (b'{"ack":1}', SOURCE)]
    _, snapshot = hub.subscribe(RecordingSink())  # a dashboard joining later
    assert frames_to_objects(encode_text_frames(snapshot)) == [
        {"device": "u", "sensor": "x", "value": 1.8446744073709552e19, "ts": NOW_MS, "seq": 5},
        {"device": "good", "sensor": "t", "value": 21.5, "ts": NOW_MS, "seq": 1},
    ]
    assert frames_to_objects(encode_text_frames(live.readings)) == frames_to_objects(
        encode_text_frames(snapshot)
    ), "the live dashboard got both readings of the turn"


def test_every_path_reads_a_bigint_the_same_way():
    """orjson (fast path), the stdlib fallback and WAMP's CBOR ints agree."""
    fast = parse_payload(b'{"sensor":"x","value":18446744073709551616}', default_device="d",
                         now_ms=NOW_MS)  # fmt: skip
    slow = parse_payload(b'[{"sensor":"x","value":18446744073709551616},{"sensor":"y","value":NaN}]',
                         default_device="d", now_ms=NOW_MS)  # fmt: skip
    wamp = validate_reading({"sensor": "x", "value": 2**64}, default_device="d", now_ms=NOW_MS)
    assert isinstance(wamp, Reading)
    assert fast.readings[0].value == slow.readings[0].value == wamp.value == 2.0**64
    assert type(wamp.value) is float
    assert slow.errors[0].index == 1


def test_a_reading_that_cannot_be_encoded_cannot_exist():
    with pytest.raises(ValueError, match="cannot be encoded"):
        Reading("d", "s", 2**64, NOW_MS)


@given(st.integers(min_value=-(2**1100), max_value=2**1100))
def test_any_integer_value_is_encodable_or_rejected(number):
    outcome = validate_reading({"sensor": "s", "value": number}, default_device="d", now_ms=NOW_MS)
    if isinstance(outcome, Reading):
        assert orjson.loads(outcome.json)["value"] == (
            number if INT_MIN <= number <= INT_MAX else float(number)
        )
    else:
        assert outcome.detail == "value must be a finite number or boolean"
        assert abs(number) > 1.7976931348623157e308


@given(st.integers(min_value=0, max_value=2**70))
def test_seq_and_ts_bigints_never_reach_a_reading(number):
    text = b'{"sensor":"s","value":1,"ts":%d}' % number
    (reading,) = parse_payload(text, default_device="d", now_ms=NOW_MS).readings
    plausible = NOW_MS - TS_MAX_AGE_MS <= number <= NOW_MS + TS_MAX_AHEAD_MS
    assert reading.ts == (number if plausible else NOW_MS)
    parsed = parse_payload(b'{"sensor":"s","value":1,"seq":%d}' % number, default_device="d",
                           now_ms=NOW_MS)  # fmt: skip
    assert bool(parsed.readings) == (number <= 2**53 - 1)


# -- item 13: a 5000-digit integer ------------------------------------------------------


def test_a_5000_digit_integer_costs_only_its_own_element(hub, clock):
    live = RecordingSink()
    hub.subscribe(live)
    _, device, transport = connect_tcp(hub, clock, max_line=20_000)
    huge = b"9" * 5000
    device.dataReceived(
        b'[{"sensor":"a","value":%s,"seq":1},{"sensor":"b","value":2,"seq":2},'
        b'{"sensor":"c","value":3,"seq":%s},{"sensor":"d","value":4,"ts":%s}]\n'
        % (huge, huge, huge)
    )
    clock.advance(0)
    assert lines(transport) == [
        {"ack": [2]},
        {"error": "invalid_reading", "detail": "value must be a finite number or boolean",
         "index": 0},
        {"error": "invalid_reading", "detail": "seq must be an integer from 0 to 9007199254740991",
         "index": 2},
    ]  # fmt: skip
    assert [(r.sensor, r.ts) for r in live.readings] == [("b", NOW_MS), ("d", NOW_MS)]


# -- item 5: no oversized buffers per reading ---------------------------------------------


def test_a_cached_reading_costs_hundreds_of_bytes_not_kilobytes():
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kept = [
            Reading("device-1", f"s{index}", index * 1.5, NOW_MS, "C", index)
            for index in range(500)
        ]
        framed = encode_text_frames(kept)  # what one dashboard's join makes each reading build
        per_reading = (tracemalloc.get_traced_memory()[0] - base - len(framed)) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_reading < 600, per_reading  # orjson's own output object alone is ~4 KB


# -- items 8 and 9: indexed snapshots and routing ---------------------------------------------

names = st.sampled_from(["a", "b", "c", "d"])
filters = st.builds(
    Filter.of, st.lists(names, max_size=2), st.lists(st.sampled_from(["x", "y", "z"]), max_size=2)
)
readings_of = st.lists(st.tuples(names, st.sampled_from(["x", "y", "z"])), max_size=40)


@settings(max_examples=60)
@given(st.lists(filters, min_size=1, max_size=6), readings_of, readings_of)
def test_routing_and_snapshots_match_a_brute_force_filter(filters_, before, after):
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock)
    for index, (device, sensor) in enumerate(before):
        hub.accept(parse_payload(b'{"device":"%s","sensor":"%s","value":%d}'
                                 % (device.encode(), sensor.encode(), index),
                                 default_device="x", now_ms=NOW_MS))  # fmt: skip
    hub.flush()
    everything = hub.latest()
    sinks = []
    for filter_ in filters_:
        sink = RecordingSink()
        _, snapshot = hub.subscribe(sink, filter_)
        assert snapshot == [r for r in everything if filter_.matches(r)]
        sinks.append((sink, filter_))
    for index, (device, sensor) in enumerate(after):
        hub.accept(parse_payload(b'{"device":"%s","sensor":"%s","value":%d}'
                                 % (device.encode(), sensor.encode(), index),
                                 default_device="x", now_ms=NOW_MS))  # fmt: skip
    hub.flush()
    accepted = hub.latest()
    for sink, filter_ in sinks:
        expected = [(r.device, r.sensor, r.value) for r in accepted if filter_.matches(r)]
        got = {(r.device, r.sensor): (r.device, r.sensor, r.value) for r in sink.readings}
        assert sorted(got.values()) == sorted(e for e in expected if (e[0], e[1]) in got)
        assert len(sink.readings) == sum(
            1 for device, sensor in after if filter_.matches(Reading(device, sensor, 0, 0))
        )


origins_of = st.lists(st.sampled_from([None, "bridge", "bus"]), max_size=40)


@settings(max_examples=60)
@given(st.lists(filters, min_size=1, max_size=6), readings_of, origins_of)
def test_routed_batches_keep_each_readings_origin(filters_, sent, tags):
    """The WAMP bridge knows its own publications by origin, in filtered batches too."""
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock)
    sinks = []
    for filter_ in [*filters_, EVERYTHING]:
        sink = RecordingSink()
        hub.subscribe(sink, filter_)
        sinks.append((sink, filter_))
    expected_pairs = []
    for index, (device, sensor) in enumerate(sent):
        origin = tags[index] if index < len(tags) else None
        outcome = hub.accept(parse_payload(b'{"device":"%s","sensor":"%s","value":%d}'
                                           % (device.encode(), sensor.encode(), index),
                                           default_device="x", now_ms=NOW_MS),
                             origin=origin)  # fmt: skip
        expected_pairs.extend((reading, origin) for reading in outcome.accepted)
    hub.flush()
    turn_has_origins = any(origin is not None for _, origin in expected_pairs)
    for sink, filter_ in sinks:
        wanted = [(r, o) for r, o in expected_pairs if filter_.matches(r)]
        got = [pair for batch in sink.batches for pair in batch.with_origins()]
        assert [(r.key, r.value, o) for r, o in got] == [(r.key, r.value, o) for r, o in wanted]
        for batch in sink.batches:
            assert (batch.origins is not None) == turn_has_origins
            assert all(a is b for a, (b, _) in zip(batch.readings, wanted, strict=False))


def test_distinct_filters_are_routed_by_index_not_tested_one_by_one(hub, clock):
    sinks = {}
    for index in range(2000):
        sink = RecordingSink()
        subscription, _ = hub.subscribe(sink, Filter.of([f"dash{index}"]))
        sinks[index] = (sink, subscription)
    calls = []
    original = Filter.matches
    Filter.matches = lambda self, reading: calls.append(1) or original(self, reading)
    try:
        hub.ingest(b'{"device":"dash7","sensor":"t","value":1}', default_device="x")
        clock.advance(0)
    finally:
        Filter.matches = original
    assert calls == [], "no group is tested reading by reading"
    assert [r.value for r in sinks[7][0].readings] == [1]
    assert sum(len(sink.readings) for sink, _ in sinks.values()) == 1
    for _sink, subscription in sinks.values():
        hub.unsubscribe(subscription)
    assert hub._device_routes == {} and hub._groups == {}


def test_latest_lookups_for_the_wamp_bridge(hub, clock):
    for device, sensor in [("farm-1", "a"), ("farm-2", "a"), ("farm-1", "b"), ("barn", "a")]:
        hub.ingest(b'{"device":"%s","sensor":"%s","value":1}' % (device.encode(), sensor.encode()),
                   default_device="x")  # fmt: skip
    clock.advance(0)
    hub.ingest(b'{"device":"farm-1","sensor":"a","value":2}', default_device="x")
    clock.advance(0)
    assert [(r.sensor, r.value) for r in hub.latest_for_device("farm-1")] == [("b", 1), ("a", 2)]
    assert sorted(name for name in hub.devices() if name.startswith("farm")) == ["farm-1", "farm-2"]
    assert [r.device for r in hub.latest(Filter.of(sensors=["a"]))] == ["farm-2", "barn", "farm-1"]
    assert hub.latest_for_device("nobody") == []
    assert hub.sensor_count() == 4


# -- item 10: a full cache ---------------------------------------------------------------------


def test_cycling_names_through_a_full_cache_keeps_the_newest_and_its_indices(clock):
    hub = Hub(clock, max_sensors=100)
    for start in range(0, 1000, 50):
        batch = b",".join(b'{"device":"d%d","sensor":"s%d","value":1}' % (i % 7, i)
                          for i in range(start, start + 50))  # fmt: skip
        hub.ingest(b"[" + batch + b"]", default_device="x")
        clock.advance(0)
    assert [r.sensor for r in hub.latest()] == [f"s{i}" for i in range(900, 1000)]
    assert hub.stats.sensors_evicted == 900
    assert sum(len(hub.latest_for_device(f"d{d}")) for d in range(7)) == 100
    assert sum(len(sensors) for sensors in hub._by_device.values()) == 100
    assert len(hub._by_sensor) == 100


# -- item 8: large snapshots go out in chunks ------------------------------------------------


class ChunkHarness:
    def __init__(self):
        self.clock = Clock()
        self.written: list[bytes] = []
        self.outbox = Outbox(
            write=self.written.append,
            encode=lambda readings: b"".join(b"%s;" % r.sensor.encode() for r in readings),
            clock=self.clock,
            stall_timeout=30.0,
            on_give_up=lambda reason: None,
            counters=Counters(),
        )

    def sensors(self) -> list[str]:
        return b"".join(self.written).decode().split(";")[:-1]


def test_a_large_snapshot_goes_out_a_chunk_a_turn_and_live_readings_follow_it():
    h = ChunkHarness()
    snapshot = [Reading("d", f"s{i}", i, 0) for i in range(SNAPSHOT_CHUNK * 3 + 1)]
    h.outbox.send_snapshot(snapshot)
    assert len(h.written) == 1, "the first chunk now, the rest on later turns"
    h.outbox.deliver(Batch([Reading("d", "s0", 99, 0), Reading("d", "live", 1, 0)]))
    h.outbox.pauseProducing()
    h.clock.advance(0)
    assert len(h.written) == 1, "a full transport stops the snapshot"
    h.outbox.resumeProducing()
    for _ in range(5):
        h.clock.advance(0)
    assert h.sensors() == [r.sensor for r in snapshot] + ["s0", "live"]
    assert len(h.written) == 4 + 1
    assert not h.outbox.sending_snapshot


def test_closing_mid_snapshot_forgets_it():
    h = ChunkHarness()
    h.outbox.send_snapshot([Reading("d", f"s{i}", i, 0) for i in range(SNAPSHOT_CHUNK * 2)])
    h.outbox.close()
    h.clock.advance(0)
    assert len(h.written) == 1 and h.clock.getDelayedCalls() == []


def test_small_snapshots_are_written_at_once():
    h = ChunkHarness()
    h.outbox.send_snapshot([Reading("d", "a", 1, 0)])
    assert h.sensors() == ["a"] and h.clock.getDelayedCalls() == []


# -- item 16: de-dup cardinality and eviction counters ------------------------------------------


def test_a_cardinality_flood_evicts_the_least_recently_active_and_is_counted(clock):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=300, max_devices=50))
    live = RecordingSink()
    hub.subscribe(live, EVERYTHING)
    hub.ingest(b'{"device":"real","sensor":"t","value":1,"seq":1}', default_device="x")
    for index in range(49):  # fills the window, "real" is the least recently active
        hub.ingest(b'{"device":"f%d","sensor":"t","value":1,"seq":1}' % index, default_device="x")
    hub.ingest(b'{"device":"real","sensor":"t","value":2,"seq":2}', default_device="x")
    for index in range(49, 60):
        hub.ingest(b'{"device":"f%d","sensor":"t","value":1,"seq":1}' % index, default_device="x")
    retry = hub.ingest(b'{"device":"real","sensor":"t","value":2,"seq":2}', default_device="x")
    clock.advance(0)
    assert retry.acks == [2] and len(retry.duplicates) == 1, "still remembered: recently active"
    assert hub.stats.dedupe_evicted == 11
    assert [r.value for r in live.readings if r.device == "real"] == [1, 2]
    stats = json.loads(StatsResource(hub, DashboardFactory(hub, clock)).render(DummyRequest([b""])))
    assert stats["dedupe_evicted"] == 11
    assert stats["sensors"] == hub.sensor_count() == 61
