"""In-memory stand-ins shared by the unit tests."""

from __future__ import annotations

from zope.interface import implementer

from tantra.hub import Batch, ISink
from tantra.model import Reading

#: The fake clock's start: 2025-11-24, so device timestamps look realistic.
START = 1_764_000_000.0


@implementer(ISink)
class RecordingSink:
    """An ISink that keeps every batch the hub gives it."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def readings(self) -> list[Reading]:
        return [reading for batch in self.batches for reading in batch.readings]


class ControlledStore:
    """A history store whose commits the test fires: ``commit(i)`` or ``shed(i)`` turn ``i``."""

    def __init__(self):
        from twisted.internet import defer

        self._defer = defer
        self.turns: list[tuple[list, object]] = []

    def submit(self, readings):
        deferred = self._defer.Deferred()
        self.turns.append((list(readings), deferred))
        return deferred

    def commit(self, index=-1):
        readings, deferred = self.turns[index]
        deferred.callback(list(range(len(readings))))

    def shed(self, index=-1):
        _, deferred = self.turns[index]
        deferred.errback(RuntimeError("queue full"))
