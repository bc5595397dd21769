"""Micro-measurements of the hub core under hostile cardinality (issue 8).

Not part of the test suite and not a load test: each figure is one in-process
measurement of one cost, through public APIs only, so the same script runs on
any revision (``PYTHONPATH=/tmp/snap python benchmarks/corehard.py``):

- RSS per cached sensor, with and without one dashboard's framing of the
  snapshot (the dashboard makes every reading's JSON be built);
- bytes per de-duplication entry (tracemalloc), for a device that counts
  1..1024 and for one that skips every other seq;
- hub CPU per reading with 2000 dashboards of distinct ``?device=`` filters;
- CPU to cycle 100k new sensor names through a full last-value cache;
- CPU of one dashboard join (snapshot + framing) with 100k sensors cached,
  unfiltered and filtered to one device of 100.

    python benchmarks/corehard.py            # all
    python benchmarks/corehard.py rss dedupe # some
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import tracemalloc

from twisted.internet.task import Clock

from tantra.dedupe import SeqWindow
from tantra.hub import Filter, Hub
from tantra.model import parse_payload
from tantra.transports.dashboard import encode_text_frames

START = 1_764_000_000.0


class NullSink:
    def deliver(self, batch) -> None:
        pass


class FramingSink:
    """What a dashboard costs the hub per turn: the turn's frames, built once."""

    def deliver(self, batch) -> None:
        batch.encoded(encode_text_frames)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def _fill(hub: Hub, clock: Clock, sensors: int, devices: int = 100) -> None:
    for start in range(0, sensors, 1000):
        batch = b",".join(
            b'{"device":"dev%d","sensor":"s%d","value":%d.5,"unit":"C"}' % (i % devices, i, i)
            for i in range(start, min(start + 1000, sensors))
        )
        hub.ingest(b"[" + batch + b"]", default_device="x")
        hub.flush()
        clock.advance(0.001)


def rss_child(with_dashboard: str) -> None:
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock, max_sensors=200_000)
    gc.collect()
    before = _rss()
    _fill(hub, clock, 100_000)
    if with_dashboard == "1":
        _, snapshot = hub.subscribe(FramingSink())
        frames = encode_text_frames(snapshot)
        del frames, snapshot
    gc.collect()
    print((_rss() - before) / 100_000)


def measure_rss() -> None:
    for flag, label in (("0", "no dashboard"), ("1", "one dashboard")):
        out = subprocess.run(
            [sys.executable, __file__, "_rss_child", flag],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"rss per cached sensor ({label}): {float(out):.0f} B")


def measure_dedupe() -> None:
    for step, label in ((1, "contiguous seqs"), (2, "every other seq")):
        window = SeqWindow(size=1024, seconds=300, max_devices=2_000_000)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        devices = 2000
        for seq in range(0, 1024 * step, step):
            for d in range(devices):
                window.is_duplicate(f"device-{d:06d}", seq, 0.0)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"de-dup bytes per device, 1024 seqs, {label}: {used / devices:.0f} B")
    window = SeqWindow(size=1024, seconds=300, max_devices=2_000_000)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for d in range(100_000):
        window.is_duplicate(f"device-{d:06d}", 1, 0.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"de-dup bytes per device, one seq each (cardinality attack): {used / 100_000:.0f} B")


def measure_filters() -> None:
    for groups in (1, 2000):
        clock = Clock()
        clock.advance(START)
        hub = Hub(clock)
        for g in range(groups):
            hub.subscribe(FramingSink(), Filter.of([f"dash{g}"]) if groups > 1 else Filter())
        payloads = [
            parse_payload(
                b'{"device":"dev%d","sensor":"t","value":%d}' % (i % 50, i),
                default_device="x",
                now_ms=int(START * 1000),
            )
            for i in range(20_000)
        ]
        started = time.process_time()
        for parsed in payloads:
            hub.accept(parsed, now=START)
            hub.flush()
        spent = time.process_time() - started
        label = "2000 distinct filters" if groups > 1 else "1 shared filter"
        print(f"hub CPU per reading, {label} (one reading a turn): {spent / 20_000 * 1e6:.1f} us")


def measure_eviction() -> None:
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock, max_sensors=100_000)
    _fill(hub, clock, 100_000)
    started = time.process_time()
    for start in range(0, 100_000, 1000):
        batch = b",".join(
            b'{"device":"new","sensor":"n%d","value":1}' % i for i in range(start, start + 1000)
        )
        hub.ingest(b"[" + batch + b"]", default_device="x")
        hub.flush()
    spent = time.process_time() - started
    print(f"CPU to cycle 100k new sensors through a full cache: {spent:.2f} s")


def measure_join() -> None:
    clock = Clock()
    clock.advance(START)
    hub = Hub(clock, max_sensors=200_000)
    _fill(hub, clock, 100_000)
    for label, filter_ in (("unfiltered", Filter()), ("one device of 100", Filter.of(["dev7"]))):
        joins = 20
        started = time.process_time()
        for _ in range(joins):
            subscription, snapshot = hub.subscribe(NullSink(), filter_)
            encode_text_frames(snapshot)
            hub.unsubscribe(subscription)
        spent = (time.process_time() - started) / joins
        print(f"join CPU at 100k sensors, {label}: {spent * 1000:.2f} ms")


MEASURES = {
    "rss": measure_rss,
    "dedupe": measure_dedupe,
    "filters": measure_filters,
    "eviction": measure_eviction,
    "join": measure_join,
}

if __name__ == "__main__":
    if sys.argv[1:2] == ["_rss_child"]:
        rss_child(sys.argv[2])
    else:
        for name in sys.argv[1:] or list(MEASURES):
            MEASURES[name]()
