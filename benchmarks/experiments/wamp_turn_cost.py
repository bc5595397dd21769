"""One hub turn of one reading to N WAMP subscribers vs N dashboards, in-process (issue 14).

    python benchmarks/experiments/wamp_turn_cost.py                  # the installed Tantra
    PYTHONPATH=/tmp/snap-OLD python benchmarks/experiments/wamp_turn_cost.py   # an older tree
    python benchmarks/experiments/wamp_turn_cost.py --cold           # caches evicted per turn

What ``wamp-rate-1000x50`` vs ``rate-1000x50`` compare, without the sockets
and without the noise of a shared machine: the same hub, the same reading,
1000 subscribers either way (``wamp.2.json``, one prefix subscription on
``tantra.reading``, wired as ``tantra.wamp.transport`` wires them; or
dashboard ``Outbox``es), and a write that does what ``sendnow.writer_for``'s
checks do but no ``send()``. Reported per turn (median of 400): the whole
flush, and when the first write starts after the flush began (every
subscriber's latency includes it). ``--cold`` sweeps 64 MiB before each
turn, as the other processes of a real run do between two readings 20 ms
apart; the hub's per-subscriber loop is then mostly cache misses.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from typing import Any

import autobahn.twisted  # noqa: F401  (chooses Twisted for txaio before serializers load)
from autobahn.wamp.serializer import JsonSerializer
from twisted.internet import task

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.outbox import Outbox
from tantra.transports.dashboard import encode_text_frames
from tantra.wamp.bridge import HubBridge
from tantra.wamp.options import keeping_disclosure
from tantra.wamp.outbox import MessageOutbox
from tantra.wamp.parse import parse
from tantra.wamp.router import Router
from tantra.wamp.session import RouterSession
from tantra.wamp.transport import frame, frame_all

FIRST = [0]
#: One per process, as the factory's: connections copy it and share its object serializer.
JSON = JsonSerializer()


class _Transport:
    dataBuffer = b""
    _tempDataLen = 0
    disconnecting = False
    _writeDisconnected = False
    connected = True


def writer() -> Any:
    """``sendnow.writer_for``'s checks, and the time of the turn's first write."""
    transport = _Transport()

    def write_through(data: bytes) -> None:
        if not FIRST[0]:
            FIRST[0] = time.perf_counter_ns()
        if (
            transport.dataBuffer
            or transport._tempDataLen
            or transport.disconnecting
            or transport._writeDisconnected
            or not transport.connected
        ):
            return

    return write_through


class _Connection:
    """As ``tantra.wamp.transport._Connection``: the outbox's ``send_events`` as an attribute."""

    def __init__(self, clock: Any):
        self.peer = "bench"
        serializer = keeping_disclosure(JSON)
        self.serializer = serializer
        write_framed = writer()
        self.outbox = MessageOutbox(
            write=lambda payload, binary: write_framed(frame(payload, binary)),
            write_framed=write_framed,
            frame_all=frame_all,
            serialize=serializer.serialize,
            clock=clock,
            stall_timeout=30.0,
            on_stalled=lambda reason: None,
            counters=Counters(),
        )
        self.send_events = self.outbox.send_events

    def send(self, msg: Any, conflation_key: Any = None) -> None:
        self.outbox.send(msg, conflation_key)

    def close(self, going_away: bool = False) -> None:
        pass

    def internal_error(self) -> None:
        raise AssertionError("internal error")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def wamp_hub(n: int) -> tuple[Hub, task.Clock]:
    clock = task.Clock()
    clock.advance(1_764_000_000.0)
    hub = Hub(clock)
    router = Router("tantra", clock=clock)
    HubBridge(hub, router.broker, router.dealer, router.stats).start()
    request = itertools.count(1)
    for _ in range(n):
        connection = _Connection(clock)
        session = RouterSession(router, connection)  # type: ignore[arg-type]
        objects = connection.serializer._serializer
        for raw in (
            [1, "tantra", {"roles": {"subscriber": {}}}],
            [32, next(request), {"match": "prefix"}, "tantra.reading"],
        ):
            payload = objects.serialize(raw)
            session.receive(parse(connection.serializer, payload, False, max_uri_bytes=1024))
    return hub, clock


def dashboard_hub(n: int) -> tuple[Hub, task.Clock]:
    clock = task.Clock()
    clock.advance(1_764_000_000.0)
    hub = Hub(clock)
    for _ in range(n):
        outbox = Outbox(
            write=writer(),
            encode=encode_text_frames,
            clock=clock,
            stall_timeout=30.0,
            on_give_up=lambda reason: None,
            counters=Counters(),
        )
        hub.subscribe(outbox)
    return hub, clock


def turns(hub: Hub, clock: task.Clock, count: int, cold: bool) -> tuple[float, float]:
    """Median µs of (the flush, its first write) over ``count`` one-reading turns."""
    sweep = bytearray(64 << 20)
    zeros = bytes(len(sweep[::64]))
    whole, first = [], []
    for i in range(count):
        hub.ingest(
            b'{"device":"dev1","sensor":"s%d","value":%d,"unit":"%%"}' % (i % 10, i),
            default_device="x",
        )
        if cold:
            sweep[::64] = zeros
        FIRST[0] = 0
        start = time.perf_counter_ns()
        hub.flush()
        whole.append(time.perf_counter_ns() - start)
        first.append(FIRST[0] - start)
        clock.advance(0.02)
    whole.sort()
    first.sort()
    return whole[count // 2] / 1e3, first[count // 2] / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    wamp = wamp_hub(args.subscribers)
    dashboards = dashboard_hub(args.subscribers)
    gc.disable()  # a collection inside one turn is noise here
    print(f"{args.subscribers} subscribers, 1 reading a turn, {'cold' if args.cold else 'warm'}")
    for _ in range(args.reps):
        w_turn, w_first = turns(*wamp, args.turns, args.cold)
        d_turn, d_first = turns(*dashboards, args.turns, args.cold)
        print(
            f"  WAMP {w_turn:7.1f} µs a turn, first write at {w_first:5.1f} µs"
            f" | dashboards {d_turn:7.1f} µs, {d_first:5.1f} µs"
            f" | ratio {w_turn / d_turn:.2f}"
        )


if __name__ == "__main__":
    main()
