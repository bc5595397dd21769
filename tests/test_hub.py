"""The hub with a fake clock: fan-out per turn, filters, snapshot, de-dup, cache, counters."""

from __future__ import annotations

import pytest

from tantra.dedupe import SeqWindow
from tantra.hub import EVERYTHING, Batch, Filter, Hub
from tantra.model import Reading, parse_payload
from tantra.replies import for_outcome
from tests.support.fakes import START, RecordingSink


class BrokenSink:
    def deliver(self, batch):
        raise RuntimeError("boom")


@pytest.fixture
def hub(clock):
    return Hub(clock, dedupe=SeqWindow(size=4, seconds=60))


def send(hub, payload: bytes, device="ip-1"):
    return hub.ingest(payload, default_device=device)


def test_readings_of_one_turn_reach_every_sink_in_one_batch(hub, clock):
    sinks = [RecordingSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    send(hub, b'{"sensor":"a","value":1}')
    send(hub, b'[{"sensor":"b","value":2},{"sensor":"c","value":3}]')
    assert all(sink.batches == [] for sink in sinks), "delivery waits for the next turn"
    clock.advance(0)
    for sink in sinks:
        assert len(sink.batches) == 1
        assert [r.sensor for r in sink.readings] == ["a", "b", "c"]
    assert sinks[0].batches[0] is sinks[1].batches[0], "equal filters share one batch"
    assert hub.stats.delivered == 9
    assert hub.stats.accepted == 3


def test_batch_encodes_once_per_encoder():
    calls = []

    def encoder(readings):
        calls.append(len(readings))
        return b"x"

    batch = Batch([Reading("d", "s", 1, 0)])
    assert batch.encoded(encoder) == b"x"
    assert batch.encoded(encoder) == b"x"
    assert calls == [1]


def test_filters_pick_devices_and_sensors(hub, clock):
    everything, farm, soil, farm_soil = (RecordingSink() for _ in range(4))
    hub.subscribe(everything)
    hub.subscribe(farm, Filter.of(devices=["farm-1", "farm-2"]))
    hub.subscribe(soil, Filter.of(sensors=["soil"]))
    hub.subscribe(farm_soil, Filter.of(devices=["farm-1"], sensors=["soil"]))
    send(hub, b'{"device":"farm-1","sensor":"soil","value":1}')
    send(hub, b'{"device":"farm-2","sensor":"rpm","value":2}')
    send(hub, b'{"device":"mill","sensor":"soil","value":3}')
    clock.advance(0)
    assert [r.value for r in everything.readings] == [1, 2, 3]
    assert [r.value for r in farm.readings] == [1, 2]
    assert [r.value for r in soil.readings] == [1, 3]
    assert [r.value for r in farm_soil.readings] == [1]


def test_filter_with_no_match_gets_no_batch(hub, clock):
    sink = RecordingSink()
    hub.subscribe(sink, Filter.of(devices=["elsewhere"]))
    send(hub, b'{"sensor":"a","value":1}')
    clock.advance(0)
    assert sink.batches == []


def test_snapshot_then_live_never_both(hub, clock):
    send(hub, b'{"sensor":"a","value":1}')
    clock.advance(0)
    send(hub, b'{"sensor":"a","value":2}')  # queued, not yet delivered
    sink = RecordingSink()
    _, snapshot = hub.subscribe(sink)
    assert [r.value for r in snapshot] == [1]
    clock.advance(0)
    assert [r.value for r in sink.readings] == [2]
    assert [r.value for r in hub.latest()] == [2]


def test_snapshot_honours_filter_and_keeps_one_value_per_sensor(hub, clock):
    send(hub, b'{"device":"d1","sensor":"a","value":1}')
    send(hub, b'{"device":"d1","sensor":"a","value":2}')
    send(hub, b'{"device":"d1","sensor":"b","value":3}')
    send(hub, b'{"device":"d2","sensor":"a","value":4}')
    clock.advance(0)
    assert sorted(r.value for r in hub.latest()) == [2, 3, 4]
    assert [r.value for r in hub.latest(Filter.of(devices=["d1"], sensors=["a"]))] == [2]
    assert hub.sensors() == [
        {"device": "d1", "sensor": "a", "unit": None, "ts": int(START * 1000)},
        {"device": "d1", "sensor": "b", "unit": None, "ts": int(START * 1000)},
        {"device": "d2", "sensor": "a", "unit": None, "ts": int(START * 1000)},
    ]


def test_cache_keeps_the_newest_by_device_time(hub, clock):
    now = int(START * 1000)
    send(hub, b'{"sensor":"a","value":1,"ts":%d}' % now)
    send(hub, b'{"sensor":"a","value":0,"ts":%d}' % (now - 5000))  # late re-send of an older one
    clock.advance(0)
    assert [r.value for r in hub.latest()] == [1]


def test_cache_is_bounded(clock):
    hub = Hub(clock, max_sensors=2)
    for name in "abc":
        send(hub, b'{"sensor":"%s","value":1}' % name.encode())
    clock.advance(0)
    assert [r.sensor for r in hub.latest()] == ["b", "c"]
    assert hub.stats.sensors_evicted == 1


def test_duplicates_are_acked_but_not_delivered_again(hub, clock):
    sink = RecordingSink()
    hub.subscribe(sink)
    first = send(hub, b'{"sensor":"a","value":1,"seq":7}')
    again = send(hub, b'{"sensor":"a","value":1,"seq":7}')
    other_device = send(hub, b'{"sensor":"a","value":1,"seq":7}', device="ip-2")
    clock.advance(0)
    assert for_outcome(first) == [{"ack": 7}]
    assert for_outcome(again) == [{"ack": 7}]
    assert again.duplicates and not again.accepted
    assert other_device.accepted
    assert len(sink.readings) == 2
    assert hub.stats.duplicates == 1


def test_batch_acks_list_every_seq_in_order_and_reports_errors(hub):
    outcome = send(hub, b'[{"sensor":"a","value":1,"seq":1},{"sensor":"a","value":"x","seq":2},'
                        b'{"sensor":"a","value":3,"seq":3},{"sensor":"a","value":4}]')  # fmt: skip
    assert for_outcome(outcome) == [
        {"ack": [1, 3]},
        {"error": "invalid_reading", "detail": "value must be a finite number or boolean",
         "index": 1},
    ]  # fmt: skip
    assert hub.stats.rejected == {"invalid_reading": 1}


def test_no_ack_without_seq(hub):
    assert for_outcome(send(hub, b'{"sensor":"a","value":1}')) == []


def test_rejected_input_reaches_no_sink(hub, clock):
    sink = RecordingSink()
    hub.subscribe(sink)
    for bad in [b"nope", b"[]", b'{"sensor":"a"}', b"\xff"]:
        send(hub, bad)
    clock.advance(0)
    assert sink.batches == []
    assert hub.stats.rejected == {"invalid_json": 1, "empty_batch": 1, "invalid_reading": 1,
                                  "invalid_utf8": 1}  # fmt: skip


def test_unsubscribe_stops_delivery(hub, clock):
    sink = RecordingSink()
    subscription, _ = hub.subscribe(sink, Filter.of(sensors=["a"]))
    hub.unsubscribe(subscription)
    hub.unsubscribe(subscription)  # twice is harmless
    send(hub, b'{"sensor":"a","value":1}')
    clock.advance(0)
    assert sink.batches == []
    assert hub.subscriber_count == 0


def test_failing_sink_does_not_stop_the_others(hub, clock):
    good = RecordingSink()
    hub.subscribe(BrokenSink())
    hub.subscribe(good)
    send(hub, b'{"sensor":"a","value":1}')
    clock.advance(0)
    assert len(good.readings) == 1


def test_flush_now_delivers_and_cancels_the_scheduled_turn(hub, clock):
    sink = RecordingSink()
    hub.subscribe(sink)
    send(hub, b'{"sensor":"a","value":1}')
    hub.flush()
    assert len(sink.readings) == 1
    assert clock.getDelayedCalls() == []


def test_hub_time_comes_from_the_clock(hub, clock):
    clock.advance(2.5)
    (reading,) = send(hub, b'{"sensor":"a","value":1}').accepted
    assert reading.ts == int((START + 2.5) * 1000)


def test_everything_filter_is_the_default():
    assert Filter.of() == EVERYTHING


def test_rejections_are_logged_at_most_once_a_second(hub, clock):
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(5):
            send(hub, b"junk", device="ip-9")
        clock.advance(1.0)
        send(hub, b"[]", device="ip-9")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if e.get("log_namespace") == "tantra.hub"]
    assert [(e["source"], e["code"], e["count"]) for e in lines] == [
        ("ip-9", "invalid_json", 1),
        ("ip-9", "empty_batch", 5),
    ]


