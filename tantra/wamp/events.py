"""The events of one fan-out turn that a group of subscribers shares, encoded once per serializer.

Owns: :class:`EventGroup`, the EVENT messages (with their conflation keys)
that every subscriber holding exactly the same matching subscriptions gets in
one hub turn, and their encodings; :func:`event_message`, an EVENT as the
list Autobahn's ``Event.marshal`` makes; :func:`encoding_of`, the one object
that names an encoding (serializer, outgoing limit, framing). An EVENT
carries its *subscription* id, so subscribers of the same subscription share
the bytes and subscribers of another subscription cannot; the broker groups
subscribers by the subscriptions they hold (``Broker.dispatch_batch``). Each
group is encoded at most once per encoding: the first subscriber of a kind
pays, the other 999 write the same bytes. Events over the outgoing limit are
left out of the encoding and counted by the caller.

Why not per message: Autobahn caches a message's bytes per serializer, but
every subscriber then still ran Autobahn's whole ``sendMessage`` (framing,
log calls) per event; a turn of 16 readings to 1000 subscribers was 16,000 of
those. Now it is one ``send`` per subscriber per turn, like dashboards.

Why lists, not ``message.Event`` objects: with one reading a turn, what a
turn costs before its first byte leaves is latency for all 1000 subscribers.
Building Autobahn's ``Event`` (some twenty attribute checks and stores) only
to have it ``marshal()`` back to the list its serializer takes was most of
that; :func:`event_message` builds that list directly and Autobahn's object
serializer still does all the encoding (a test pins the list to
``Event.marshal``'s). ``Event`` objects are built only where a caller needs
them (:attr:`EventGroup.events`: connections without an Autobahn serializer).

Why the current encoding sits in plain slots (:attr:`EventGroup.encoding`,
``framed``, ``too_large``): per subscriber, the outbox compares one slot by
identity and writes; a memo lookup per subscriber (hashing a key tuple) was
a measurable part of the per-subscriber cost.

Does not own: which subscribers a group reaches (``tantra.wamp.broker``),
conflation and writing (``tantra.wamp.outbox``), WebSocket framing (the
``frame_all`` function a transport passes, ``tantra.wamp.transport``). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from autobahn.wamp import message

#: One encoded message: (payload, is_binary, conflation key).
Encoded = tuple[bytes, bool, Hashable | None]
#: Turns encoded messages into the bytes a transport writes (e.g. WebSocket frames).
FrameAll = Callable[[Sequence[Encoded]], bytes]
#: An encoding: (object serializer, outgoing limit in bytes, framing or None); see encoding_of.
Encoding = tuple[Any, int, "FrameAll | None"]
#: An EVENT as Autobahn marshals it: [36, subscription, publication, details, args?, kwargs?].
RawEvent = list[Any]

_EVENT = message.Event.MESSAGE_TYPE
_encodings: dict[Encoding, Encoding] = {}


def encoding_of(serializer: Any, max_bytes: int, frame_all: FrameAll | None) -> Encoding:
    """The one shared tuple for this encoding, so groups compare it by identity.

    ``serializer`` is the *object* serializer (``Serializer._serializer``),
    which every connection of one kind shares. The kinds are few (six
    serializers times the configured limits), so they are kept for good.
    """
    key = (serializer, max_bytes, frame_all)
    return _encodings.setdefault(key, key)


def event_message(
    subscription: int,
    publication: int,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    publisher: int | None = None,
    publisher_authid: str | None = None,
    publisher_authrole: str | None = None,
    topic: str | None = None,
    retained: bool | None = None,
) -> RawEvent:
    """What ``message.Event(...).marshal()`` returns for these fields, without the object."""
    details: dict[str, Any] = {}
    if publisher is not None:
        details["publisher"] = publisher
    if publisher_authid is not None:
        details["publisher_authid"] = publisher_authid
    if publisher_authrole is not None:
        details["publisher_authrole"] = publisher_authrole
    if topic is not None:
        details["topic"] = topic
    if retained is not None:
        details["retained"] = retained
    if kwargs:
        return [_EVENT, subscription, publication, details, args, kwargs]
    if args:
        return [_EVENT, subscription, publication, details, args]
    return [_EVENT, subscription, publication, details]


def as_event(raw: RawEvent) -> message.Event:
    """The ``message.Event`` of a raw event (for connections that need the object)."""
    _, subscription, publication, details, *rest = raw
    return message.Event(
        subscription,
        publication,
        args=rest[0] if rest else None,
        kwargs=rest[1] if len(rest) > 1 else None,
        publisher=details.get("publisher"),
        publisher_authid=details.get("publisher_authid"),
        publisher_authrole=details.get("publisher_authrole"),
        topic=details.get("topic"),
        retained=details.get("retained"),
    )


class EventGroup:
    """One turn's events for subscribers with the same subscriptions (in publication order)."""

    __slots__ = ("_encoded", "_events", "encoding", "framed", "items", "raw", "too_large")

    def __init__(self, raw: list[tuple[RawEvent, Hashable | None]]):
        #: ``(event as a list, conflation key)``, in publication order.
        self.raw = raw
        #: The encoding last selected with :meth:`use`, and its results.
        self.encoding: Encoding | None = None
        self.framed = b""
        self.items: list[Encoded] = []
        self.too_large = 0
        self._encoded: dict[Encoding, tuple[bytes, list[Encoded], int]] = {}
        self._events: list[tuple[message.Event, Hashable | None]] | None = None

    @property
    def events(self) -> list[tuple[message.Event, Hashable | None]]:
        """The events as ``(message.Event, conflation key)``, built on first use."""
        if self._events is None:
            self._events = [(as_event(raw), key) for raw, key in self.raw]
        return self._events

    def use(self, encoding: Encoding) -> None:
        """Make ``encoding`` the current one (:attr:`framed`, :attr:`items`, :attr:`too_large`).

        ``framed`` is ``frame_all(items)`` (empty without ``frame_all``);
        ``too_large`` is how many events were left out for exceeding the
        limit. Encoded once per encoding; switching back is a lookup.
        """
        found = self._encoded.get(encoding)
        if found is None:
            serializer, max_bytes, frame_all = encoding
            serialize = serializer.serialize
            binary = serializer.BINARY
            items: list[Encoded] = []
            too_large = 0
            for raw, key in self.raw:
                payload = serialize(raw)
                if len(payload) > max_bytes:
                    too_large += 1
                    continue
                items.append((payload, binary, key))
            framed = frame_all(items) if frame_all is not None and items else b""
            found = self._encoded[encoding] = (framed, items, too_large)
        self.framed, self.items, self.too_large = found
        self.encoding = encoding
