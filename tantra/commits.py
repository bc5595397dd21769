"""Acks that mean "stored": which accepted ``(device, seq)`` pairs wait for a commit.

Owns: the rule that, with a history store, a reading's ack waits until the
transaction holding it has committed, and what follows from it:

- The readings the hub accepts in one turn are handed to the store together
  (:meth:`CommitGate.submit`, at the hub's flush) and form one *turn*; the
  acks of every payload with a reading in that turn wait for its commit
  (:meth:`CommitGate.classify_into` returns the :class:`Settlement` to wait on).
- A re-sent ``(device, seq)`` whose first copy is still uncommitted is a
  duplicate, and its ack waits for that first copy's turn: an ack is never
  sent for a reading that is not yet stored, not even a repeated one.
- The de-duplication window learns a ``(device, seq)`` only once it is
  committed. A turn the store could not keep (queue full, hub stopping) is
  forgotten, so the device's re-send is accepted afresh instead of being
  acked as a duplicate of something that was never stored.

Without a store the same turns carry a weaker promise (:class:`BroadcastGate`):
an ack waits until the hub's flush has handed its turn to every subscriber.

Memory: one entry per accepted-but-uncommitted reading with a seq. The
store's queue is bounded and sheds (failing the turn at once) past it, so
this is bounded by the store's queue too.

A payload's wait is a :class:`Settlement`, not a Deferred of its own: a
transport that writes replies in payload order (``OrderedReplies``) asks the
turn to tell it once when it settles (:meth:`Settlement.listen`) and reads
each payload's state then, so a committed turn costs one call per connection,
not a Deferred, its callbacks and a reply write per payload (issue 14: those
were a third of the reactor's extra work per stored reading). Anyone else
(UDP, MQTT) adds callbacks to it as to the Deferred it makes on first use.

Does not own: storing (``tantra.store``), de-duplication rules
(``tantra.dedupe``), or writing replies (the transports, which send a
payload's replies once its Settlement settles, in payload order). Pure of I/O:
the store is an :class:`IDurable`.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from tantra.model import Reading

_log = Logger()

Key = tuple[str, int]


class IDurable(Interface):
    """Where accepted readings are made durable (the history store)."""

    def submit(readings: Sequence[Reading]) -> defer.Deferred:
        """Queue readings; the Deferred fires after their commit, or fails when they were shed."""


class NotCommitted(Exception):
    """The readings a payload's acks waited for were not stored (the device will re-send)."""


class TurnListener(Protocol):
    """Told once when a turn it waits on settles (:meth:`Settlement.listen`)."""

    def turn_settled(self) -> None: ...


class _Turn:
    """The readings with a seq accepted in one hub turn, and who waits for their commit."""

    __slots__ = ("keys", "listeners", "outcome", "waiters")

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.waiters: list[defer.Deferred] = []
        #: Told once at the settle, in the order they first listened (a dict: each once).
        self.listeners: dict[TurnListener, None] = {}
        #: None while the commit is pending; True once committed; a Failure if not stored.
        self.outcome: bool | Failure | None = None

    def settle(self, outcome: bool | Failure) -> None:
        """Record ``outcome`` and tell everyone waiting: Deferreds, then listeners."""
        self.outcome = outcome
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if outcome is True:
                waiter.callback(None)
            else:
                waiter.errback(NotCommitted())
        listeners, self.listeners = self.listeners, {}
        for listener in listeners:
            listener.turn_settled()

    def wait(self) -> defer.Deferred:
        if self.outcome is True:
            return defer.succeed(None)
        if isinstance(self.outcome, Failure):
            return defer.fail(NotCommitted())
        waiter: defer.Deferred = defer.Deferred()
        self.waiters.append(waiter)
        return waiter


