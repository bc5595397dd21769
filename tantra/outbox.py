"""A bounded outgoing path for one subscriber: write, conflate, or give up.

Owns: what happens when a subscriber reads slower than readings arrive. It is
the subscriber's :class:`~tantra.hub.ISink` and its transport's push producer,
so it learns of a full send buffer from Twisted itself (``pauseProducing``),
not by guessing. While paused it keeps only the newest reading per sensor;
when the transport drains (``resumeProducing``) it sends those and goes back
to writing straight through. Paused longer than ``stall_timeout`` seconds, the
subscriber is given up (``on_stalled``), so one stalled dashboard costs the hub
at most a transport buffer plus one reading per sensor.

Does not own: framing (``encode`` turns readings into bytes) or closing the
connection (``on_stalled`` does); it works for any transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from tantra.hub import Batch, HubStats, ISink
from tantra.model import Reading


@implementer(ISink, IPushProducer)
class Outbox:
    """One subscriber's bounded queue between the hub and its transport."""

    def __init__(
        self,
        *,
        write: Callable[[bytes], None],
        encode: Callable[[Sequence[Reading]], bytes],
        clock: IReactorTime,
        stall_timeout: float,
        on_stalled: Callable[[], None],
        stats: HubStats,
    ):
        self._write = write
        self._encode = encode
        self._clock = clock
        self._stall_timeout = stall_timeout
        self._on_stalled = on_stalled
        self._stats = stats
        self._paused = False
        self._closed = False
        self._conflated: dict[tuple[str, str], Reading] = {}
        self._stall_call: IDelayedCall | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def backlog(self) -> int:
        """Readings held back for this subscriber (one per sensor at most)."""
        return len(self._conflated)

    def deliver(self, batch: Batch) -> None:
        if self._closed:
            return
        if self._paused:
            self._hold(batch.readings)
        else:
            self._write(batch.encoded(self._encode))

    def _hold(self, readings: Sequence[Reading]) -> None:
        conflated = self._conflated
        replaced = 0
        for reading in readings:
            key = reading.key
            if key in conflated:
                replaced += 1
                del conflated[key]  # re-insert so the send order follows arrival
            conflated[key] = reading
        self._stats.conflated += replaced

    # -- IPushProducer: called by the transport ------------------------------

    def pauseProducing(self) -> None:
        if self._paused or self._closed:
            return
        self._paused = True
        self._stall_call = self._clock.callLater(self._stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        if not self._paused or self._closed:
            return
        self._paused = False
        self._cancel_stall_timer()
        if self._conflated:
            held = list(self._conflated.values())
            self._conflated.clear()
            self._write(self._encode(held))

    def stopProducing(self) -> None:
        self.close()

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Stop for good: drop what is held and forget the stall timer."""
        self._closed = True
        self._cancel_stall_timer()
        self._conflated.clear()

    def _cancel_stall_timer(self) -> None:
        if self._stall_call is not None:
            if self._stall_call.active():
                self._stall_call.cancel()
            self._stall_call = None

    def _stalled(self) -> None:
        self._stall_call = None
        if self._closed:
            return
        self._stats.clients_dropped["stalled"] += 1
        self.close()
        self._on_stalled()
