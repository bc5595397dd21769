"""MQTT topics and payloads of the hub: what each topic means and how readings map to it.

Owns the topic layout under a configurable prefix (SPEC "MQTT (v2)"):

- ``<prefix>/in/<device>``: a JSON reading or batch from a device;
- ``<prefix>/in/<device>/<sensor>``: a bare JSON number or boolean (unit and
  seq from the ``unit`` / ``seq`` MQTT 5 user properties);
- ``<prefix>/ack/<device>`` and ``<prefix>/error/<device>``: the replies;
- ``<prefix>/reading/<device>/<sensor>``: every accepted reading, retained;
- ``<prefix>/cluster/<name>/<hub>``: what one hub of a cluster accepted, one
  JSON array per hub turn;
- ``homeassistant/<component>/<node>/<device>_<sensor>/config``: Home
  Assistant discovery.

and the parsing of what arrives on them (:func:`parse_in_message`,
:func:`parse_cluster_payload`, :func:`parse_retained_reading`). Pure: no
Twisted, no paho, no clock (the caller passes ``now_ms``).

Does not own: the rules of a valid reading (``tantra.model``), replies
(``tantra.replies``), sending anything (``tantra.bus.bridge``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import orjson

from tantra.model import (
    INVALID_JSON,
    INVALID_READING,
    NAME_PATTERN,
    NAME_RULE,
    ParsedPayload,
    Reading,
    Rejection,
    number,
    parse_payload,
    validate_reading,
)

#: Error code of a message on an ``in`` topic that is not ``in/<device>[/<sensor>]``.
INVALID_TOPIC = "invalid_topic"
#: Longest topic prefix (a few levels of names); topics stay far below MQTT's 64 KiB.
MAX_PREFIX_LENGTH = 128
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*")
DISCOVERY_PREFIX = "homeassistant"
#: Largest reading id taken from another hub (ids are SQLite rowids: 63-bit).
MAX_ID = 2**63 - 1


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a topic prefix, or None (levels of names, no wildcards)."""
    if len(prefix) > MAX_PREFIX_LENGTH or _PREFIX_PATTERN.fullmatch(prefix) is None:
        return (
            f"{prefix!r} is not a topic prefix: one or more '/'-separated levels of"
            f" {NAME_RULE}, at most {MAX_PREFIX_LENGTH} characters"
        )
    return None


@attrs.frozen
class Topics:
    """The hub's topics under one prefix (``tantra`` unless ``--mqtt-prefix``)."""

    prefix: str = "tantra"

    @property
    def ingest_filter(self) -> str:
        return f"{self.prefix}/in/#"

    def shared_ingest_filter(self, group: str) -> str:
        """The ingest filter as an MQTT 5 shared subscription: one hub of ``group`` gets each."""
        return f"$share/{group}/{self.prefix}/in/#"

    def ack(self, device: str) -> str:
        return f"{self.prefix}/ack/{device}"

    def error(self, device: str) -> str:
        return f"{self.prefix}/error/{device}"

    def reading(self, reading: Reading) -> str:
        return f"{self.prefix}/reading/{reading.device}/{reading.sensor}"

    @property
    def readings_filter(self) -> str:
        return f"{self.prefix}/reading/+/+"

    def cluster(self, name: str, hub: str) -> str:
        return f"{self.prefix}/cluster/{name}/{hub}"

    def cluster_filter(self, name: str) -> str:
        return f"{self.prefix}/cluster/{name}/+"

    def in_topic(self, device: str, sensor: str | None = None) -> str:
        """Where a device publishes (for clients, tests and the docs)."""
        return f"{self.prefix}/in/{device}" + (f"/{sensor}" if sensor else "")

    def parse_in_topic(self, topic: str) -> tuple[str, str | None] | Rejection:
        """``(device, sensor or None)`` of an ingest topic, or why it is not one."""
        head = f"{self.prefix}/in/"
        if not topic.startswith(head):
            return Rejection(INVALID_TOPIC, f"{topic[:200]!r} is not under {head}")
        parts = topic[len(head) :].split("/")
        if len(parts) > 2:
            return Rejection(
                INVALID_TOPIC, f"ingest topics are {head}<device>[/<sensor>], not {topic[:200]!r}"
            )
        device = parts[0]
        if NAME_PATTERN.fullmatch(device) is None:
            return Rejection(INVALID_TOPIC, f"device in the topic must be {NAME_RULE}")
        if len(parts) == 1:
            return device, None
        if NAME_PATTERN.fullmatch(parts[1]) is None:
            return Rejection(INVALID_TOPIC, f"sensor in the topic must be {NAME_RULE}")
        return device, parts[1]


