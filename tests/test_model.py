"""The reading rules of SPEC, one table row per rule, plus property tests of the parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tantra.model import (
    EMPTY_BATCH,
    INVALID_JSON,
    INVALID_READING,
    INVALID_UTF8,
    MAX_SEQ,
    TS_MAX_AGE_MS,
    TS_MAX_AHEAD_MS,
    ParsedPayload,
    Reading,
    Rejection,
    device_name_for_address,
    device_name_for_peer,
    parse_payload,
)

NOW = 1_764_000_000_000
PEER = "ip-10-0-0-7"


def parse(data: bytes | str) -> ParsedPayload:
    return parse_payload(data, default_device=PEER, now_ms=NOW)


def only_error(data: bytes | str) -> Rejection:
    parsed = parse(data)
    assert parsed.readings == ()
    assert len(parsed.errors) == 1
    return parsed.errors[0]


def test_seed_payload_is_accepted_with_hub_fields():
    parsed = parse(b'{"sensor": "soilMoisture", "value": 42, "unit": "%"}')
    assert parsed.errors == ()
    assert parsed.readings == (
        Reading(device=PEER, sensor="soilMoisture", value=42, ts=NOW, unit="%"),
    )
    assert json.loads(parsed.readings[0].json) == {
        "device": PEER,
        "sensor": "soilMoisture",
        "value": 42,
        "unit": "%",
        "ts": NOW,
    }


def test_wire_order_and_optional_fields():
    reading = parse(b'{"seq":17,"ts":%d,"unit":"V","value":1.5,"sensor":"v","device":"farm-1"}'
                    % (NOW - 5))  # fmt: skip
    wire = reading.readings[0].json
    assert wire == (
        b'{"device":"farm-1","sensor":"v","value":1.5,"unit":"V","ts":%d,"seq":17}' % (NOW - 5)
    )
    bare = parse(b'{"sensor":"v","value":true}').readings[0]
    assert list(bare.to_dict()) == ["device", "sensor", "value", "ts"]


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b'{"value": 1}', "missing required field 'sensor'"),
        (b'{"sensor": "a"}', "missing required field 'value'"),
        (b'{"sensor": "", "value": 1}', "sensor must be 1-64 characters of A-Z a-z 0-9 _ -"),
        (b'{"sensor": "a b", "value": 1}', "sensor must be 1-64 characters of A-Z a-z 0-9 _ -"),
        (b'{"sensor": "a.b", "value": 1}', "sensor must be 1-64 characters of A-Z a-z 0-9 _ -"),
        (b'{"sensor": "' + b"s" * 65 + b'", "value": 1}', "sensor must be 1-64 characters"),
        (b'{"sensor": 7, "value": 1}', "sensor must be 1-64 characters"),
        ('{"sensor": "\u00e9t\u00e9", "value": 1}'.encode(), "sensor must be 1-64 characters"),
        (b'{"sensor": "a", "value": "42"}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": null}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": {"x": 1}}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": [1]}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": NaN}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": Infinity}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": -Infinity}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": 1e400}', "value must be a finite number or boolean"),
        (b'{"sensor": "a", "value": 1, "unit": 5}', "unit must be a text string of at most 16"),
        (b'{"sensor": "a", "value": 1, "unit": null}', "unit must be a text string of at most 16"),
        (b'{"sensor": "a", "value": 1, "unit": "' + b"u" * 17 + b'"}', "unit must be a text"),
        (
            b'{"sensor": "a", "value": 1, "unit": "\\ud800"}',
            "unit must be valid Unicode text (a lone surrogate is not)",
        ),
        (b'{"sensor": "a", "value": 1, "device": ""}', "device must be 1-64 characters"),
        (b'{"sensor": "a", "value": 1, "device": "farm/1"}', "device must be 1-64 characters"),
        (b'{"sensor": "a", "value": 1, "device": null}', "device must be 1-64 characters"),
        (b'{"sensor": "a", "value": 1, "seq": -1}', f"seq must be an integer from 0 to {MAX_SEQ}"),
        (b'{"sensor": "a", "value": 1, "seq": 1.5}', "seq must be an integer from 0 to"),
        (b'{"sensor": "a", "value": 1, "seq": "3"}', "seq must be an integer from 0 to"),
        (b'{"sensor": "a", "value": 1, "seq": true}', "seq must be an integer from 0 to"),
        (b'{"sensor": "a", "value": 1, "seq": null}', "seq must be an integer from 0 to"),
        (b'{"sensor": "a", "value": 1, "seq": 9007199254740992}', "seq must be an integer"),
        (b"42", "a reading must be a JSON object, not number"),
        (b'"soil"', "a reading must be a JSON object, not string"),
        (b"null", "a reading must be a JSON object, not null"),
        (b"true", "a reading must be a JSON object, not boolean"),
        (b"NaN", "a reading must be a JSON object, not number"),
    ],
)
def test_invalid_readings_are_named_precisely(payload, detail):
    error = only_error(payload)
    assert error.code == INVALID_READING
    assert error.detail.startswith(detail)
    assert error.index == 0
    assert error.to_dict() == {"error": INVALID_READING, "detail": error.detail, "index": 0}


def test_unknown_fields_are_all_named():
    error = only_error(b'{"sensor": "a", "value": 1, "rssi": -70, "battery": 3.1}')
    assert error.code == INVALID_READING
    assert "'battery', 'rssi'" in error.detail
    assert "readings of their own" in error.detail


@pytest.mark.parametrize(
    ("payload", "code", "detail"),
    [
        (b"\xff\xfe{}", INVALID_UTF8, "payload is not valid UTF-8 (byte 0)"),
        (b'{"sensor": "\xc3(", "value": 1}', INVALID_UTF8, "payload is not valid UTF-8 (byte 12)"),
        (b"", INVALID_JSON, "payload is empty"),
        (b"  \t ", INVALID_JSON, "payload is empty"),
        (b'{"sensor": "a", "value": 1', INVALID_JSON, "payload is not valid JSON: "),
        (b"{sensor: a}", INVALID_JSON, "payload is not valid JSON: "),
        (b'{"sensor": "a", "value": nan}', INVALID_JSON, "payload is not valid JSON: "),
        (b'{"a":1} {"b":2}', INVALID_JSON, "payload is not valid JSON: Extra data"),
        (b"[" * 5000 + b"]" * 5000, INVALID_JSON, "payload is not valid JSON"),
        (b"[]", EMPTY_BATCH, "a batch must hold at least one reading"),
        (b" [ ] ", EMPTY_BATCH, "a batch must hold at least one reading"),
    ],
)
def test_payload_level_errors(payload, code, detail):
    error = only_error(payload)
    assert (error.code, error.index) == (code, None)
    assert error.detail.startswith(detail)
    assert set(error.to_dict()) == {"error", "detail"}


def test_str_payload_with_lone_surrogate_is_a_utf8_error():
    assert only_error('{"sensor": "a\ud800", "value": 1}').code == INVALID_UTF8


def test_booleans_and_numbers_of_every_kind_are_values():
    for text, value in [
        (b"true", True),
        (b"false", False),
        (b"0", 0),
        (b"-0.0", -0.0),
        (b"1.5e3", 1500.0),
        (b"18446744073709551615", 18446744073709551615),
        (b"1.7976931348623157e308", 1.7976931348623157e308),
    ]:
        (reading,) = parse(b'{"sensor":"a","value":' + text + b"}").readings
        assert reading.value == value and type(reading.value) is type(value)


def test_sensor_names_at_the_limits():
    for name in ["a", "A-Z_09", "x" * 64]:
        (reading,) = parse(b'{"sensor":"%s","value":1}' % name.encode()).readings
        assert reading.sensor == name


def test_unit_may_be_empty_or_sixteen_characters_of_any_script():
    for unit in ["", "%", "°C", "m³/h", "u" * 16, "千瓦时"]:
        (reading,) = parse(json.dumps({"sensor": "a", "value": 1, "unit": unit})).readings
        assert reading.unit == unit


def test_seq_limits():
    for seq in [0, 1, MAX_SEQ]:
        (reading,) = parse(b'{"sensor":"a","value":1,"seq":%d}' % seq).readings
        assert reading.seq == seq


@pytest.mark.parametrize(
    ("ts", "kept"),
    [
        (NOW, True),
        (NOW + TS_MAX_AHEAD_MS, True),
        (NOW + TS_MAX_AHEAD_MS + 1, False),
        (NOW - TS_MAX_AGE_MS, True),
        (NOW - TS_MAX_AGE_MS - 1, False),
        (0, False),
        (-5, False),
        ("1764000000000", False),
        (1764000000000.0, False),
        (True, False),
        (None, False),
        ({"t": 1}, False),
    ],
)
def test_implausible_ts_is_replaced_never_rejected(ts, kept):
    (reading,) = parse(json.dumps({"sensor": "a", "value": 1, "ts": ts})).readings
    assert reading.ts == (ts if kept else NOW)


def test_batch_judges_each_element_alone():
    parsed = parse(
        b'[{"sensor":"a","value":1,"seq":1}, {"sensor":"b","value":NaN}, 7,'
        b' {"sensor":"c","value":2,"rssi":1}, {"sensor":"d","value":1e999}, {"sensor":"e","value":3}]'
    )
    assert parsed.is_batch
    assert [r.sensor for r in parsed.readings] == ["a", "e"]
    assert [(e.code, e.index) for e in parsed.errors] == [
        (INVALID_READING, 1),
        (INVALID_READING, 2),
        (INVALID_READING, 3),
        (INVALID_READING, 4),
    ]


def test_single_element_batch_is_still_a_batch():
    parsed = parse(b'[{"sensor":"a","value":1}]')
    assert parsed.is_batch and len(parsed.readings) == 1


def test_device_names_for_peers():
    assert device_name_for_peer("192.168.4.2") == "ip-192-168-4-2"
    assert device_name_for_peer("::1") == "ip---1"
    assert device_name_for_peer("fe80::1%eth0") == "ip-fe80--1-eth0"
    assert len(device_name_for_peer("a" * 100)) == 64

    class Unix:
        name = None

    assert device_name_for_address(Unix()) == "ip-unix"


# -- properties ---------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
readings = st.fixed_dictionaries(
    {"sensor": names, "value": values},
    optional={
        "unit": st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
        "device": names,
        "seq": st.integers(min_value=0, max_value=MAX_SEQ),
        "ts": st.integers(min_value=NOW - TS_MAX_AGE_MS, max_value=NOW + TS_MAX_AHEAD_MS),
    },
)


@settings(max_examples=300)
@given(readings)
def test_valid_readings_round_trip(obj):
    (reading,) = parse(json.dumps(obj)).readings
    out = json.loads(reading.json)
    expected = {"device": PEER, "ts": NOW, **obj}
    assert out == expected
    # What the hub sends out is itself a valid reading that parses to the same thing.
    (again,) = parse(reading.json).readings
    assert again == reading


@settings(max_examples=300)
@given(st.lists(readings, min_size=1, max_size=8), st.data())
def test_batch_keeps_every_good_element(elements, data):
    bad_positions = data.draw(st.sets(st.integers(0, len(elements) - 1)))
    payload = [
        {**obj, "value": "not a number"} if index in bad_positions else obj
        for index, obj in enumerate(elements)
    ]
    parsed = parse(json.dumps(payload).encode("utf-8"))
    assert sorted(e.index for e in parsed.errors) == sorted(bad_positions)
    assert len(parsed.readings) == len(elements) - len(bad_positions)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    parsed = parse(data)
    assert all(isinstance(e, Rejection) for e in parsed.errors)
    assert len(parsed.readings) + len(parsed.errors) >= 1


@settings(max_examples=500)
@given(json_values)
def test_random_json_never_raises_and_every_reading_is_valid(document):
    parsed = parse(json.dumps(document))
    for reading in parsed.readings:
        again = parse(reading.json)
        assert again.readings == (reading,)
