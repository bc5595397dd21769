"""The hot path of the reading (issue 14) agrees with the rule-by-rule reference.

``validate_reading`` accepts plainly valid readings in one pass and defers
everything else to ``_validate_exact``; readings are built without
``__init__``; dashboards frame readings without Autobahn's
``PreparedMessage``; the hub records a turn's latencies in one call. Each is
held here against what it replaced.
"""

from __future__ import annotations

import copy
import pickle

import orjson
import pytest
from autobahn.websocket.protocol import PreparedMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from tantra import model
from tantra.counters import Histogram
from tantra.model import (
    INT_MAX,
    INT_MIN,
    MAX_SEQ,
    TS_MAX_AGE_MS,
    TS_MAX_AHEAD_MS,
    Reading,
    Rejection,
    number,
    validate_reading,
)
from tantra.transports.dashboard import frame_text
from tests.support.fakes import RecordingSink

NOW = 1_764_000_000_000

names = st.one_of(
    st.sampled_from(["s1", "soil", "farm-1", "ip-1-2-3-4"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
)
EDGE_VALUES = {
    "sensor": ["", "a" * 64, "a" * 65, "a b", "é", None, 1, ["s1"]],
    "device": ["", "a" * 64, "a" * 65, "a.b", "é", None, 1, ["d"]],
    "value": [
        INT_MIN, INT_MIN - 1, INT_MAX, INT_MAX + 1, 2**1024, -(2**1024), 1e308, -0.0,
        float("nan"), float("inf"), float("-inf"), True, False, None, "1", [1], {"v": 1},
    ],
    "unit": ["", "a" * 16, "a" * 17, "é" * 16, "é" * 17, "\ud800", None, 1, ["V"]],
    "seq": [-1, 0, MAX_SEQ, MAX_SEQ + 1, True, 1.0, None, "1"],
    "ts": [
        NOW - TS_MAX_AGE_MS - 1, NOW - TS_MAX_AGE_MS, NOW + TS_MAX_AHEAD_MS,
        NOW + TS_MAX_AHEAD_MS + 1, float(NOW), True, None, "1",
    ],
    "rssi": [1, None],
}  # fmt: skip
BASE = {"device": "farm-1", "sensor": "s1", "value": 1, "unit": "V", "seq": 5, "ts": NOW}


@pytest.mark.parametrize(
    "obj",
    [{**BASE, field: edge} for field, edges in EDGE_VALUES.items() for edge in edges]
    + [{k: v for k, v in BASE.items() if k != field} for field in BASE]
    + [{"sensor": "s1", "value": 1}, {"sensor": "s1", "value": 1, "device": "x", "rssi": 2}],
)
def test_each_edge_of_each_rule_agrees_with_the_reference(obj):
    for name in ("farm-1", "s1", "ip-1", "x"):
        model._valid_name(name)  # known names: the fast path judges
    fast = validate_reading(obj, default_device="ip-1", now_ms=NOW, index=2)
    exact = model._validate_exact(obj, default_device="ip-1", now_ms=NOW, index=2)
    assert same(fast, exact), (fast, exact)


valid_values = st.one_of(
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
)
valid = st.fixed_dictionaries(
    {"sensor": names, "value": valid_values},
    optional={
        "unit": st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
        "device": names,
        "seq": st.integers(min_value=0, max_value=MAX_SEQ),
        "ts": st.integers(min_value=NOW - TS_MAX_AGE_MS, max_value=NOW + TS_MAX_AHEAD_MS),
    },
)
# What may go wrong with one field, edges first: the fast path must accept
# exactly what the reference accepts and leave everything else to it.
garbage = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.floats(),
    st.integers(),
)
edges = {
    "sensor": st.one_of(st.sampled_from(["", "a" * 64, "a" * 65, "a b", "é"]), garbage),
    "device": st.one_of(st.sampled_from(["", "a" * 64, "a" * 65, "a.b", "é"]), garbage),
    "value": st.one_of(
        st.sampled_from(
            [INT_MIN, INT_MIN - 1, INT_MAX, INT_MAX + 1, 2**1024, -(2**1024), 1e308, 0.0, -0.0]
        ),
        st.floats(),
        st.integers(min_value=-(2**70), max_value=2**70),
        garbage,
    ),
    "unit": st.one_of(
        st.sampled_from(["", "a" * 16, "a" * 17, "é" * 16, "é" * 17, "\ud800", "%"]),
        st.text(max_size=17),
        garbage,
    ),
    "seq": st.one_of(st.sampled_from([-1, 0, MAX_SEQ, MAX_SEQ + 1, True, 1.0]), garbage),
    "ts": st.one_of(
        st.sampled_from(
            [
                NOW - TS_MAX_AGE_MS - 1,
                NOW - TS_MAX_AGE_MS,
                NOW + TS_MAX_AHEAD_MS,
                NOW + TS_MAX_AHEAD_MS + 1,
                float(NOW),
                True,
            ]
        ),
        garbage,
    ),
    "rssi": st.integers(),
}


@st.composite
def nearly_valid(draw):
    obj = dict(draw(valid))
    for field in draw(st.lists(st.sampled_from(sorted(edges)), max_size=2, unique=True)):
        if draw(st.booleans()) or field == "rssi":
            obj[field] = draw(edges[field])
        else:
            obj.pop(field, None)
    return obj


anything = st.one_of(nearly_valid(), garbage, st.lists(valid, max_size=1))


def same(a: Reading | Rejection, b: Reading | Rejection) -> bool:
    if isinstance(a, Reading) and isinstance(b, Reading):
        return a == b and a.json == b.json and a.id is None and b.id is None
    return type(a) is type(b) and a == b


@settings(max_examples=1500)
@given(anything, st.sampled_from(["ip-10-0-0-7", "dev", "not a name"]), st.booleans())
def test_fast_path_agrees_with_the_reference(obj, default_device, forget_names):
    if forget_names:  # a name not seen before takes the reference path
        model._valid_names.clear()
    fast = validate_reading(obj, default_device=default_device, now_ms=NOW, index=3)
    exact = model._validate_exact(obj, default_device=default_device, now_ms=NOW, index=3)
    assert same(fast, exact), (fast, exact)
    # Names known (as after any earlier reading of that device): the fast path judges.
    for name in (default_device, *(obj.values() if isinstance(obj, dict) else ())):
        model._valid_name(name)
    again = validate_reading(obj, default_device=default_device, now_ms=NOW, index=3)
    assert same(again, exact), (again, exact)


@settings(max_examples=500)
@given(
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    valid_values,
    st.integers(min_value=0, max_value=2**53),
    st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
    st.none() | st.integers(min_value=0, max_value=MAX_SEQ),
)
def test_json_is_what_orjson_made_of_the_wire_dict(device, sensor, value, ts, unit, seq):
    """The JSON built once equals the old ``orjson.dumps(reading.to_dict())``, byte for byte."""
    made = Reading(device, sensor, value, ts, unit, seq)
    assert made.json == orjson.dumps(made.to_dict())
    fast = model._new_reading(device, sensor, value, ts, unit, seq)
    assert fast.json == made.json and fast == made and type(fast) is Reading
    (numbered,) = [fast]
    number([numbered], [41])
    assert numbered.json == orjson.dumps(numbered.to_dict()), "the id spliced in, last"


def test_a_reading_never_changes():
    reading = Reading("d", "s", 1, NOW, "V", 3)
    for name in ("device", "value", "json", "id", "other"):
        with pytest.raises(AttributeError):
            setattr(reading, name, 2)
    with pytest.raises(AttributeError):
        del reading.value
    built = validate_reading({"sensor": "s", "value": 1}, default_device="d", now_ms=NOW)
    assert isinstance(built, Reading)
    with pytest.raises(AttributeError):
        built.value = 2  # type: ignore[misc]


def test_equality_and_hash_are_by_fields_not_id():
    a = Reading("d", "s", 1, NOW, "V", 3)
    b = Reading("d", "s", 1, NOW, "V", 3)
    number([b], [9])
    assert a == b and hash(a) == hash(b) and a.__ne__(b) is False
    assert a != Reading("d", "s", 1, NOW, "V", 4)
    assert a != Reading("d", "s", 1, NOW, None, 3)
    assert a != ("d", "s", 1, NOW, "V", 3) and a != object()
    assert len({a, b, Reading("d", "t", 1, NOW)}) == 2
    assert repr(b) == "Reading(device='d', sensor='s', value=1, ts=%d, unit='V', seq=3, id=9)" % NOW


def test_copy_and_pickle_keep_every_field_and_the_json():
    reading = Reading("d", "s", 1.5, NOW, None, 3)
    number([reading], [7])
    for twin in (copy.copy(reading), copy.deepcopy(reading), pickle.loads(pickle.dumps(reading))):
        assert twin == reading and twin.id == 7 and twin.json == reading.json


def test_a_value_orjson_cannot_write_is_refused_when_made():
    with pytest.raises(ValueError, match="cannot be encoded"):
        Reading("d", "s", 2**64, NOW)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_frame_text_is_autobahns_text_frame(length):
    payload = b"x" * length
    assert frame_text(payload) == PreparedMessage(payload, False, False, True).payloadHybi


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=20, allow_nan=False),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=40,
    )
)
def test_observe_since_is_one_observe_per_payload(since):
    now = 100.0
    one_call, each = Histogram(), Histogram()
    one_call.observe_since(now, [(now - seconds, count) for seconds, count in since])
    for seconds, count in since:
        each.observe(now - (now - seconds), count)
    assert one_call.buckets == each.buckets and one_call.count == each.count
    assert one_call.sum == pytest.approx(each.sum)


