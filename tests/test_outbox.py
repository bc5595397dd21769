"""A subscriber's bounded path: straight through, conflated while paused, closed when stalled."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tantra.counters import Counters
from tantra.hub import Batch
from tantra.model import Reading
from tantra.outbox import Outbox


def reading(sensor: str, value: float, device: str = "d") -> Reading:
    return Reading(device, sensor, value, 0)


def encode(readings) -> bytes:
    return b"".join(b"%s=%r;" % (r.sensor.encode(), r.value) for r in readings)


class Harness:
    def __init__(self):
        self.clock = Clock()
        self.counters = Counters()
        self.stats = self.counters.hub
        self.written: list[bytes] = []
        self.stalled = 0
        self.outbox = Outbox(
            write=self.written.append,
            encode=encode,
            clock=self.clock,
            stall_timeout=30.0,
            on_give_up=self._on_stalled,
            counters=self.counters,
        )

    def _on_stalled(self, reason):
        assert reason == "stalled"
        self.stalled += 1


@pytest.fixture
def h():
    return Harness()


def test_writes_straight_through_when_not_paused(h):
    h.outbox.deliver(Batch([reading("a", 1), reading("b", 2)]))
    assert h.written == [b"a=1;b=2;"]


def test_paused_keeps_newest_per_sensor_and_sends_it_on_resume(h):
    h.outbox.pauseProducing()
    h.outbox.deliver(Batch([reading("a", 1), reading("b", 2)]))
    h.outbox.deliver(Batch([reading("a", 3)]))
    h.outbox.deliver(Batch([reading("a", 4), reading("c", 5)]))
    assert h.written == []
    assert h.outbox.backlog == 3
    assert h.stats.conflated == 2  # a=1 and a=3 never reached this client
    h.outbox.resumeProducing()
    assert h.written == [b"b=2;a=4;c=5;"]
    assert h.outbox.backlog == 0
    h.outbox.deliver(Batch([reading("d", 6)]))
    assert h.written[-1] == b"d=6;"


def test_stalled_past_deadline_is_given_up(h):
    h.outbox.pauseProducing()
    h.outbox.deliver(Batch([reading("a", 1)]))
    h.clock.advance(29.9)
    assert h.stalled == 0
    h.clock.advance(0.2)
    assert h.stalled == 1
    assert h.stats.clients_dropped == {"stalled": 1}
    h.outbox.deliver(Batch([reading("a", 2)]))
    h.outbox.resumeProducing()
    assert h.written == []


def test_resume_in_time_cancels_the_deadline(h):
    h.outbox.pauseProducing()
    h.clock.advance(20)
    h.outbox.resumeProducing()
    h.clock.advance(60)
    assert h.stalled == 0
    assert h.clock.getDelayedCalls() == []


def test_repeated_signals_are_harmless(h):
    h.outbox.pauseProducing()
    h.outbox.pauseProducing()
    assert len(h.clock.getDelayedCalls()) == 1
    h.outbox.resumeProducing()
    h.outbox.resumeProducing()
    assert h.clock.getDelayedCalls() == []


def test_stop_producing_closes(h):
    h.outbox.pauseProducing()
    h.outbox.stopProducing()
    assert h.clock.getDelayedCalls() == []
    h.outbox.deliver(Batch([reading("a", 1)]))
    assert h.written == []


def test_memory_while_paused_is_bounded_by_sensors(h):
    h.outbox.pauseProducing()
    for value in range(10_000):
        h.outbox.deliver(Batch([reading(f"s{value % 5}", value)]))
    assert h.outbox.backlog == 5
