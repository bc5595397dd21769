"""The MQTT topic layout and payload parsing (``tantra.bus.topics``): pure, in memory."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tantra.bus.topics import (
    INVALID_TOPIC,
    Topics,
    check_prefix,
    discovery,
    encode_cluster_batch,
    parse_cluster_payload,
    parse_in_message,
    parse_retained_reading,
)
from tantra.model import INVALID_JSON, INVALID_READING, Reading, Rejection
from tests.support.fakes import START

NOW_MS = int(START * 1000)
TOPICS = Topics("tantra")


def parse(topic: str, payload: bytes, props=()):
    return parse_in_message(TOPICS, topic, payload, user_properties=props, now_ms=NOW_MS)


def test_a_reading_on_the_device_topic():
    device, parsed = parse("tantra/in/esp-1", b'{"sensor":"t","value":21.5,"unit":"C","seq":4}')
    assert device == "esp-1"
    assert parsed.errors == ()
    assert parsed.readings == (Reading("esp-1", "t", 21.5, NOW_MS, "C", 4),)


def test_a_batch_on_the_device_topic_keeps_good_elements_and_indexes_errors():
    payload = b'[{"sensor":"a","value":1},{"sensor":"b"},{"sensor":"c","value":true}]'
    _device, parsed = parse("tantra/in/d", payload)
    assert [r.sensor for r in parsed.readings] == ["a", "c"]
    assert [(e.code, e.index) for e in parsed.errors] == [(INVALID_READING, 1)]
    assert parsed.is_batch


def test_a_reading_naming_another_device_is_refused_with_its_index():
    payload = b'[{"sensor":"a","value":1},{"sensor":"b","value":2,"device":"other"},{"x":1}]'
    _, parsed = parse("tantra/in/mine", payload)
    assert [r.key for r in parsed.readings] == [("mine", "a")]
    assert [(e.index, "disagrees" in e.detail) for e in parsed.errors] == [(1, True), (2, False)]
    _, single = parse("tantra/in/mine", b'{"sensor":"a","value":1,"device":"mine"}')
    assert single.readings[0].device == "mine"


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b"-3", -3), (b"true", True), (b"false", False), (b"1e3", 1000.0)],
)
def test_a_bare_value_on_the_sensor_topic(payload, value):
    _, parsed = parse("tantra/in/d/t", payload, [("unit", "°C"), ("seq", "12")])
    (reading,) = parsed.readings
    assert (reading.device, reading.sensor, reading.value, reading.unit, reading.seq) == (
        "d",
        "t",
        value,
        "°C",
        12,
    )
    assert type(reading.value) is type(value)


@pytest.mark.parametrize(
    ("payload", "props", "code"),
    [
        (b"hello", (), INVALID_JSON),
        (b"", (), INVALID_JSON),
        (b'"21"', (), INVALID_READING),
        (b"null", (), INVALID_READING),
        (b'{"value":1}', (), INVALID_READING),
        (b"[1]", (), INVALID_READING),
        (b"1", [("seq", "-1")], INVALID_READING),
        (b"1", [("seq", "12a")], INVALID_READING),
        (b"1", [("unit", "x" * 17)], INVALID_READING),
    ],
)
def test_bad_bare_values_are_refused_with_a_code(payload, props, code):
    device, parsed = parse("tantra/in/d/t", payload, props)
    assert device == "d"
    assert parsed.readings == ()
    assert [e.code for e in parsed.errors] == [code]


@pytest.mark.parametrize(
    "topic",
    [
        "tantra/in/",
        "tantra/in/a/b/c",
        "tantra/in/bad name",
        "tantra/in/" + "x" * 65,
        "tantra/in/d/bad.sensor",
        "tantra/in/d/",
        "other/in/d",
    ],
)
def test_bad_ingest_topics_name_no_device(topic):
    device, parsed = parse(topic, b'{"sensor":"a","value":1}')
    assert parsed.readings == ()
    assert [e.code for e in parsed.errors] == [INVALID_TOPIC]
    assert device is None


@given(topic=st.text(max_size=80), payload=st.binary(max_size=200))
def test_any_message_parses_without_raising_and_readings_match_the_topic(topic, payload):
    device, parsed = parse("tantra/in/" + topic, payload)
    assert parsed.readings or parsed.errors
    for reading in parsed.readings:
        assert reading.device == device
        if "/" in topic:
            assert reading.sensor == topic.split("/")[1]


@given(
    value=st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63),
        st.floats(allow_nan=False, allow_infinity=False),
    )
)
def test_every_json_number_or_boolean_is_a_bare_value(value):
    _, parsed = parse("tantra/in/d/s", orjson.dumps(value))
    assert parsed.errors == ()
    assert parsed.readings[0].value == value


def test_prefixes():
    assert check_prefix("tantra") is None
    assert check_prefix("site-1/tantra") is None
    for bad in ("", "a/", "a/+/b", "#", "a b", "x" * 129, "/a"):
        assert check_prefix(bad) is not None, bad
    topics = Topics("site/t")
    assert topics.shared_ingest_filter("c") == "$share/c/site/t/in/#"
    assert topics.parse_in_topic("site/t/in/d/s") == ("d", "s")
    assert isinstance(topics.parse_in_topic("tantra/in/d"), Rejection)


def test_cluster_payload_round_trip_and_hostile_elements():
    readings = [Reading("a", "t", 1, NOW_MS - 5, "C", 3), Reading("b", "h", True, NOW_MS)]
    assert parse_cluster_payload(encode_cluster_batch(readings), now_ms=NOW_MS) == (readings, 0)
    payload = b'[{"device":"a","sensor":"t","value":1},{"sensor":"t","value":1},5,{"device":"a"}]'
    found, bad = parse_cluster_payload(payload, now_ms=NOW_MS)
    assert [r.key for r in found] == [("a", "t")]
    assert bad == 3
    assert parse_cluster_payload(b"nope", now_ms=NOW_MS) == ([], 1)
    assert parse_cluster_payload(b"{}", now_ms=NOW_MS) == ([], 1)


def test_retained_reading_must_match_its_topic_and_loses_its_seq():
    good = b'{"device":"a","sensor":"t","value":1,"ts":%d,"seq":9}' % (NOW_MS - 10)
    reading = parse_retained_reading(TOPICS, "tantra/reading/a/t", good, now_ms=NOW_MS)
    assert reading == Reading("a", "t", 1, NOW_MS - 10)
    assert parse_retained_reading(TOPICS, "tantra/reading/b/t", good, now_ms=NOW_MS) is None
    assert parse_retained_reading(TOPICS, "tantra/reading/a", good, now_ms=NOW_MS) is None
    assert parse_retained_reading(TOPICS, "tantra/reading/a/t", b"[]", now_ms=NOW_MS) is None
    assert parse_retained_reading(TOPICS, "tantra/reading/a/t", b"{", now_ms=NOW_MS) is None


def test_discovery_configs():
    topic, config = discovery(Reading("esp-1", "temp", 21.5, NOW_MS, "C"), TOPICS, "tantra")
    assert topic == "homeassistant/sensor/tantra/esp-1_temp/config"
    config = json.loads(config)
    assert config["state_topic"] == "tantra/reading/esp-1/temp"
    assert config["unit_of_measurement"] == "C"
    assert config["unique_id"] == "tantra_esp-1_temp"
    assert config["device"] == {"identifiers": ["tantra_esp-1"], "name": "esp-1"}
    topic, config = discovery(Reading("esp-1", "door", True, NOW_MS), TOPICS, "tantra")
    assert topic == "homeassistant/binary_sensor/tantra/esp-1_door/config"
    assert "ON" in json.loads(config)["value_template"]


def test_mqtt_settings():
    from tantra.bus.client import BrokerUrl
    from tantra.settings import SettingsError, resolve

    settings = resolve(
        {"mqtt": "mqtts://u%40x:p%3Aw@broker.example", "cluster": "c1", "mqtt-discovery": True},
        {"mqtt": {"prefix": "site/tantra", "qos": 0}},
    )
    assert (settings.mqtt_prefix, settings.mqtt_qos, settings.cluster) == ("site/tantra", 0, "c1")
    assert settings.mqtt_discovery is True
    url = BrokerUrl.parse(settings.mqtt)
    assert (url.host, url.port, url.tls, url.username, url.password) == (
        "broker.example",
        8883,
        True,
        "u@x",
        "p:w",
    )
    assert "p:w" not in str(url)
    assert "p:w" not in repr(url)
    for bad, message in [
        ({"cluster": "c1"}, "needs --mqtt"),
        ({"mqtt": "http://x"}, "mqtt://"),
        ({"mqtt": "mqtt://"}, "no broker host"),
        ({"mqtt": "mqtt://h:99999"}, "port"),
        ({"mqtt": "mqtt://h", "mqtt-qos": "2"}, "QoS"),
        ({"mqtt": "mqtt://h", "mqtt-prefix": "a/+"}, "prefix"),
        ({"mqtt": "mqtt://h", "cluster": "a/b"}, "characters"),
    ]:
        with pytest.raises(SettingsError, match=message):
            resolve(bad, {})