class Settlement:
    """What one payload's acks wait for: every pending turn holding one of its readings.

    :attr:`state` says where that stands without a Deferred; the Deferred
    (fires once all those turns committed, fails with :class:`NotCommitted`
    as soon as one was not stored) is made on the first ``add*`` call, and
    every later call adds to that same Deferred, as with any Deferred.
    """

    __slots__ = ("_deferred", "turns")

    def __init__(self, turns: Sequence[_Turn]):
        self.turns = turns
        self._deferred: defer.Deferred | None = None

    @property
    def state(self) -> bool | None:
        """None while pending; True once every turn committed; False once one was not stored."""
        turns = self.turns
        if len(turns) == 1:
            outcome = turns[0].outcome
            return outcome if outcome is None or outcome is True else False
        pending = False
        for turn in turns:
            if turn.outcome is None:
                pending = True
            elif turn.outcome is not True:
                return False
        return None if pending else True

    def listen(self, listener: TurnListener) -> None:
        """Have ``listener.turn_settled()`` called when each still pending turn settles."""
        for turn in self.turns:
            if turn.outcome is None:
                turn.listeners[listener] = None

    def deferred(self) -> defer.Deferred:
        """The Deferred of this wait (made once, on first need)."""
        if self._deferred is None:
            turns = self.turns
            if len(turns) == 1:
                self._deferred = turns[0].wait()
            else:
                waiting = defer.gatherResults([turn.wait() for turn in turns], consumeErrors=True)
                self._deferred = waiting.addCallbacks(_nothing, _first_error)
        return self._deferred

    def addCallbacks(self, *args: Any, **kwargs: Any) -> defer.Deferred:  # Deferred's names
        return self.deferred().addCallbacks(*args, **kwargs)

    def addCallback(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        return self.deferred().addCallback(*args, **kwargs)

    def addErrback(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        return self.deferred().addErrback(*args, **kwargs)

    def addBoth(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        return self.deferred().addBoth(*args, **kwargs)


class CommitGate:
    """Holds acks until commit; the hub asks it, instead of the window, what is a duplicate."""

    def __init__(
        self,
        store: IDurable,
        *,
        seen: Callable[[str, int], bool],
        commit: Callable[[Iterable[Key]], None],
    ):
        """``seen(device, seq)``: already committed (the de-dup window, read only);
        ``commit(keys)``: record committed pairs in that window."""
        self._store = store
        self._seen = seen
        self._commit = commit
        self._current: _Turn | None = None
        self._uncommitted: dict[Key, _Turn] = {}

    @property
    def uncommitted(self) -> int:
        """Accepted readings with a seq whose commit is still pending."""
        return len(self._uncommitted)

    def classify_into(
        self,
        readings: Iterable[Reading],
        accepted: list[Reading],
        duplicates: list[Reading],
        acks: list[int],
    ) -> Settlement | None:
        """Sort one payload's readings into the hub's lists; what its acks wait for.

        A reading without seq is accepted (nothing to wait for); one with a
        seq is acked, and accepted when new (it joins the current turn) or a
        duplicate (committed before: acked at once; or held by a pending
        turn: its ack waits for that turn). Returns what the payload's acks
        wait for (None: nothing). One loop with the look-ups at hand, not a
        method call per reading (issue 14: that was a tenth of the reactor's
        extra work per stored reading).
        """
        uncommitted = self._uncommitted
        pending = uncommitted.get
        seen = self._seen
        turns: list[_Turn] = []
        current = None  # the current turn, once a new reading of this payload joined it
        for reading in readings:
            seq = reading.seq
            if seq is None:
                accepted.append(reading)
                continue
            acks.append(seq)
            key = (reading.device, seq)
            turn = pending(key)
            if turn is not None:  # its first copy is still uncommitted: wait for that one
                duplicates.append(reading)
                if turn not in turns:
                    turns.append(turn)
            elif seen(reading.device, seq):  # committed before: a duplicate, acked at once
                duplicates.append(reading)
            else:  # new: joins this turn
                accepted.append(reading)
                if current is None:
                    current = self._current
                    if current is None:
                        current = self._current = _Turn()
                    if current not in turns:
                        turns.append(current)
                current.keys.append(key)
                uncommitted[key] = current
        return Settlement(turns) if turns else None

    def holds(self, device: str, seq: int) -> bool:
        """True when ``(device, seq)`` was accepted already: committed, or its
        commit is pending. Changes nothing. The replay rule asks it before
        letting a retry that is below its window reach :meth:`classify_into`, and
        the hub asks it of readings from the cluster bus: a copy of one that is
        here already, on its way to this hub's store, is a duplicate."""
        return (device, seq) in self._uncommitted or self._seen(device, seq)

    def submit(self, readings: Sequence[Reading]) -> Callable[[], defer.Deferred]:
        """Hand one turn's accepted readings to the store (called at the hub's flush).

        Returns ``when_committed()``: each call gives a new Deferred that fires
        once these readings are committed, or fails with :class:`NotCommitted`
        if the store shed them (``Batch.committed``: the cluster publishes a
        turn only once it is stored, docs/cluster.md).
        """
        turn, self._current = self._current, None
        if turn is None:  # no reading with a seq: no acks wait, but the cluster may
            turn = _Turn()
        stored = self._store.submit(readings)
        stored.addCallbacks(
            self._committed, self._not_stored, callbackArgs=(turn,), errbackArgs=(turn,)
        )
        return turn.wait

    def _committed(self, _ids: Any, turn: _Turn) -> None:
        self._commit(turn.keys)
        self._settle(turn, True)

    def _not_stored(self, reason: Failure, turn: _Turn) -> None:
        self._settle(turn, reason)

    def _settle(self, turn: _Turn, outcome: bool | Failure) -> None:
        # Every key of a turn maps to that turn until it settles: classify_into adds a
        # key only when no pending turn holds it, and only here do keys leave. So
        # the turn's keys leave in one C-level pass (a Python loop with a check
        # per key was a tenth of the reactor's extra work per stored reading),
        # or all at once when this turn is all that is pending.
        uncommitted = self._uncommitted
        keys = turn.keys
        if len(keys) == len(uncommitted):
            uncommitted.clear()
        elif keys:
            collections.deque(map(uncommitted.pop, keys, itertools.repeat(None)), maxlen=0)
        turn.settle(outcome)


class BroadcastGate:
    """Without a store: a payload's acks wait until the hub's flush has handed
    the turn's readings to every subscriber.

    The hub accepts in one reactor turn and broadcasts in the next
    (``callLater(0)``); an ack written in between promises a reading that a
    ``kill -9`` at that moment would take with it, never broadcast. Waiting
    for the flush closes that gap: once the ack leaves, the reading is in
    every subscriber connection's send buffer (or Twisted's, for a slow one).
    One :class:`_Turn` per flush, one :class:`Settlement` per payload that
    owes acks; :class:`OrderedReplies` then writes a connection's replies once
    per turn, as it does for commits.
    """

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: _Turn | None = None

    def settlement(self) -> Settlement:
        """What a payload accepted in this turn waits for: this turn's flush."""
        turn = self._current
        if turn is None:
            turn = self._current = _Turn()
        return Settlement((turn,))

    def flushed(self) -> None:
        """The turn's readings reached every subscriber: its acks may go."""
        turn, self._current = self._current, None
        if turn is not None:
            turn.settle(True)


def _nothing(_: object) -> None:
    return None


def _first_error(reason: Failure) -> Failure:
    reason.trap(defer.FirstError)
    return reason.value.subFailure  # type: ignore[union-attr]
