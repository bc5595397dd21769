"""Where the history cursor comes from: ids handed out in the reactor thread, never waiting.

Owns: the two id sources the hub numbers its readings from at each flush
(``Hub.keep_history``), so dashboards get a reading's ``id`` in the same
frame as the reading, before it is committed:

- :class:`CounterIds` (SQLite: one hub per file): counts on from the largest
  stored id + 1, read at start-up. Shared with the writer thread (which
  numbers readings submitted without an id), hence the lock.
- :class:`BlockIds` (PostgreSQL, possibly shared by a cluster of hubs):
  blocks of ids reserved from the ``reading_id`` sequence ahead of need, on
  a read thread, so two hubs never hand out the same id. A block is asked
  for when fewer than one block is left, so one block is always in reserve.

When no id is reserved in time (the database is unreachable, or ingest
outran the reservation), :meth:`BlockIds.take` hands out what it has and the
rest of the flush goes out **without** ids; the writer numbers those at
write time from the sequence. That is safe for resumes: such an id is larger
than every id this hub handed out before the reading was accepted (the
sequence only grows, and every reserved block was used up), so a client
resuming from any id it saw misses nothing; it may get again a reading it was
shown live without an id.

Does not own: the SQL (``tantra.store.sqlite`` / ``postgres``), threads
(``tantra.store.writer``), or what the hub does with the ids.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Sequence

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

_log = Logger()

#: Ids reserved from PostgreSQL per round trip.
ID_BLOCK = 20_000


class IIdSource(Interface):
    """Hands out increasing history ids in the reactor thread; never blocks."""

    last = Attribute("The largest id handed out so far (or the largest stored at start-up).")

    def take(count: int) -> Sequence[int]:
        """Up to ``count`` new ids, increasing; fewer (even none) when none are reserved."""


@implementer(IIdSource)
class CounterIds:
    """Consecutive ids from ``first`` on; thread-safe (the reactor and the writer take)."""

    def __init__(self, first: int):
        self._next = first
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        return self._next - 1

    def take(self, count: int) -> range:
        with self._lock:
            first = self._next
            self._next = first + count
        return range(first, first + count)


@implementer(IIdSource)
class BlockIds:
    """Ids from blocks reserved ahead of need by ``reserve(count)`` (a Deferred of ids).

    Reactor thread only. ``reserve`` runs off the reactor thread (the store's
    read pool); it answers with increasing ids, usually one contiguous range.
    A failed reservation is retried at the next :meth:`take` after
    ``retry_after`` seconds of ``seconds()``.
    """

    def __init__(
        self,
        reserve: Callable[[int], defer.Deferred],
        *,
        seconds: Callable[[], float],
        block: int = ID_BLOCK,
        first: Sequence[int] = (),
        last: int = 0,
        retry_after: float = 1.0,
    ):
        self._reserve = reserve
        self._seconds = seconds
        self._block = block
        self._retry_after = retry_after
        self._blocks: collections.deque[Sequence[int]] = collections.deque()
        self._at = 0  # position in self._blocks[0]
        self._left = 0
        self._reserving = False
        self._failed_at = float("-inf")
        #: Readings that went out without an id (no block was ready).
        self.missed = 0
        self.last = last
        if first:
            self._add(first)

    @property
    def available(self) -> int:
        return self._left

    def _add(self, ids: Sequence[int]) -> None:
        if ids:
            self._blocks.append(ids)
            self._left += len(ids)

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        blocks = self._blocks
        while count and blocks:
            head = blocks[0]
            piece = head[self._at : self._at + count]
            out.extend(piece)
            count -= len(piece)
            self._at += len(piece)
            if self._at >= len(head):
                blocks.popleft()
                self._at = 0
        self._left -= len(out)
        if out:
            self.last = out[-1]
        if count:
            self.missed += count
        if self._left < self._block:
            self._refill()
        return out

    def _refill(self) -> None:
        if self._reserving or self._seconds() - self._failed_at < self._retry_after:
            return
        self._reserving = True
        self._reserve(self._block).addCallbacks(self._reserved, self._not_reserved)

    def _reserved(self, ids: Iterable[int]) -> None:
        self._reserving = False
        self._add(ids if isinstance(ids, range) else list(ids))

    def _not_reserved(self, reason: object) -> None:
        self._reserving = False
        self._failed_at = self._seconds()
        _log.warn("history: could not reserve ids (readings go out without one): {reason}",
                  reason=getattr(reason, "getErrorMessage", lambda: reason)())  # fmt: skip


def as_ranges(ids: list[int]) -> Sequence[int]:
    """``ids`` (increasing) as a ``range`` when contiguous, else the list itself."""
    if ids and ids[-1] - ids[0] + 1 == len(ids):
        return range(ids[0], ids[-1] + 1)
    return ids
