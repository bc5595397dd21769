"""One WebSocket message's bytes → WAMP messages, each one or the answer it gets instead.

Owns: turning a payload into a list of items, in order, where each item is a
parsed ``autobahn.wamp.message`` object, a :class:`Refusal` (the message was
understood well enough to answer it with ERROR: a SUBSCRIBE, PUBLISH, CALL
or REGISTER whose URI is invalid or longer than ``max_uri_bytes``, as the
WAMP spec asks: ``wamp.error.invalid_uri`` for that request id) or a
:class:`Violation` (nothing to answer but ABORT
``wamp.error.protocol_violation``; the items after it are not parsed).

Why not Autobahn's ``Serializer.unserialize``: it parses a whole batch at
once and raises on the first bad message, with exception types beyond
``ProtocolError`` (``InvalidUriError``, and ``TypeError``/``ValueError``/
``KeyError`` on odd shapes), and messages that quote the whole offending
value. Here Autobahn's object serializer decodes and Autobahn's message
classes (the serializer's own type map, so ``tantra.wamp.options`` still
applies) validate, message by message, and every failure becomes an answer
with a bounded text.

Does not own: what happens to the items (``tantra.wamp.session``). Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from autobahn.wamp import message
from autobahn.wamp.exception import InvalidUriError

from tantra.wamp.limits import shorten
from tantra.wamp.peer import INVALID_URI

if TYPE_CHECKING:
    from autobahn.wamp.serializer import Serializer

#: Requests whose invalid URI is answered with ERROR: message type -> (name, URI field index).
_URI_REQUESTS = {
    message.Subscribe.MESSAGE_TYPE: ("topic", 3),
    message.Publish.MESSAGE_TYPE: ("topic", 3),
    message.Call.MESSAGE_TYPE: ("procedure", 3),
    message.Register.MESSAGE_TYPE: ("procedure", 3),
}
_MAX_ID = 2**53


@attrs.frozen
class Refusal:
    """A request the router answers with ERROR instead of handling it."""

    request_type: int
    request: int
    uri: str
    text: str
    #: An unacknowledged PUBLISH: counted, never answered (WAMP).
    silent: bool = False


@attrs.frozen
class Violation:
    """Input that breaks the protocol: ABORT ``wamp.error.protocol_violation`` with ``detail``."""

    detail: str


Item = message.Message | Refusal | Violation


def parse(
    serializer: Serializer, payload: bytes, is_binary: bool, *, max_uri_bytes: int
) -> list[Item]:
    """Every message of ``payload`` (one, or several when batched), each parsed or answered."""
    wire = serializer._serializer  # Autobahn's object serializer: bytes -> Python values
    if is_binary != wire.BINARY:
        kind = "binary" if is_binary else "text"
        return [Violation(f"invalid serialization of WAMP message: {kind} frame for {wire.NAME}")]
    try:
        raws = wire.unserialize(payload)
    except Exception as error:  # each decoder raises its own kinds; all mean "not WAMP"
        return [
            Violation(f"invalid serialization of WAMP message ({wire.NAME}): {shorten(str(error))}")
        ]
    items: list[Item] = []
    for raw in raws:
        item = parse_one(serializer.MESSAGE_TYPE_MAP, raw, max_uri_bytes=max_uri_bytes)
        items.append(item)
        if isinstance(item, Violation):
            break
    return items


def parse_one(type_map: dict[int, Any], raw: Any, *, max_uri_bytes: int) -> Item:
    """One decoded value as a WAMP message, or the answer it gets instead."""
    if not isinstance(raw, list) or not raw:
        return Violation(f"a WAMP message is a non-empty array, not {shorten(raw, 40)}")
    kind = raw[0]
    if type(kind) is not int:
        return Violation(f"a WAMP message type is an integer, not {shorten(kind, 40)}")
    klass = type_map.get(kind)
    if klass is None:
        return Violation(f"unknown WAMP message type {kind}")
    answerable = _answerable(raw)
    if answerable is not None:
        field, uri = answerable
        if isinstance(uri, str) and _utf8_len(uri) > max_uri_bytes:
            return _refusal(raw, f"{field} is longer than {max_uri_bytes} bytes")
    elif kind == message.Hello.MESSAGE_TYPE and _longer(raw[1:2], max_uri_bytes):
        return Violation(f"realm is longer than {max_uri_bytes} bytes")
    try:
        return klass.parse(raw)
    except InvalidUriError:
        if answerable is not None:
            field, uri = answerable
            return _refusal(raw, f"{field} {shorten(uri)!r} is not a valid WAMP URI here")
        return Violation(f"invalid URI in message type {kind}")
    except Exception as error:  # Autobahn raises ProtocolError, but odd shapes raise others
        return Violation(f"malformed message type {kind}: {shorten(str(error))}")


def _longer(values: list[Any], max_bytes: int) -> bool:
    """Is the (first) value a string longer than ``max_bytes`` in UTF-8?"""
    return bool(values) and isinstance(values[0], str) and _utf8_len(values[0]) > max_bytes


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _answerable(raw: list[Any]) -> tuple[str, Any] | None:
    """(field, URI) of a SUBSCRIBE/PUBLISH/CALL/REGISTER with a request id an ERROR can name."""
    where = _URI_REQUESTS.get(raw[0])
    if where is None or len(raw) <= where[1]:
        return None
    request, options = raw[1], raw[2]
    if type(request) is not int or not 0 <= request <= _MAX_ID or not isinstance(options, dict):
        return None  # no request id to answer: Autobahn's parser makes it a violation
    return where[0], raw[where[1]]


def _refusal(raw: list[Any], text: str) -> Refusal:
    """ERROR ``wamp.error.invalid_uri`` for the request; silent for an unacknowledged PUBLISH."""
    silent = raw[0] == message.Publish.MESSAGE_TYPE and raw[2].get("acknowledge") is not True
    return Refusal(raw[0], raw[1], INVALID_URI, text, silent=silent)
