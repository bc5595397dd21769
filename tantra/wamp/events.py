"""The events of one fan-out turn that a group of subscribers shares, encoded once per serializer.

Owns: :class:`EventGroup`, the EVENT messages (with their conflation keys)
that every subscriber holding exactly the same matching subscriptions gets in
one hub turn, and their encodings. An EVENT carries its *subscription* id, so
subscribers of the same subscription share the bytes and subscribers of
another subscription cannot; the broker groups subscribers by the
subscriptions they hold (``Broker.dispatch_batch``). Each group is encoded at
most once per serializer kind (JSON, CBOR, msgpack; batched or not) and
framing function: the first subscriber of a kind pays, the other 999 write the
same bytes. Events over the outgoing limit are left out of the encoding and
counted by the caller.

Why not per message: Autobahn caches a message's bytes per serializer, but
every subscriber then still ran Autobahn's whole ``sendMessage`` (framing,
log calls) per event; a turn of 16 readings to 1000 subscribers was 16,000 of
those. Now it is one ``send`` per subscriber per turn, like dashboards.

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


class EventGroup:
    """One turn's events for subscribers with the same subscriptions (in publication order)."""

    __slots__ = ("_encoded", "events")

    def __init__(self, events: list[tuple[message.Event, Hashable | None]]):
        self.events = events
        self._encoded: dict[Any, tuple[bytes, list[Encoded], int]] = {}

    def encoded(
        self, memo_key: tuple[Any, int, FrameAll | None]
    ) -> tuple[bytes, list[Encoded], int]:
        """``(framed, items, too_large)`` for ``(serializer, max_bytes, frame_all)``, memoized.

        ``serializer`` is the *object* serializer (``Serializer._serializer``),
        which every connection of one kind shares; ``framed`` is
        ``frame_all(items)`` (empty without ``frame_all``); ``too_large`` is how
        many events were left out for exceeding ``max_bytes``. The caller keeps
        the key (one tuple per connection), so a lookup builds nothing.
        """
        found = self._encoded.get(memo_key)
        if found is None:
            serializer, max_bytes, frame_all = memo_key
            binary = serializer.BINARY
            items: list[Encoded] = []
            too_large = 0
            for event, key in self.events:
                payload = event.serialize(serializer)  # Autobahn's per-message cache too
                if len(payload) > max_bytes:
                    too_large += 1
                    continue
                items.append((payload, binary, key))
            framed = frame_all(items) if frame_all is not None and items else b""
            found = self._encoded[memo_key] = (framed, items, too_large)
        return found
