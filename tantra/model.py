"""The reading: its shape, its rules, and the parser that turns payloads into readings.

Owns: what a valid reading is (SPEC "The reading"), how one payload (a line, a
datagram, a WebSocket message) becomes readings plus precise errors, and how a
reading looks on the wire.

Does not own: transports, clocks (the caller passes ``now_ms``), de-duplication
or delivery (see ``tantra.hub``). Pure: no Twisted, no sockets, no global time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, TypeGuard

import attrs
import orjson

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RULE = "1-64 characters of A-Z a-z 0-9 _ -"
MAX_UNIT_LENGTH = 16
# Largest integer a JavaScript dashboard can hold exactly.
MAX_SEQ = 2**53 - 1
TS_MAX_AHEAD_MS = 60_000
TS_MAX_AGE_MS = 7 * 24 * 3600 * 1000

REQUIRED_FIELDS = ("sensor", "value")
KNOWN_FIELDS = frozenset({"sensor", "value", "unit", "device", "ts", "seq"})

# Error codes; docs/protocol.md lists them for clients.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
EMPTY_BATCH = "empty_batch"
INVALID_READING = "invalid_reading"


#: Integers orjson (the encoder of every reading) can write: signed or unsigned 64 bit.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


class _ReadingSlots:
    """The storage of a :class:`Reading`, writable: what the hot path fills in.

    :func:`_new_reading` fills one of these with plain attribute stores and
    then makes it a :class:`Reading` (same slots, so the class can change);
    that costs a third of setting each slot past a frozen ``__setattr__``.
    """

    __slots__ = ("_frame", "device", "id", "json", "sensor", "seq", "ts", "unit", "value")

    device: str
    sensor: str
    value: int | float | bool
    ts: int
    unit: str | None
    seq: int | None
    #: The history cursor (``tantra.store``): set once, by the hub, when a store is on.
    id: int | None
    json: bytes
    _frame: bytes | None


class FrozenReadingError(AttributeError):
    """A reading was changed after it was made (readings are shared: they never change)."""


class Reading(_ReadingSlots):
    """One accepted measurement, exactly as the hub sends it out.

    Its JSON is built when the reading is made, so a reading that could not be
    encoded never exists: it cannot fail later, in a batch or a snapshot shared
    with other readings and other clients (issue 8, item 1). Only the bytes
    are kept, as an exact-size copy: orjson's output object holds a ~4 KB
    buffer whatever its length, which the cache would keep once per sensor.

    Immutable, compared and hashed by its fields (``device``, ``sensor``,
    ``value``, ``ts``, ``unit``, ``seq``; not ``id``), as the attrs class it
    replaces was: a plain slotted class because building one is on the path
    of every reading (issue 14: the attrs ``__init__`` and post-init cost a
    fifth of the hub's time per WebSocket reading). Readings made by
    :func:`validate_reading` skip ``__init__`` (see :func:`_new_reading`).
    """

    __slots__ = ()

    def __init__(
        self,
        device: str,
        sensor: str,
        value: int | float | bool,
        ts: int,
        unit: str | None = None,
        seq: int | None = None,
    ) -> None:
        made = _new_reading(device, sensor, value, ts, unit, seq)
        for name in _ReadingSlots.__slots__:
            _set(self, name, getattr(made, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenReadingError(f"cannot set {name!r}: a reading never changes")

    def __delattr__(self, name: str) -> None:
        raise FrozenReadingError(f"cannot delete {name!r}: a reading never changes")

    def _fields(self) -> tuple[Any, ...]:
        return (self.device, self.sensor, self.value, self.ts, self.unit, self.seq)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Reading:
            return NotImplemented
        assert isinstance(other, Reading)
        return self._fields() == other._fields()

    def __ne__(self, other: object) -> bool:
        if other.__class__ is not Reading:
            return NotImplemented
        assert isinstance(other, Reading)
        return self._fields() != other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Reading(device={self.device!r}, sensor={self.sensor!r}, value={self.value!r},"
            f" ts={self.ts!r}, unit={self.unit!r}, seq={self.seq!r}, id={self.id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots past a frozen __setattr__: pickle and copy rebuild through __init__.
        return (_restore, (self._fields(), self.id))

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the sensor this reading belongs to (last-value cache key)."""
        return (self.device, self.sensor)

    def to_dict(self) -> dict[str, Any]:
        """The wire object: fixed field order, optional fields only when present."""
        out: dict[str, Any] = {"device": self.device, "sensor": self.sensor, "value": self.value}
        if self.unit is not None:
            out["unit"] = self.unit
        out["ts"] = self.ts
        if self.seq is not None:
            out["seq"] = self.seq
        if self.id is not None:
            out["id"] = self.id
        return out

    def framed(self, frame: Callable[[bytes], bytes]) -> bytes:
        """``frame(self.json)``, computed once per reading however many clients get it.

        One transport frames single readings (WebSocket dashboards: one text
        frame each), so one memo suffices; it makes a dashboard's join cost a
        join of cached bytes instead of framing the whole cache again.
        """
        data = self._frame
        if data is None:
            data = frame(self.json)
            _set(self, "_frame", data)  # a cache, not a change of value
        return data


def _new_reading(
    device: str,
    sensor: str,
    value: int | float | bool,
    ts: int,
    unit: str | None,
    seq: int | None,
) -> Reading:
    """A :class:`Reading` with its JSON, built without ``__init__`` (the hot path).

    The wire object is written once, in the order :meth:`Reading.to_dict`
    gives (a property test holds them equal), and ``b"%b" % encoded`` is the
    cheapest exact-size copy of orjson's output (a quarter of
    ``bytes(memoryview(...))``).
    """
    if unit is None:
        wire: dict[str, Any] = {"device": device, "sensor": sensor, "value": value, "ts": ts}
    else:
        wire = {"device": device, "sensor": sensor, "value": value, "unit": unit, "ts": ts}
    if seq is not None:
        wire["seq"] = seq
    try:
        encoded = orjson.dumps(wire)
    except TypeError as error:  # orjson.JSONEncodeError; e.g. an int beyond 64 bits
        raise ValueError(f"reading cannot be encoded: {error}") from None
    made = _ReadingSlots()
    made.device = device
    made.sensor = sensor
    made.value = value
    made.ts = ts
    made.unit = unit
    made.seq = seq
    made.id = None
    made.json = b"%b" % encoded
    made._frame = None
    made.__class__ = Reading  # same slots: now frozen
    return made  # type: ignore[return-value]  # its class is Reading now


def _restore(fields: tuple[Any, ...], id_: int | None) -> Reading:
    reading = Reading(*fields)
    if id_ is not None:
        number((reading,), (id_,))
    return reading


_set = object.__setattr__


def number(readings: Sequence[Reading], ids: Iterable[int]) -> int:
    """Give each reading its history ``id`` (in order, as many as ``ids`` has); returns how many.

    The hub calls this at its flush, before any client sees the readings, so
    the id is in every frame, event and snapshot. The id is spliced into the
    JSON already built (``...,"id":N}``: ~0.2 µs) instead of encoding the
    reading again; ``id`` is the last field, as :meth:`Reading.to_dict` has it.
    """
    count = 0
    set_id, set_json = _SET_ID, _SET_JSON
    for reading, id_ in zip(readings, ids, strict=False):
        set_id(reading, id_)
        set_json(reading, b'%b,"id":%d}' % (reading.json[:-1], id_))
        count += 1
    return count


# The slots' own setters: what ``object.__setattr__(reading, name, ...)`` ends up
# calling, without its look-up by name (a fifth of :func:`number`, issue 14).
_SET_ID = _ReadingSlots.__dict__["id"].__set__
_SET_JSON = _ReadingSlots.__dict__["json"].__set__


@attrs.frozen(slots=True)
class Rejection:
    """Why (part of) a payload was refused; sent back to its sender as is."""

    code: str
    detail: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.index is not None:
            out["index"] = self.index
        return out


class ParsedPayload(NamedTuple):
    """Outcome of one payload: the valid readings and the errors, in input order.

    A NamedTuple (immutable, and the cheapest to build): one is made per payload.
    """

    readings: tuple[Reading, ...]
    errors: tuple[Rejection, ...]
    is_batch: bool = False


@lru_cache(maxsize=4096)
def device_name_for_peer(host: str) -> str:
    """Default device name for a sender that gave none: ``ip-`` + its address.

    Dots and colons become dashes (SPEC); anything else outside the name
    charset (an IPv6 zone ``%eth0``, a UNIX socket path) becomes a dash too, so
    the result is always a valid name.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", host) or "unknown"
    return ("ip-" + cleaned)[:64]


def device_name_for_address(address: Any) -> str:
    """:func:`device_name_for_peer` for a transport's peer address object.

    IP addresses have ``host``; a UNIX socket peer has only ``name``, often empty.
    """
    host = getattr(address, "host", None) or getattr(address, "name", None) or "unix"
    return device_name_for_peer(host if isinstance(host, str) else "unix")


def _decode_document(data: bytes | str) -> Any | Rejection:
    """Decode one payload as JSON, or say precisely why it is not.

    orjson is the fast path. It refuses the whole document when one element
    holds ``NaN``, ``Infinity`` or a number too large for a double (``1e400``),
    which would cost a batch's good elements; so on failure the standard
    library parses again (it reads those tokens as non-finite floats) and the
    validator then rejects just the element that holds one. Real syntax errors
    fail both parsers and are worded by the standard library.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as fast_error:
        fast_detail = str(fast_error)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            return Rejection(INVALID_UTF8, f"payload is not valid UTF-8 (byte {error.start})")
    else:
        text = data
        if not _is_encodable(text):
            return Rejection(INVALID_UTF8, "payload is not valid UTF-8 text")
    if not text.strip():
        return Rejection(INVALID_JSON, "payload is empty; send a JSON reading or a JSON array")
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        return Rejection(INVALID_JSON, "payload is not valid JSON: nested too deeply")
    except ValueError as error:
        return Rejection(INVALID_JSON, f"payload is not valid JSON: {error or fast_detail}")


def _parse_int(text: str) -> int | float:
    """An integer token as orjson reads it: ``int`` within 64 bits, ``float`` beyond.

    Without this hook the standard library makes any integer an ``int`` and
    refuses one of more than 4300 digits for the whole document (Python's
    ``int_max_str_digits``), which would cost a batch its good elements; as a
    float it is judged per element like ``1e400`` (not finite: rejected).
    """
    if len(text) < 19:
        return int(text)
    if len(text) <= 21:
        number = int(text)
        if INT_MIN <= number <= INT_MAX:
            return number
    return float(text)


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_parsed = tuple.__new__


def parse_payload(data: bytes | str, *, default_device: str, now_ms: int) -> ParsedPayload:
    """Turn one payload into readings and errors; never raises for bad input.

    ``default_device`` names the sender when a reading has no ``device``;
    ``now_ms`` is the hub's receive time, used to judge and replace ``ts``.
    """
    parsed = parse_lone(data, default_device, now_ms)
    if parsed.__class__ is Reading:
        # tuple.__new__: the NamedTuple's own constructor costs twice as much.
        return _parsed(ParsedPayload, ((parsed,), (), False))
    return parsed  # type: ignore[return-value]  # a ParsedPayload


def parse_lone(data: bytes | str, default_device: str, now_ms: int) -> Reading | ParsedPayload:
    """:func:`parse_payload`, but a payload that is one valid reading comes back as that reading.

    The commonest payload by far; the hub's ingest (``Hub.ingest``) takes it
    without the :class:`ParsedPayload` and tuple made around it (issue 14).
    """
    try:
        document = _loads(data)  # the fast path of _decode_document, inlined
    except _JSONDecodeError:
        document = _decode_document(data)
        if isinstance(document, Rejection):
            return ParsedPayload((), (document,))
    if type(document) is dict:
        outcome = validate_reading(document, default_device=default_device, now_ms=now_ms)
        if outcome.__class__ is Reading:
            return outcome
        return _parsed(ParsedPayload, ((), (outcome,), False))

    if isinstance(document, list):
        if not document:
            return _whole(EMPTY_BATCH, "a batch must hold at least one reading")
        readings: list[Reading] = []
        errors: list[Rejection] = []
        for index, element in enumerate(document):
            outcome = validate_reading(
                element, default_device=default_device, now_ms=now_ms, index=index
            )
            if isinstance(outcome, Reading):
                readings.append(outcome)
            else:
                errors.append(outcome)
        return ParsedPayload(tuple(readings), tuple(errors), is_batch=True)

    outcome = validate_reading(document, default_device=default_device, now_ms=now_ms, index=0)
    if isinstance(outcome, Reading):
        return ParsedPayload((outcome,), ())
    return ParsedPayload((), (outcome,))


def _whole(code: str, detail: str) -> ParsedPayload:
    return ParsedPayload((), (Rejection(code, detail),))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# Names already found valid. Readings repeat a handful of device and sensor
# names, so a dict lookup replaces the regular expression on the hot path and
# hands back one shared copy of the name (every cached reading of a device
# then shares its name instead of holding the decoder's copy); the dict is
# emptied when full, so it stays bounded whatever devices send.
_valid_names: dict[str, str] = {}
#: The same names as UTF-8 (ASCII) bytes, for writing a reading's JSON.
_name_json: dict[str, bytes] = {}
_VALID_NAMES_LIMIT = 65_536


def _valid_name(value: Any) -> str | None:
    """``value`` (as a shared copy) when it is a valid name, else None."""
    if type(value) is not str:
        return None
    known = _valid_names.get(value)
    if known is not None:
        return known
    if NAME_PATTERN.fullmatch(value) is None:
        return None
    if len(_valid_names) >= _VALID_NAMES_LIMIT:
        _valid_names.clear()
        _name_json.clear()
    _name_json[value] = value.encode()
    _valid_names[value] = value
    return value


_LARGEST_DOUBLE = 1.7976931348623157e308


def _is_finite_value(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        # A JSON integer too large for a double would reach JavaScript as Infinity.
        return -_LARGEST_DOUBLE <= value <= _LARGEST_DOUBLE
    return kind is bool


def _as_number(value: int | float | bool) -> int | float | bool:
    """An integer beyond 64 bits becomes the float JSON readers make of it anyway.

    orjson (the fast path) already reads such a token as a float and cannot
    write it as an integer; CBOR bignums reach :func:`validate_reading`
    through WAMP as Python ints. One rule for every path: the value is kept,
    as the double a JavaScript dashboard would have read.
    """
    if type(value) is int and not INT_MIN <= value <= INT_MAX:
        return float(value)
    return value


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plausible_ts(ts: Any, now_ms: int) -> TypeGuard[int]:
    """A device timestamp is kept when it is an integer within the SPEC's window."""
    return type(ts) is int and now_ms - TS_MAX_AGE_MS <= ts <= now_ms + TS_MAX_AHEAD_MS


def validate_reading(
    obj: Any, *, default_device: str, now_ms: int, index: int = 0
) -> Reading | Rejection:
    """Judge one decoded JSON value as a reading; the first broken rule is reported.

    Written for the hot path (every reading of every device passes here):
    exact type checks, because JSON decoders only produce exact built-in types.
    A reading that is plainly valid (no unknown or null field, names already
    seen, a value in orjson's integer range or a finite float) is accepted
    here in one pass; anything else goes to :func:`_validate_exact`, which
    judges it rule by rule, so the two agree by construction (a property
    test holds them equal) and only valid readings pay for this pass.
    """
    if type(obj) is dict and KNOWN_FIELDS.issuperset(obj):
        get = obj.get
        names = _valid_names
        # A missing or null sensor, value or device fails its type test here;
        # optional fields default to _ABSENT, so a null one fails its test too.
        sensor = get("sensor")
        sensor = names.get(sensor) if type(sensor) is str else None
        value: Any = get("value")
        kind = type(value)
        device = get("device", default_device)
        device = names.get(device) if type(device) is str else None
        unit = get("unit", _ABSENT)
        seq = get("seq", _ABSENT)
        if (
            sensor is not None
            and device is not None
            and (
                (kind is int and INT_MIN <= value <= INT_MAX)
                or (kind is float and _isfinite(value))
                or kind is bool
            )
            and (
                unit is _ABSENT
                or (type(unit) is str and len(unit) <= MAX_UNIT_LENGTH and unit.isascii())
            )
            and (seq is _ABSENT or (type(seq) is int and 0 <= seq <= MAX_SEQ))
        ):
            ts = get("ts")
            if not (type(ts) is int and now_ms - TS_MAX_AGE_MS <= ts <= now_ms + TS_MAX_AHEAD_MS):
                ts = now_ms
            # The JSON _new_reading would make, from a template: names need no
            # escaping (their charset), units and names are encoded once each.
            if unit is _ABSENT:
                unit = None
                unit_json = b""
            else:
                unit_json = _unit_json.get(unit) or _encode_unit(unit)
            if seq is _ABSENT:
                seq = None
                seq_json = b""
            else:
                seq_json = b',"seq":%d' % seq
            named = _name_json
            if kind is int:
                json = _INT_READING % (named[device], named[sensor], value, unit_json, ts, seq_json)
            else:
                number = (b"true" if value else b"false") if kind is bool else _dumps(value)
                json = _READING % (named[device], named[sensor], number, unit_json, ts, seq_json)
            # The filling _new_reading does, kept inline on purpose: a shared
            # helper measured ~30 ns a reading here (~4% of this path).
            made = _ReadingSlots()
            made.device = device
            made.sensor = sensor
            made.value = value
            made.ts = ts
            made.unit = unit
            made.seq = seq
            made.id = None
            made.json = json
            made._frame = None
            made.__class__ = Reading
            return made  # type: ignore[return-value]  # its class is Reading now
    return _validate_exact(obj, default_device=default_device, now_ms=now_ms, index=index)


_isfinite = math.isfinite
_dumps = orjson.dumps
_INT_READING = b'{"device":"%b","sensor":"%b","value":%d%b,"ts":%d%b}'
_READING = b'{"device":"%b","sensor":"%b","value":%b%b,"ts":%d%b}'
#: ``,"unit":<JSON string>`` of each unit seen (bounded like the names).
_unit_json: dict[str, bytes] = {}


def _encode_unit(unit: str) -> bytes:
    if len(_unit_json) >= _VALID_NAMES_LIMIT:
        _unit_json.clear()
    encoded = _unit_json[unit] = b',"unit":%b' % _dumps(unit)
    return encoded


#: What ``dict.get`` gives for an optional field that is not there (null is ``None``).
_ABSENT: Any = object()


def _validate_exact(
    obj: Any, *, default_device: str, now_ms: int, index: int = 0
) -> Reading | Rejection:
    """:func:`validate_reading` rule by rule: the first broken rule is reported.

    The reference the fast path defers to whenever a reading is not plainly
    valid, so every rejection (and its wording) comes from here.
    """
    if type(obj) is not dict:
        return _reject(index, f"a reading must be a JSON object, not {_json_type(obj)}")
    if not KNOWN_FIELDS.issuperset(obj):
        names = ", ".join(repr(name) for name in sorted(set(obj) - KNOWN_FIELDS))
        return _reject(
            index,
            f"unknown field(s) {names}; allowed: device, sensor, value, unit, ts, seq"
            " (send other measurements as readings of their own)",
        )
    for name in REQUIRED_FIELDS:
        if name not in obj:
            return _reject(index, f"missing required field {name!r}")

    sensor = _valid_name(obj["sensor"])
    if sensor is None:
        return _reject(index, f"sensor must be {NAME_RULE}")
    value = obj["value"]
    if not _is_finite_value(value):
        return _reject(index, "value must be a finite number or boolean")
    unit = obj.get("unit")
    if (unit is not None or "unit" in obj) and not (
        type(unit) is str and len(unit) <= MAX_UNIT_LENGTH
    ):
        return _reject(index, f"unit must be a text string of at most {MAX_UNIT_LENGTH} characters")
    if type(unit) is str and not (unit.isascii() or _is_encodable(unit)):
        return _reject(index, "unit must be valid Unicode text (a lone surrogate is not)")
    device = _valid_name(obj.get("device", default_device))
    if device is None:
        return _reject(index, f"device must be {NAME_RULE}")
    seq = obj.get("seq")
    if (seq is not None or "seq" in obj) and not (type(seq) is int and 0 <= seq <= MAX_SEQ):
        return _reject(index, f"seq must be an integer from 0 to {MAX_SEQ}")
    ts = obj.get("ts")
    if not plausible_ts(ts, now_ms):
        ts = now_ms
    return _new_reading(device, sensor, _as_number(value), ts, unit, seq)


def _reject(index: int, detail: str) -> Rejection:
    return Rejection(INVALID_READING, detail, index)