def _property(user_properties: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in user_properties:
        if key == name:
            return value
    return None


def parse_bare_value(
    payload: bytes,
    *,
    device: str,
    sensor: str,
    user_properties: Sequence[tuple[str, str]] = (),
    now_ms: int,
) -> ParsedPayload:
    """A reading from a bare number or boolean payload on ``in/<device>/<sensor>``.

    The value must be one JSON number or ``true``/``false`` (``21.5``, ``-3``,
    ``1e3``); a ``unit`` user property gives its unit, a ``seq`` user
    property (decimal) its sequence number, so the device gets an ack.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        shown = payload[:40].decode("utf-8", "replace")
        return ParsedPayload(
            (), (Rejection(INVALID_JSON, f"payload {shown!r} is not a bare number or boolean"),)
        )
    if type(value) not in (int, float, bool):
        return ParsedPayload(
            (),
            (Rejection(INVALID_READING, "a value topic takes a bare number or boolean"),),
        )
    fields: dict[str, Any] = {"device": device, "sensor": sensor, "value": value}
    unit = _property(user_properties, "unit")
    if unit is not None:
        fields["unit"] = unit
    seq = _property(user_properties, "seq")
    if seq is not None:
        if not (seq.isascii() and seq.isdigit() and len(seq) <= 16):
            return ParsedPayload(
                (), (Rejection(INVALID_READING, "the seq user property must be decimal digits"),)
            )
        fields["seq"] = int(seq)
    outcome = validate_reading(fields, default_device=device, now_ms=now_ms)
    if isinstance(outcome, Reading):
        return ParsedPayload((outcome,), ())
    return ParsedPayload((), (attrs.evolve(outcome, index=None),))


def parse_device_payload(payload: bytes, *, device: str, now_ms: int) -> ParsedPayload:
    """A JSON reading or batch on ``in/<device>``; readings naming another device are refused.

    The topic is the device's identity (a broker's ACL lets a device publish
    to its own topic only), so ``"device"`` in a reading may repeat it but
    not contradict it.
    """
    parsed = parse_payload(payload, default_device=device, now_ms=now_ms)
    if all(reading.device == device for reading in parsed.readings):
        return parsed
    # Index of each valid reading in the payload: the indices no error took.
    taken = {error.index for error in parsed.errors}
    indices = (i for i in range(len(parsed.readings) + len(parsed.errors)) if i not in taken)
    readings: list[Reading] = []
    errors = list(parsed.errors)
    for reading, index in zip(parsed.readings, indices, strict=False):
        if reading.device == device:
            readings.append(reading)
        else:
            errors.append(
                Rejection(
                    INVALID_READING,
                    f"device {reading.device!r} in the reading disagrees with {device!r}"
                    " in the topic",
                    index if parsed.is_batch else 0,
                )
            )
    errors.sort(key=lambda error: error.index or 0)
    return ParsedPayload(tuple(readings), tuple(errors), parsed.is_batch)


def parse_in_message(
    topics: Topics,
    topic: str,
    payload: bytes,
    *,
    user_properties: Sequence[tuple[str, str]] = (),
    now_ms: int,
) -> tuple[str | None, ParsedPayload]:
    """The device (None when the topic names none) and the parsed payload of one ingest message."""
    where = topics.parse_in_topic(topic)
    if isinstance(where, Rejection):
        return None, ParsedPayload((), (where,))
    device, sensor = where
    if sensor is None:
        return device, parse_device_payload(payload, device=device, now_ms=now_ms)
    return device, parse_bare_value(
        payload, device=device, sensor=sensor, user_properties=user_properties, now_ms=now_ms
    )


def encode_cluster_batch(readings: Iterable[Reading]) -> bytes:
    """One hub turn's readings as one JSON array (each reading's own bytes, joined)."""
    return b"[" + b",".join(reading.json for reading in readings) + b"]"


def parse_cluster_payload(payload: bytes, *, now_ms: int) -> tuple[list[Reading], int]:
    """Readings another hub accepted, and how many elements were not readings.

    Checked like any input (a broker is shared; anything may publish there),
    but each reading keeps its own ``ts`` and ``device``, and the ``id`` the
    accepting hub's store gave it (:func:`_take_id`); the receiving hub never
    numbers or stores it.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [], 1
    if type(document) is not list:
        return [], 1
    readings: list[Reading] = []
    bad = 0
    for element in document:
        if type(element) is not dict or "device" not in element:
            bad += 1
            continue
        id_ = _take_id(element)
        outcome = validate_reading(element, default_device="-", now_ms=now_ms)
        if isinstance(outcome, Reading) and id_ is not False:
            if id_ is not None:
                number((outcome,), (id_,))
            readings.append(outcome)
        else:
            bad += 1
    return readings, bad


