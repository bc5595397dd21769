"""A bounded outgoing path for one WAMP client: write, conflate, or give up.

Owns: what happens when a WAMP client reads slower than messages arrive, with
the same policy as a dashboard's :class:`tantra.outbox.Outbox`: it is the
transport's push producer, so Twisted itself says when the send buffer is full
(``pauseProducing``); while paused, a message with a conflation key (an event
of a reading, keyed by subscription and sensor) replaces the held one with the
same key, so a slow subscriber keeps one reading per sensor and subscription;
on ``resumeProducing`` the held messages go out in arrival order; paused longer
than ``stall_timeout`` the client is given up (``on_stalled``), counted as
``clients_dropped["stalled"]`` exactly like a dashboard.

Why not ``Outbox`` itself: a WAMP connection also carries messages that must
never be dropped or merged (RPC results, invocations, plain events), and
``Outbox`` holds readings only. Those are held too, and bounded in bytes: past
``max_held_bytes`` the client is given up at once (``clients_dropped["backlog"]``).

Every message is measured once serialized: one over ``max_message_bytes``
is not sent and :class:`~tantra.wamp.peer.PayloadTooLarge` is raised to the
router, which answers the request it belonged to with an ERROR (the
connection stays open; Autobahn's own check would have closed it 1011).

The events of a fan-out turn arrive as one :class:`~tantra.wamp.events.EventGroup`
(:meth:`MessageOutbox.send_events`): encoded once per serializer kind for all
subscribers of the group and, when the transport passes ``write_framed`` and
``frame_all``, written as one pre-framed ``send`` while the client keeps up;
while it is paused they are held one by one, with their conflation keys, as
single messages are.

Does not own: serialization (``serialize`` is the connection's Autobahn
serializer), framing (``frame_all``, the transport's) or closing the
connection (``on_stalled``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable

from autobahn.wamp import message
from twisted.internet.interfaces import IReactorTime

from tantra.counters import Counters
from tantra.outbox import STALLED, BoundedSender
from tantra.wamp.events import Encoded, Encoding, EventGroup, FrameAll, encoding_of
from tantra.wamp.limits import WampLimits
from tantra.wamp.peer import PayloadTooLarge

DEFAULT_MAX_HELD_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = WampLimits().max_outgoing_bytes

BACKLOG = "backlog"
__all__ = ["BACKLOG", "STALLED", "MessageOutbox"]


class MessageOutbox(BoundedSender):
    """One WAMP client's bounded queue between the router and its transport."""

    # Slotted like the dashboards' Outbox: fewer memory lines touched per subscriber per turn.
    __slots__ = ("_direct", "_encoding", "_held", "_held_bytes", "_max_held_bytes",
                 "_max_message_bytes", "_serialize", "_unkeyed", "_write",
                 "_write_framed", "on_writable")  # fmt: skip

    def __init__(
        self,
        *,
        write: Callable[[bytes, bool], None],
        serialize: Callable[[message.Message], tuple[bytes, bool]],
        clock: IReactorTime,
        stall_timeout: float,
        on_stalled: Callable[[str], None],
        counters: Counters,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        write_framed: Callable[[bytes], None] | None = None,
        frame_all: FrameAll | None = None,
    ):
        """``write_framed`` and ``frame_all``: write already framed bytes, and frame
        encoded messages (a module-level function, so groups share its memo);
        without them a group's events are written one ``write`` each."""
        super().__init__(
            clock=clock, stall_timeout=stall_timeout, on_give_up=on_stalled, counters=counters
        )
        self._write = write
        self._serialize = serialize
        self._max_held_bytes = max_held_bytes
        self._max_message_bytes = max_message_bytes
        self._held: dict[Hashable, tuple[bytes, bool]] = {}
        self._held_bytes = 0
        self._unkeyed = itertools.count()
        # What EventGroup encodings are memoized by: every connection of a kind shares it.
        serializer = getattr(getattr(serialize, "__self__", None), "_serializer", None)
        self._write_framed = write_framed if frame_all is not None else None
        self._encoding: Encoding | None = (
            None
            if serializer is None
            else encoding_of(serializer, max_message_bytes, frame_all if write_framed else None)
        )
        self._direct: Callable[[bytes], None] | None = None
        self._update_direct()
        #: Called when the transport drained (after what was held is written), if
        #: it still has room: the session's retained events wait for it.
        self.on_writable: Callable[[], None] | None = None

    @property
    def writable(self) -> bool:
        """Neither paused nor closed: what is sent now is written, not held."""
        return not (self._paused or self._closed)

    @property
    def backlog(self) -> int:
        """Messages held back for this client."""
        return len(self._held)

    def send(self, msg: message.Message, conflation_key: Hashable | None = None) -> None:
        if self._closed:
            return
        # Autobahn caches the bytes per serializer on the message, so an event
        # shared by many subscribers is encoded once per serializer kind.
        payload, is_binary = self._serialize(msg)
        if len(payload) > self._max_message_bytes:
            raise PayloadTooLarge(len(payload), self._max_message_bytes)
        if not self._paused:
            self._write(payload, is_binary)
            return
        self._hold(payload, is_binary, conflation_key)

    def send_events(self, group: EventGroup) -> int:
        """Send a turn's events (see :class:`EventGroup`); returns how many were too large.

        Runs once per subscriber per turn, so the usual case (open, not
        paused, pre-framed writes) reads two slots of this outbox (the
        writer, the encoding) and writes: at 1000 subscribers a turn, every
        slot read on another cache line is a miss per subscriber.
        """
        direct = self._direct
        if direct is None:
            return self._send_events_otherwise(group)
        encoding = self._encoding
        if group.encoding is not encoding:
            group.use(encoding)  # type: ignore[arg-type]  # _direct is None without one
        framed = group.framed
        if framed:
            direct(framed)
        return group.too_large

    def _send_events_otherwise(self, group: EventGroup) -> int:
        """Closed, paused, unframed or not an Autobahn serializer."""
        if self._closed:
            return 0
        encoding = self._encoding
        if encoding is None:  # not an Autobahn serializer: one message at a time
            return self._send_one_by_one(group)
        if group.encoding is not encoding:
            group.use(encoding)
        return self._send_items(group.items, group.too_large)

    def _update_direct(self) -> None:
        """``_direct``: where a group's framed bytes go now, or None to take the long way."""
        self._direct = (
            None if self._paused or self._closed or self._encoding is None else self._write_framed
        )

    def pauseProducing(self) -> None:
        super().pauseProducing()
        self._update_direct()

    def resumeProducing(self) -> None:
        super().resumeProducing()  # may write what was held, and be paused again meanwhile
        self._update_direct()
        on_writable = self.on_writable
        if on_writable is not None and self.writable:
            on_writable()

    def close(self) -> None:
        super().close()
        self._update_direct()
        self.on_writable = None

    def _send_items(self, items: list[Encoded], too_large: int) -> int:
        """Paused: hold each event with its key; without ``write_framed``: write each."""
        if self._paused:
            for payload, is_binary, key in items:
                self._hold(payload, is_binary, key)
                if self._closed:  # given up: over max_held_bytes
                    break
        else:
            write = self._write
            for payload, is_binary, _ in items:
                write(payload, is_binary)
        return too_large

    def _send_one_by_one(self, group: EventGroup) -> int:
        too_large = 0
        for event, key in group.events:
            try:
                self.send(event, key)
            except PayloadTooLarge:
                too_large += 1
        return too_large

    def _hold(self, payload: bytes, is_binary: bool, conflation_key: Hashable | None) -> None:
        if conflation_key is None:
            key: Hashable = ("unkeyed", next(self._unkeyed))
        else:
            key = ("keyed", conflation_key)
            previous = self._held.pop(key, None)  # re-insert: send order follows arrival
            if previous is not None:
                self._held_bytes -= len(previous[0])
                self._stats.conflated += 1
        self._held[key] = (payload, is_binary)
        self._held_bytes += len(payload)
        if self._held_bytes > self._max_held_bytes:
            self._give_up(BACKLOG)

    def flush(self) -> None:
        """Write everything held now, paused or not (a last ABORT or GOODBYE must go out)."""
        if not self._closed:
            self._release_held()

    def _release_held(self) -> None:
        held = list(self._held.values())
        self._held.clear()
        self._held_bytes = 0
        for payload, is_binary in held:
            self._write(payload, is_binary)

    def _hold_nothing_more(self) -> None:
        self._held.clear()
        self._held_bytes = 0
