"""A connection's replies in the order its payloads came, each waiting for its commit if it must.

Owns: turning ingest outcomes into replies on a stream connection (raw TCP,
WebSocket) when acks may have to wait: for the history store's commit, or,
with ``--store none``, for the hub's broadcast of the turn
(``Hub.ack_after_broadcast``). A payload that waits for nothing
(``outcome.settled is None``) gets its replies at once, unless an earlier one
still waits. A payload whose acks wait holds its slot, and
the replies of the payloads after it wait behind it, so a device always reads
its replies in the order it sent its lines (the firmware matches acks by seq,
but people reading ``nc`` output should not see them shuffled). A payload
whose readings the store could not keep gets its errors but no ack: the
device re-sends, and the re-send is taken afresh (``tantra.commits``).

A payload that waits on the hub's :class:`~tantra.commits.Settlement` holds
its slot with the outcome itself; the replies ask each pending turn once to
tell them when it settles (not a Deferred per payload), and then write the
replies of every payload now settled, up to the first still pending, in one
write: a committed turn costs each connection one call and one write
(issue 14). Any other Deferred (a caller's own) is waited on as a Deferred.

Memory: one small slot per payload that waits (its own commit, or one ahead
of it). Refusals and payloads without ``seq`` queue behind a pending commit
without touching the store, so the store's bound does not bound them: at
:data:`MAX_WAITING` slots ``on_full`` tells the owner to stop reading, and
``on_room`` tells it when they drained below the bound again.

Does not own: reply wording (``tantra.replies``), framing or writing bytes
(the ``write`` callable the transport passes), the commit rule (``tantra.commits``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from tantra import replies
from tantra.commits import NotCommitted, Settlement
from tantra.hub import IngestOutcome

Messages = list[dict[str, Any]]
_WAITING: Messages = []  # the marker of a slot whose commit is pending (compared by identity)
#: A slot: ``[messages]`` (``[_WAITING]`` until a Deferred fires), or the
#: outcome of a payload waiting on a :class:`Settlement` (read at each drain).
_Slot = list[Messages] | IngestOutcome

#: Payloads whose replies may wait behind a pending commit before the owner
#: is told to stop reading (``on_full``); a commit takes well under a second,
#: so a device that sends with ``seq`` and waits for its acks never gets near it.
MAX_WAITING = 1024


class OrderedReplies:
    """Writes each payload's replies with ``write(messages)``, in payload order."""

    __slots__ = (
        "_empty_waiters",
        "_full",
        "_listening",
        "_on_full",
        "_on_room",
        "_slots",
        "_write",
    )

    def __init__(
        self,
        write: Callable[[Messages], None],
        *,
        on_full: Callable[[], None] | None = None,
        on_room: Callable[[], None] | None = None,
    ):
        """``on_full``: :data:`MAX_WAITING` payloads wait, stop adding (stop reading);
        ``on_room``: after ``on_full``, they drained below it (read again)."""
        self._write: Callable[[Messages], None] | None = write
        self._slots: list[_Slot] = []  # short: a list costs less than a deque
        self._listening: object = None  # the turn last asked to tell us (most payloads: the same)
        self._empty_waiters: list[defer.Deferred] | None = None
        self._on_full = on_full
        self._on_room = on_room
        self._full = False

    def when_written(self) -> defer.Deferred:
        """Fires once every payload so far has its replies written (or the connection is gone).

        A device connection that is closing waits for this before it half-closes,
        so acks that wait for a commit still reach the device.
        """
        if not self._slots or self._write is None:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        if self._empty_waiters is None:
            self._empty_waiters = []
        self._empty_waiters.append(waiter)
        return waiter

    @property
    def waiting(self) -> int:
        """Payloads whose replies are not written yet (a commit ahead of them is pending)."""
        return len(self._slots)

    @property
    def full(self) -> bool:
        """:data:`MAX_WAITING` payloads wait: the owner should add no more until ``on_room``."""
        return self._full

    def add(self, outcome: IngestOutcome) -> None:
        settled = outcome.settled
        if settled is None:
            self.add_messages(replies.for_outcome(outcome))
            return
        if settled.__class__ is Settlement:
            self._wait_for(outcome, settled)
            return
        slot = [_WAITING]
        self._push(slot)
        settled.addCallbacks(
            self._committed,
            self._not_committed,
            callbackArgs=(slot, outcome),
            errbackArgs=(slot, outcome),
        )

    def _wait_for(self, outcome: IngestOutcome, settlement: Settlement) -> None:
        """Hold the outcome's slot; its turns say when they settle (once a turn, not a payload)."""
        self._push(outcome)
        if settlement.state is not None:  # settled already (not from the hub's own flow)
            self._drain()
            return
        turns = settlement.turns
        if len(turns) == 1:
            turn = turns[0]
            if turn is not self._listening:
                self._listening = turn
                turn.listeners[self] = None
        else:
            settlement.listen(self)

    def turn_settled(self) -> None:
        """A turn a payload here waits on settled: write what is ready now."""
        self._drain()

    def add_messages(self, messages: Messages) -> None:
        """Replies that wait for nothing (a login answer, a refusal), kept in payload order.

        Written at once when no commit is pending ahead of them, else queued
        behind it, so a device never reads a refusal before the acks of the
        lines it sent earlier.
        """
        if not self._slots:
            if messages and self._write is not None:
                self._write(messages)
            return
        if messages:
            self._push([messages])

    def _push(self, slot: _Slot) -> None:
        self._slots.append(slot)
        if not self._full and len(self._slots) >= MAX_WAITING:
            self._full = True
            if self._on_full is not None:
                self._on_full()

    def close(self) -> None:
        """The connection is gone: forget what was not written; later commits write nothing."""
        self._write = None
        self._slots.clear()
        self._full = False
        self._wake_empty_waiters()

    def _committed(self, _: object, slot: list[Messages], outcome: IngestOutcome) -> None:
        slot[0] = replies.for_outcome(outcome)
        self._drain()

    def _not_committed(self, reason: Failure, slot: list[Messages], outcome: IngestOutcome) -> None:
        reason.trap(NotCommitted)
        slot[0] = replies.for_outcome(outcome._replace(acks=()))
        self._drain()

    def _drain(self) -> None:
        slots = self._slots
        ready: Messages = []
        done = 0  # one del of the written slots: pop(0) each was quadratic in a flood's lines
        for slot in slots:
            if slot.__class__ is list:
                messages = slot[0]
                if messages is _WAITING:
                    break
                ready += messages
            else:  # an outcome waiting on its Settlement
                outcome: Any = slot
                state = outcome.settled.state
                if state is None:
                    break
                # Not stored: its errors, no ack (the device re-sends; tantra.commits).
                ready += replies.for_outcome(outcome if state else outcome._replace(acks=()))
            done += 1
        del slots[:done]
        if ready and self._write is not None:
            self._write(ready)
        if self._full and len(slots) < MAX_WAITING:
            self._full = False
            if self._on_room is not None:
                self._on_room()  # may add slots (and drain) again: the owner reads on
        if not slots:
            self._wake_empty_waiters()

    def _wake_empty_waiters(self) -> None:
        waiters, self._empty_waiters = self._empty_waiters, None
        for waiter in waiters or ():
            waiter.callback(None)