def _take_id(document: dict[str, Any]) -> int | bool | None:
    """Remove the ``id`` a hub with a store gave a reading; ``False`` if it is not one.

    Devices may not send ``id`` (``validate_reading`` refuses it), but a
    reading the accepting hub numbered carries it on the cluster and retained
    topics; it is kept as is (that hub's history numbers it).
    """
    if "id" not in document:
        return None
    id_ = document.pop("id")
    if type(id_) is not int or id_ < 1 or id_ > MAX_ID:
        return False
    return id_


def parse_retained_reading(
    topics: Topics, topic: str, payload: bytes, *, now_ms: int
) -> Reading | None:
    """A retained ``reading/<device>/<sensor>`` message as a reading, or None if it is not one."""
    head = f"{topics.prefix}/reading/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2:
        return None
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    document.pop("seq", None)  # the accepting hub de-duplicated it; seq would re-enter windows
    id_ = _take_id(document)
    outcome = validate_reading(document, default_device=parts[0], now_ms=now_ms)
    if not isinstance(outcome, Reading) or outcome.key != (parts[0], parts[1]) or id_ is False:
        return None
    if id_ is not None:
        number((outcome,), (id_,))
    return outcome


def discovery(reading: Reading, topics: Topics, node: str) -> tuple[str, bytes]:
    """The Home Assistant discovery topic and config of one sensor.

    A boolean becomes a ``binary_sensor`` (ON/OFF), anything else a
    ``sensor`` with the reading's unit; the state comes from the retained
    reading topic (``value_json.value``).
    """
    is_bool = type(reading.value) is bool
    component = "binary_sensor" if is_bool else "sensor"
    object_id = f"{reading.device}_{reading.sensor}"
    config: dict[str, Any] = {
        "name": reading.sensor,
        "unique_id": f"{node}_{object_id}",
        "object_id": object_id,
        "state_topic": topics.reading(reading),
        "value_template": (
            "{{ 'ON' if value_json.value else 'OFF' }}" if is_bool else "{{ value_json.value }}"
        ),
        "device": {"identifiers": [f"{node}_{reading.device}"], "name": reading.device},
    }
    if not is_bool and reading.unit:
        config["unit_of_measurement"] = reading.unit
    topic = f"{DISCOVERY_PREFIX}/{component}/{node}/{object_id}/config"
    return topic, orjson.dumps(config)
