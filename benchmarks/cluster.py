"""Cluster figures: added latency A -> B over the broker, and bus throughput per hub.

Not part of the test suite. Needs Mosquitto on 127.0.0.1:1883.

    python -m benchmarks.cluster [--rate 1000] [--seconds 5] [--burst 20000] [--dashboards 10]
                                 [--store sqlite|none] [--commit-interval MS]

Two real ``twistd -n tantra --cluster`` hubs, A and B, on the broker. A TCP
device sends to A at ``--rate`` readings/s; a dashboard on A and one on B
timestamp every arrival (one monotonic clock, one process), so the added
latency of a reading is (arrival on B) - (arrival on A): the bus hop alone.
Then ``--burst`` readings go to A as fast as TCP takes them, and the time
until B's dashboards (``--dashboards`` of them) have all of them gives the bus
throughput per hub and the fan-out on B of readings from A.

With a store (``--store sqlite``, the hubs' default) A publishes a turn to
the cluster only once it is committed, so the added latency includes A's
commit (up to ``--commit-interval`` plus the write); ``--store none`` is the
bus hop alone.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support.clients import TcpDevice, dashboard
from tests.support.hubproc import HubProcess


class Stamper(threading.Thread):
    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.ws = dashboard(url).__enter__()
        self.arrivals: dict[int, float] = {}
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                raw = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            now = time.monotonic()
            self.arrivals.setdefault(json.loads(raw)["value"], now)

    def close(self) -> None:
        self.stopping.set()
        self.join(5)
        self.ws.close()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def wait_all(stampers: list[Stamper], wanted: range, timeout: float) -> float:
    """When the last of ``wanted`` reached the last dashboard (NaN if some never did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(s.arrivals.keys() & set(wanted)) == len(wanted) for s in stampers):
            return max(max(s.arrivals[v] for v in wanted) for s in stampers)
        time.sleep(0.05)
    got = min(len(s.arrivals.keys() & set(wanted)) for s in stampers)
    print(f"  timed out: {got} of {len(wanted)} readings reached every dashboard of B")
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--store", choices=("sqlite", "none"), default="sqlite")
    parser.add_argument("--commit-interval", type=float, default=10.0, help="ms")
    args = parser.parse_args()
    prefix = f"bench-{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix="tantra-cluster-"))
    common = ["--mqtt", "mqtt://127.0.0.1:1883", "--mqtt-prefix", prefix, "--cluster", "bench"]
    common += ["--store", "sqlite:tantra.sqlite3" if args.store == "sqlite" else "none"]
    common += ["--commit-interval", str(args.commit_interval)]
    a = HubProcess.start(work / "a", *common)
    b = HubProcess.start(work / "b", *common)
    try:
        time.sleep(1.0)
        on_a, on_b = Stamper(a.ws_url), Stamper(b.ws_url)
        device = TcpDevice(a.host, a.ports["tcp"])
        count = int(args.rate * args.seconds)
        start = time.monotonic()
        for n in range(count):
            due = start + n / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            device.send(b'{"device":"bench","sensor":"s%d","value":%d}\n' % (n % 500, n))
        wait_all([on_b], range(count), 30)
        added = [(on_b.arrivals[n] - on_a.arrivals[n]) * 1000 for n in range(count)]
        print(f"added latency A->B at {args.rate}/s over {count} readings (store {args.store}):")
        print(f"  p50 {statistics.median(added):.2f} ms  p99 {percentile(added, 0.99):.2f} ms"
              f"  max {max(added):.2f} ms")  # fmt: skip
        on_a.close()
        on_b.close()

        fan = [Stamper(b.ws_url) for _ in range(args.dashboards)]
        base = 10_000_000
        start = time.monotonic()
        for n in range(args.burst):
            device.send(b'{"device":"burst","sensor":"s%d","value":%d}\n' % (n, base + n))
        sent = time.monotonic()
        done = wait_all(fan, range(base, base + args.burst), 30)
        print(f"burst of {args.burst} readings into A (sent in {sent - start:.2f} s):")
        took = done - start
        print(
            f"  all on {args.dashboards} dashboards of B after {took:.2f} s:"
            f" {args.burst / took:,.0f} readings/s over the bus,"
            f" {args.burst * args.dashboards / took:,.0f} deliveries/s on B"
        )
        for stamper in fan:
            stamper.close()
        print("A /stats mqtt:", json.dumps(a.stats()["mqtt"]))
        print("B /stats mqtt:", json.dumps(b.stats()["mqtt"]))
    finally:
        a.stop()
        b.stop()
        for topic_filter in (f"{prefix}/#",):
            found = subprocess.run(
                ["mosquitto_sub", "-t", topic_filter, "--retained-only", "-W", "1", "-F", "%t"],
                capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            for topic in found:
                subprocess.run(["mosquitto_pub", "-t", topic, "-r", "-n"])


if __name__ == "__main__":
    main()
