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