def clocked_hub():
    """A hub on a test clock at a realistic time, with one recording sink: (clock, hub, sink)."""
    from twisted.internet.task import Clock

    from tantra.hub import Hub

    clock = Clock()
    clock.advance(1_764_000_000)
    hub = Hub(clock)
    sink = RecordingSink()
    hub.subscribe(sink)
    return clock, hub, sink


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sensor":"a","value":1}',  # the lone reading Hub.ingest queues itself
        b'[{"sensor":"a","value":1}]',  # a batch of one: still a batch
        b'{"sensor":"a","value":1,"seq":4}',  # owes an ack: through accept
        b'{"sensor":"a","value":"x"}',
        b"[]",
    ],
)
def test_hub_ingest_of_a_lone_reading_is_what_accept_makes_of_it(payload):
    """The short cut in ``Hub.ingest`` gives the outcome, queue, counters and latency of ``accept``."""
    from tantra.model import parse_payload

    results = []
    for direct in (True, False):
        clock, hub, sink = clocked_hub()
        if direct:
            outcome = hub.ingest(payload, default_device="dev")
        else:
            parsed = parse_payload(payload, default_device="dev", now_ms=hub.now_ms())
            outcome = hub.accept(parsed, source="dev", now=clock.seconds())
        pending = hub.pending_count
        clock.advance(0.003)
        results.append(
            (
                tuple(outcome),
                type(outcome.accepted),
                pending,
                [list(batch.readings) for batch in sink.batches],
                hub.stats.as_dict(),
                hub.counters.latency.delivery.buckets,
                hub.counters.latency.delivery.sum,
            )
        )
    assert results[0] == results[1]


