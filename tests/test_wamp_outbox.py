"""A WAMP client's bounded send path: conflation of keyed events, ordered others, giving up."""

from __future__ import annotations

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
from autobahn.wamp import message
from autobahn.wamp.serializer import JsonSerializer
from twisted.internet import task

from tantra.counters import Counters
from tantra.wamp.outbox import MessageOutbox


class Wire:
    def __init__(self):
        self.frames: list[bytes] = []
        self.given_up: list[str] = []


def make_outbox(max_held_bytes=1 << 20):
    wire, counters, clock = Wire(), Counters(), task.Clock()
    outbox = MessageOutbox(
        write=lambda payload, binary: wire.frames.append(payload),
        serialize=JsonSerializer().serialize,
        clock=clock,
        stall_timeout=30,
        on_stalled=wire.given_up.append,
        counters=counters,
        max_held_bytes=max_held_bytes,
    )
    return outbox, wire, counters.hub, clock


def test_outbox_conflates_keyed_messages_and_keeps_the_others_in_order():
    outbox, wire, stats, _ = make_outbox()
    outbox.send(message.Event(1, 1, args=[1]), (1, "soil"))
    assert len(wire.frames) == 1
    outbox.pauseProducing()
    outbox.send(message.Event(1, 2, args=[2]), (1, "soil"))
    outbox.send(message.Result(9, args=["r"]))
    outbox.send(message.Event(1, 3, args=[3]), (1, "soil"))
    outbox.send(message.Event(2, 4, args=[4]), (2, "soil"))  # another subscription: kept
    assert outbox.backlog == 3 and stats.conflated == 1
    outbox.resumeProducing()
    assert wire.frames[1:] == [
        b'[50,9,{},["r"]]',
        b"[36,1,3,{},[3]]",
        b"[36,2,4,{},[4]]",
    ]


def test_outbox_gives_up_on_a_stalled_client_like_a_dashboard():
    outbox, wire, stats, clock = make_outbox()
    outbox.pauseProducing()
    clock.advance(29)
    outbox.resumeProducing()
    outbox.pauseProducing()
    clock.advance(29)
    assert wire.given_up == []
    clock.advance(1)
    assert wire.given_up == ["stalled"] and stats.clients_dropped["stalled"] == 1
    outbox.send(message.Result(1))
    assert clock.getDelayedCalls() == []


def test_outbox_gives_up_when_unmergeable_messages_pile_up():
    outbox, wire, stats, clock = make_outbox(max_held_bytes=100)
    outbox.pauseProducing()
    for n in range(10):
        outbox.send(message.Result(n, args=["x" * 20]))
    assert wire.given_up == ["backlog"] and stats.clients_dropped["backlog"] == 1
    assert clock.getDelayedCalls() == []  # the stall timer went with it
