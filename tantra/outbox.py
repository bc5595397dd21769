"""A bounded outgoing path for one subscriber: write, conflate, or give up.

Owns: what happens when a subscriber reads slower than readings arrive. It is
the subscriber's :class:`~tantra.hub.ISink` and its transport's push producer,
so it learns of a full send buffer from Twisted itself (``pauseProducing``),
not by guessing. While paused it keeps only the newest reading per sensor;
when the transport drains (``resumeProducing``) it sends those and goes back
to writing straight through. Paused longer than ``stall_timeout`` seconds, the
subscriber is given up (``on_give_up``), so one stalled dashboard costs the hub
at most a transport buffer plus one reading per sensor.

Does not own: framing (``encode`` turns readings into bytes) or closing the
connection (``on_give_up`` does); it works for any transport.
:class:`BoundedSender` is the part every outbox shares (``tantra.wamp.outbox``
builds on it too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from tantra import fanout
from tantra.counters import Counters
from tantra.hub import Batch, ISink
from tantra.model import Reading
from tantra.transports.sendnow import hand_back

#: ``clients_dropped`` reason for a subscriber that stayed paused too long.
STALLED = "stalled"


@implementer(IPushProducer)
class BoundedSender:
    """What every per-client outbox shares: the producer signals and the stall deadline.

    Twisted calls ``pauseProducing`` when the client's send buffer is full and
    ``resumeProducing`` when it drained. While paused a subclass holds what it
    would have written (its own policy, :meth:`_hold_nothing_more` and
    :meth:`_release_held`); paused for ``stall_timeout`` seconds, the client is
    given up: counted in ``counters.hub.clients_dropped`` and handed to ``on_give_up``
    with the reason, which closes the connection.
    """

    __slots__ = ("_clock", "_closed", "_on_give_up", "_paused", "_stall_call",
                 "_stall_timeout", "_stats")  # fmt: skip

    def __init__(
        self,
        *,
        clock: IReactorTime,
        stall_timeout: float,
        on_give_up: Callable[[str], None],
        counters: Counters,
    ):
        self._clock = clock
        self._stall_timeout = stall_timeout
        self._on_give_up = on_give_up
        self._stats = counters.hub
        self._paused = False
        self._closed = False
        self._stall_call: IDelayedCall | None = None

    @property
    def paused(self) -> bool:
        """The transport's buffer is full (the read gates of ``backpressure`` ask)."""
        return self._paused

    def pauseProducing(self) -> None:
        if self._paused or self._closed:
            return
        self._paused = True
        self._stall_call = self._clock.callLater(self._stall_timeout, self._give_up, STALLED)

    def resumeProducing(self) -> None:
        if not self._paused or self._closed:
            return
        self._paused = False
        self._cancel_stall_timer()
        self._release_held()

    def stopProducing(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop for good: drop what is held and forget the stall timer."""
        self._closed = True
        self._cancel_stall_timer()
        self._hold_nothing_more()

    def _cancel_stall_timer(self) -> None:
        if self._stall_call is not None:
            if self._stall_call.active():
                self._stall_call.cancel()
            self._stall_call = None

    def _give_up(self, reason: str) -> None:
        if self._closed:
            return
        self._stats.clients_dropped[reason] += 1
        self.close()
        self._on_give_up(reason)

    def _release_held(self) -> None:
        """Write what was held while paused (the transport has room again)."""
        raise NotImplementedError

    def _hold_nothing_more(self) -> None:
        """Forget what is held (the client is gone)."""
        raise NotImplementedError


#: Readings of a snapshot written per chunk (~25 KB of frames); see :meth:`Outbox.send_snapshot`.
SNAPSHOT_CHUNK = 256


@implementer(ISink)
class Outbox(BoundedSender):
    """One dashboard's bounded queue between the hub and its transport: readings only."""

    __slots__ = ("_conflated", "_direct", "_encode", "_fd", "_line", "_snapshot",
                 "_snapshot_at", "_snapshot_call", "_write")  # fmt: skip

    def __init__(
        self,
        *,
        write: Callable[[bytes], None],
        encode: Callable[[Sequence[Reading]], bytes],
        clock: IReactorTime,
        stall_timeout: float,
        on_give_up: Callable[[str], None],
        counters: Counters,
        line: tcp.Connection | None = None,
    ):
        super().__init__(
            clock=clock, stall_timeout=stall_timeout, on_give_up=on_give_up, counters=counters
        )
        self._write = write
        self._encode = encode
        #: The plain TCP transport ``write`` writes through to
        #: (``sendnow.line_for``), or None: with it, the hub's compiled
        #: broadcast loop (``tantra.fanout``) sends this outbox's batches
        #: itself while it is direct, exactly as :meth:`deliver` would.
        self._line = line
        #: Its socket's descriptor, noted once (the loop reads it while
        #: ``line.connected``: until Twisted closes the socket it is this client's).
        self._fd = line.fileno() if line is not None else -1
        # Filled only while paused or while a snapshot is being sent.
        self._conflated: dict[tuple[str, str], Reading] = {}
        self._snapshot: Sequence[Reading] | None = None
        self._snapshot_at = 0
        self._snapshot_call: IDelayedCall | None = None
        #: Open, not paused, no snapshot under way: :meth:`deliver` writes at
        #: once. One flag instead of three tests, because ``deliver`` runs once
        #: per client per turn (the broadcast path, issue 14).
        self._direct = True

    def _update_direct(self) -> None:
        self._direct = not (self._closed or self._paused or self._snapshot is not None)

    def pauseProducing(self) -> None:
        super().pauseProducing()
        self._update_direct()

    def resumeProducing(self) -> None:
        super().resumeProducing()
        self._update_direct()

    def close(self) -> None:
        super().close()
        self._update_direct()

    @property
    def backlog(self) -> int:
        """Readings held back for this subscriber (one per sensor at most)."""
        return len(self._conflated)

    def send_snapshot(self, readings: Sequence[Reading]) -> None:
        """Write the join snapshot, in chunks when it is large, before any live reading.

        A snapshot of the whole cache (100k sensors: ~10 MB of frames) written
        at once would sit in the transport's buffer whatever the client reads,
        and a burst of joins would hold the reactor for as long as it takes to
        build them. So past :data:`SNAPSHOT_CHUNK` readings it goes out a
        chunk per reactor turn, and only while the transport takes it (the
        producer signals); live readings for this client wait meanwhile,
        conflated per sensor exactly as when the client is slow, and follow
        the last chunk. A client that stops reading mid-snapshot is given up
        after ``stall_timeout`` like any other.
        """
        if self._closed or not readings:
            return
        if len(readings) <= SNAPSHOT_CHUNK and not self._paused:
            self._write(self._encode(readings))
            return
        self._snapshot = readings
        self._snapshot_at = 0
        self._direct = False
        if not self._paused:
            self._send_snapshot_chunk()

    def _send_snapshot_chunk(self) -> None:
        self._snapshot_call = None
        snapshot = self._snapshot
        if snapshot is None or self._closed or self._paused:
            return  # resumeProducing continues
        start = self._snapshot_at
        self._snapshot_at = start + SNAPSHOT_CHUNK
        self._write(self._encode(snapshot[start : start + SNAPSHOT_CHUNK]))
        if self._snapshot_at < len(snapshot):
            # Yield to the reactor: ingest and other clients run between chunks.
            self._snapshot_call = self._clock.callLater(0, self._send_snapshot_chunk)
            return
        self._snapshot = None
        self._update_direct()
        if not self._paused and not self._closed:
            self._release_conflated()

    @property
    def sending_snapshot(self) -> bool:
        return self._snapshot is not None

    def deliver(self, batch: Batch) -> None:
        # tantra._fanout does the direct branch in C for outboxes with a
        # ``_line``: keep the two alike (tests/test_fanout.py compares them).
        if self._direct:
            self._write(batch.encoded(self._encode))
        elif not self._closed:
            self._hold(batch.readings)

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

    def _release_held(self) -> None:
        if self._snapshot is not None:
            if self._snapshot_call is None:
                self._send_snapshot_chunk()  # the rest follows turn by turn
            return
        self._release_conflated()

    def _release_conflated(self) -> None:
        if self._conflated:
            held = list(self._conflated.values())
            self._conflated.clear()
            self._write(self._encode(held))

    def _hold_nothing_more(self) -> None:
        self._conflated.clear()
        self._snapshot = None
        self._direct = False
        if self._snapshot_call is not None:
            if self._snapshot_call.active():
                self._snapshot_call.cancel()
            self._snapshot_call = None


def _hand_back(outbox: Outbox, data: bytes, result: int) -> None:
    """What the compiled loop's send did not take, written as ``write_through`` does."""
    line = outbox._line
    assert line is not None  # the loop only sends for outboxes with a line
    hand_back(line, data, result)


fanout.register(Outbox, _hand_back)