INGEST_MIX = [
    b'{"sensor":"a","value":1}',
    b'{"sensor":"b","value":2,"seq":7}',
    b'{"sensor":"b","value":2,"seq":7}',  # a duplicate: acked again, not queued
    b'{"sensor":"a","value":"x"}',
    b'[{"sensor":"c","value":3},{"sensor":"d"}]',
    b"not json",
    b'{"sensor":"e","value":true,"unit":"V","ts":1764000000000}',
]


@pytest.mark.parametrize("with_origins", [False, True])
def test_ingest_many_is_ingest_of_each_payload_in_order(with_origins):
    """One call for a receive's messages: the same queue, counters, latency and replies owed."""
    from tantra.replies import for_outcome

    results = []
    for many in (True, False):
        clock, hub, sink = clocked_hub()
        if with_origins:  # a WAMP publication earlier in the turn: readings carry origins
            parsed = model.parse_payload(b'{"sensor":"w","value":0}', default_device="w", now_ms=0)
            hub.accept(parsed, origin="wamp")
        if many:
            owed = hub.ingest_many(INGEST_MIX, default_device="dev")
        else:
            outcomes = [hub.ingest(payload, default_device="dev") for payload in INGEST_MIX]
            owed = [o for o in outcomes if for_outcome(o)]
        clock.advance(0.003)
        results.append(
            (
                [for_outcome(o) for o in owed],
                [(list(b.readings), b.origins) for b in sink.batches],
                hub.stats.as_dict(),
                hub.counters.latency.delivery.buckets,
                hub.counters.latency.delivery.count,
            )
        )
    assert results[0] == results[1]
    replies_owed = results[0][0]
    assert len(replies_owed) == 5  # two acks, the bad value, the batch's bad element, not json
    assert replies_owed[:2] == [[{"ack": 7}], [{"ack": 7}]]
    assert [reply[0]["error"] for reply in replies_owed[2:]] == [
        "invalid_reading",
        "invalid_reading",
        "invalid_json",
    ]
    queued = results[0][1][0][0]
    assert [r.sensor for r in queued] == ["w"] * with_origins + ["a", "b", "c", "e"]
