"""Flood a ``--mqtt`` hub over TCP, then check what the broker ends with (issue 14, MQTT out).

    python benchmarks/experiments/mqtt_flood.py [--seconds 3] [--sensors 8] [--tree DIR]

One TCP device sends batches of 100 readings (``--sensors`` sensors, values
counting up) as fast as the hub reads them for ``--seconds``; then the
script waits (at most 60 s) until the hub holds nothing, and prints the
hub's MQTT counters, the ingest rate, how long the backlog took to drain,
and how many retained topics (read with ``mosquitto_sub --retained-only``)
end on the last value sent. ``--tree`` runs another source tree's hub (a
frozen ``git archive`` of main) through ``PYTHONPATH``, for A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.broker import HOST, PORT, clear_retained, random_prefix
from tests.support.clients import TcpDevice
from tests.support.hubproc import HubProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--tree", default=None)
    args = parser.parse_args()
    if args.tree:
        os.environ["PYTHONPATH"] = args.tree
    prefix = random_prefix()
    sensors = [f"s{i}" for i in range(args.sensors)]
    with tempfile.TemporaryDirectory() as work:
        hub = HubProcess.start(
            Path(work), "--mqtt", f"mqtt://{HOST}:{PORT}", "--mqtt-prefix", prefix,
            "--store", "none",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while hub.stats()["mqtt"]["state"] != "connected" and time.monotonic() < deadline:
                time.sleep(0.05)
            device = TcpDevice(hub.host, hub.ports["tcp"])
            sent = 0
            stop = time.monotonic() + args.seconds
            started = time.monotonic()
            while time.monotonic() < stop:
                lines = []
                for _ in range(20):
                    batch = [
                        {"device": "flood", "sensor": sensors[(sent + i) % len(sensors)],
                         "value": sent + i}
                        for i in range(100)
                    ]  # fmt: skip
                    sent += 100
                    lines.append(json.dumps(batch, separators=(",", ":")).encode() + b"\n")
                device.send(b"".join(lines))
            last = {sensors[v % len(sensors)]: v for v in range(sent - len(sensors), sent)}
            deadline = time.monotonic() + 60
            while hub.stats()["accepted"] < sent and time.monotonic() < deadline:
                time.sleep(0.01)
            accepted_at = time.monotonic()
            stats = hub.stats()
            while time.monotonic() < deadline:
                stats = hub.stats()
                if stats["mqtt"].get("readings_held", 0) == 0 and (
                    "readings_held" in stats["mqtt"] or time.monotonic() > accepted_at + 5
                ):
                    break
                time.sleep(0.05)
            drained_at = time.monotonic()
            time.sleep(1.0)  # the in-flight window's last PUBACKs
            stats = hub.stats()
            lines = subprocess.run(
                ["mosquitto_sub", "-h", HOST, "-p", str(PORT), "-t", f"{prefix}/reading/#",
                 "-C", str(len(sensors)), "-W", "5", "-v", "--retained-only"],
                capture_output=True, text=True, timeout=20,
            ).stdout.splitlines()  # fmt: skip
            pairs = (line.split(" ", 1) for line in lines)
            got = {t.rsplit("/", 1)[1]: json.loads(p)["value"] for t, p in pairs}
            mqtt = stats["mqtt"]
            print(json.dumps({
                "tree": args.tree or "worktree",
                "sent": sent,
                "accepted": stats["accepted"],
                "ingest_readings_per_s": round(stats["accepted"] / (accepted_at - started)),
                "published": mqtt["readings_published"],
                "conflated": mqtt.get("readings_conflated"),
                "dropped": dict(mqtt["publish_dropped"]),
                "drain_s_after_ingest": round(drained_at - accepted_at, 2),
                "retained_on_last_value": sum(got.get(s) == last[s] for s in sensors),
                "retained_topics": len(sensors),
            }))  # fmt: skip
            device.close()
        finally:
            hub.stop()
            clear_retained(prefix)


if __name__ == "__main__":
    main()
