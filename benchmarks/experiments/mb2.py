"""Per-delivery cost of the broadcast path, in-process (issue 14, item 3).

``Hub._deliver`` -> ``Outbox.deliver`` -> write-through -> ``socket.send`` to N
loopback sockets (``full``: the compiled loop of ``tantra._fanout`` where it is
built, ``py``: the pure-Python loop), against a bare ``for send in sends:
send(data)`` loop;
receivers are drained outside the timing. Deterministic enough for an A/B of a
few tens of ns where the end-to-end benchmark moves ±20 %:

    taskset -c 0 python benchmarks/experiments/mb2.py [rounds]
    cc -O2 -shared -fPIC -o /tmp/sendmany.so benchmarks/experiments/sendmany.c
    SENDMANY=/tmp/sendmany.so taskset -c 0 python benchmarks/experiments/mb2.py  # + the C floor
    PYTHONPATH=/tmp/frozen-tree taskset -c 0 python benchmarks/experiments/mb2.py

The C twin of the bare loop (one ``send`` per socket) is the floor that
``loadgen/wsrelay.c`` measures in the benchmark proper.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time

import loopback  # benchmarks/experiments/loopback.py: run as a script from here
from twisted.internet import reactor, tcp

from tantra.counters import Counters
from tantra.hub import Batch, Hub
from tantra.outbox import Outbox
from tantra.transports import sendnow
from tantra.transports.sendnow import writer_for

try:
    from tantra import fanout
except ImportError:  # a tree from before the compiled loop: "py" is then "full"
    fanout = None  # type: ignore[assignment]

N = 1000
DATA = b"\x81\x50" + b"x" * 80


def main(rounds: int) -> None:
    clients, servers = loopback.socket_pairs(N)
    conns = []
    for s in servers:
        t = tcp.Connection(s, None, reactor)
        t.connected = 1
        conns.append(t)
    counters = Counters()

    def encode(readings):
        return DATA

    members = {
        Outbox(
            write=writer_for(t),
            encode=encode,
            clock=reactor,
            stall_timeout=30,
            on_give_up=lambda reason: None,
            counters=counters,
            # Older trees' Outbox takes no line (and has no compiled loop).
            **({"line": t} if hasattr(sendnow, "line_for") else {}),
        ): None
        for t in conns
    }
    sends = [t.socket.send for t in conns]

    def drain() -> None:
        loopback.drain(clients)

    def full() -> None:
        Hub._deliver(members, Batch([object()]))  # type: ignore[list-item]

    sinks = list(members)

    def py() -> None:
        if fanout is None:
            full()
        else:
            fanout.deliver_each_python(sinks, Batch([object()]))  # type: ignore[list-item]

    def raw() -> None:
        for send in sends:
            send(DATA)

    print("compiled loop:", fanout is not None and fanout.extension is not None)
    order = [("raw", raw), ("full", full), ("py", py), ("raw2", raw), ("full2", full)]
    library = os.environ.get("SENDMANY")
    if library:  # the whole loop in C, fds known (sendmany.c): the in-process floor
        sendmany = ctypes.CDLL(library).sendmany
        fds = (ctypes.c_int * N)(*(t.socket.fileno() for t in conns))
        results = (ctypes.c_long * N)()

        def cloop() -> None:
            sendmany(N, fds, DATA, len(DATA), results)

        order.append(("cloop", cloop))
    res: dict[str, list[float]] = {k: [] for k, _ in order}
    for _ in range(rounds):
        for k, f in order:
            drain()
            t0 = time.perf_counter_ns()
            f()
            res[k].append((time.perf_counter_ns() - t0) / N)
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"{k:6s} median ns/delivery {v:.0f}")
    over = statistics.median([med["full"] - med["raw"], med["full2"] - med["raw2"]])
    print(f"hub path over a bare send loop: {over:.0f} ns/delivery")
    print(f"pure-Python loop over a bare send loop: {med['py'] - med['raw']:.0f} ns/delivery")
    if "cloop" in med:
        floor = med["cloop"]
        print(
            "fraction of the C loop's rate: "
            + ", ".join(f"{k} {floor / med[k]:.3f}" for k in ("raw", "full", "full2", "py"))
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
