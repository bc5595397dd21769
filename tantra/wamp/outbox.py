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

Does not own: serialization (``serialize`` is the connection's Autobahn
serializer) or closing the connection (``on_stalled``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable

from autobahn.wamp import message
from twisted.internet.interfaces import IReactorTime

from tantra.counters import Counters
from tantra.outbox import STALLED, BoundedSender

DEFAULT_MAX_HELD_BYTES = 8 * 1024 * 1024

BACKLOG = "backlog"
__all__ = ["BACKLOG", "STALLED", "MessageOutbox"]


class MessageOutbox(BoundedSender):
    """One WAMP client's bounded queue between the router and its transport."""

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
    ):
        super().__init__(
            clock=clock, stall_timeout=stall_timeout, on_give_up=on_stalled, counters=counters
        )
        self._write = write
        self._serialize = serialize
        self._max_held_bytes = max_held_bytes
        self._held: dict[Hashable, tuple[bytes, bool]] = {}
        self._held_bytes = 0
        self._unkeyed = itertools.count()

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
        if not self._paused:
            self._write(payload, is_binary)
            return
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
