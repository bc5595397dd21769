"""Measure the WAMP router's hardening cases (issue 8), in-process, before and after.

    python benchmarks/experiments/wamp_hardening.py               # the installed Tantra
    PYTHONPATH=/tmp/snap-OLD python benchmarks/experiments/wamp_hardening.py   # an older tree

Each case runs in a fresh subprocess so RSS figures do not mix:

- ``trie``: 20 prefix subscriptions of 60 KB straight into the topic index
  (the URI limit now refuses them at the door; this measures the index);
- ``calls``: one session sends 100 000 CALLs nobody answers, then leaves:
  RSS growth and the time its leaving takes;
- ``joins``: 100 000 cached sensors; one batched JSON message with 1 100
  SUBSCRIBEs ``get_retained`` (exact topics): the longest reactor turn and the
  total. Works with the old API (``on_message`` per message) and the new one
  (``receive`` with a per-turn budget).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
import time


def rss_mib() -> float:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def setup():
    import autobahn.twisted  # noqa: F401
    from twisted.internet import task
    from zope.interface import implementer

    from tantra.hub import Hub
    from tantra.wamp.bridge import HubBridge
    from tantra.wamp.peer import IWampConnection
    from tantra.wamp.router import Router

    clock = task.Clock()
    clock.advance(1_764_000_000)
    hub = Hub(clock)
    try:
        router = Router("tantra", clock=clock)
    except TypeError:  # before the hardening
        router = Router("tantra")
    HubBridge(hub, router.broker, router.dealer, router.stats).start()

    @implementer(IWampConnection)
    class Conn:
        peer = "bench"

        def __init__(self):
            from autobahn.wamp.serializer import JsonSerializer

            self.serializer = JsonSerializer(batched=True)
            self.count = 0

        def send(self, msg, key=None):
            self.serializer.serialize(msg)  # the real encoding cost
            self.count += 1

        def close(self, going_away=False):
            pass

        def internal_error(self):
            pass

        def pause_reading(self):
            pass

        def resume_reading(self):
            pass

    return clock, hub, router, Conn


def join(router, Conn):
    from autobahn.wamp import message
    from autobahn.wamp.role import RoleCallerFeatures, RoleSubscriberFeatures

    from tantra.wamp.session import RouterSession

    conn = Conn()
    session = RouterSession(router, conn)
    roles = {"caller": RoleCallerFeatures(), "subscriber": RoleSubscriberFeatures()}
    session.on_message(message.Hello("tantra", roles=roles))
    return session, conn


def feed(session, conn, payload: bytes, clock) -> tuple[float, float, int]:
    """Hand a batched payload to the session as the transport does: (longest turn, total, turns)."""
    try:
        from tantra.wamp.parse import parse
    except ImportError:
        parse = None
    if parse is None:
        started = time.perf_counter()
        for msg in conn.serializer.unserialize(payload, False):
            session.on_message(msg)
        took = time.perf_counter() - started
        return took, took, 1
    longest = total = 0.0
    turns = 0
    started = time.perf_counter()
    session.receive(parse(conn.serializer, payload, False, max_uri_bytes=512))
    took = time.perf_counter() - started
    longest, total, turns = took, took, 1
    while clock.getDelayedCalls():
        started = time.perf_counter()
        due = list(clock.getDelayedCalls())
        for call in due:
            clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)
        took = time.perf_counter() - started
        longest, total, turns = max(longest, took), total + took, turns + 1
    return longest, total, turns


def case_trie() -> dict:
    from tantra.wamp.match import PREFIX, ObservationMap

    observations = ObservationMap(itertools.count(1).__next__)
    before = rss_mib()
    long = "x" * 60_000
    for n in range(20):
        observations.add(f"{n:02d}.{long}", PREFIX, "s")
    return {"rss_growth_mib": round(rss_mib() - before, 1)}


def case_calls() -> dict:
    from autobahn.wamp import message

    _, _, router, Conn = setup()
    callee, _ = join(router, Conn)
    callee.on_message(message.Register(1, "com.slow"))
    caller, _ = join(router, Conn)
    before = rss_mib()
    for n in range(1, 100_001):
        caller.on_message(message.Call(n, "com.slow", args=[n]))
    pending = len(router.dealer._pending)
    grown = rss_mib() - before
    started = time.perf_counter()
    caller.connection_lost()
    leave_ms = (time.perf_counter() - started) * 1000
    return {"pending": pending, "rss_growth_mib": round(grown, 1), "leave_ms": round(leave_ms, 1)}


def case_joins() -> dict:
    clock, hub, router, Conn = setup()
    lines = [
        json.dumps({"device": f"d{n % 1000}", "sensor": f"s{n}", "value": n, "unit": "%"})
        for n in range(100_000)
    ]
    for start in range(0, len(lines), 1000):
        hub.ingest("[" + ",".join(lines[start : start + 1000]) + "]", default_device="x")
    clock.advance(0)
    session, conn = join(router, Conn)
    subs = [
        [32, n + 1, {"get_retained": True}, f"tantra.reading.d{n % 1000}.s{n}"] for n in range(1100)
    ]
    payload = b"".join(json.dumps(s).encode() + b"\x18" for s in subs)
    longest, total, turns = feed(session, conn, payload, clock)
    return {
        "payload_kb": round(len(payload) / 1024, 1),
        "sent": conn.count,
        "longest_turn_ms": round(longest * 1000, 1),
        "total_ms": round(total * 1000, 1),
        "turns": turns,
    }


CASES = {"trie": case_trie, "calls": case_calls, "joins": case_joins}

if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(CASES[sys.argv[1]]()))
    else:
        for name in CASES:
            out = subprocess.run(
                [sys.executable, __file__, name], capture_output=True, text=True, check=True
            )
            print(name, out.stdout.strip())