def test_origin_travels_with_accepted_readings_to_every_filter(hub, clock):
    everything, only_b = RecordingSink(), RecordingSink()
    hub.subscribe(everything)
    hub.subscribe(only_b, Filter.of(sensors=["b"]))
    mine = object()
    send(hub, b'{"sensor":"a","value":1}')
    parsed = parse_payload(
        b'[{"sensor":"b","value":2},{"sensor":"a","value":3}]', default_device="ip-9",
        now_ms=hub.now_ms(),
    )  # fmt: skip
    hub.accept(parsed, origin=mine)
    send(hub, b'{"sensor":"b","value":4}')
    clock.advance(0)
    [batch] = everything.batches
    assert [(r.value, o) for r, o in batch.with_origins()] == [
        (1, None), (2, mine), (3, mine), (4, None)
    ]  # fmt: skip
    [filtered] = only_b.batches
    assert [(r.value, o) for r, o in filtered.with_origins()] == [(2, mine), (4, None)]


def test_a_turn_without_origins_has_none_and_the_next_turn_forgets_them(hub, clock):
    sink = RecordingSink()
    hub.subscribe(sink)
    send(hub, b'{"sensor":"a","value":1}')
    clock.advance(0)
    assert sink.batches[0].origins is None
    assert list(sink.batches[0].with_origins()) == [(sink.readings[0], None)]
