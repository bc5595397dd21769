"""The cost of ``--auth`` on TCP ingest and on fan-out, as ratios against auth off.

Run: ``python -m benchmarks.auth_cost [--readings 40000] [--dashboards 10] [--rounds 3]``.
Starts a real ``twistd -n tantra`` per run (auth off, then on, alternating),
sends ``--readings`` lines with ``seq`` from one TCP device (authenticated
with a device token when auth is on) and waits for every ack and for every
dashboard (reader tokens with a wildcard scope, so every reading passes the
per-reading scope check) to have received the last reading. Prints one line
per run and the median ratios. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import websockets.sync.client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tantra.cli import main as cli_main
from tests.support.hubproc import HubProcess


def add_token(path: Path, *args: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["token", "add", "--auth", str(path), *args]) == 0
    return json.loads(out.getvalue())["token"]


def dashboard(url: str, last_seq: int, ready: threading.Barrier, done: list) -> None:
    with websockets.sync.client.connect(url, max_size=None) as ws:
        ready.wait()
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message.get("seq") == last_seq:
                done.append(time.monotonic())
                return


def run(workdir: Path, auth: bool, readings: int, dashboards: int) -> tuple[float, float]:
    args: list[str] = []
    query = ""
    first_line = b""
    if auth:
        path = workdir / "auth.json"
        path.unlink(missing_ok=True)  # tokens are printed once: fresh ones per run
        device = add_token(path, "--kind", "device", "bench-1")
        reader = add_token(path, "--kind", "reader", "--scope", "bench-*/*", "ro")
        args = ["--auth", str(path)]
        query = f"?token={reader}"
        first_line = json.dumps({"auth": device}).encode() + b"\n"
    hub = HubProcess.start(workdir, *args)
    try:
        url = f"ws://127.0.0.1:{hub.ports['http']}/{query}"
        ready = threading.Barrier(dashboards + 1)
        done: list[float] = []
        threads = [
            threading.Thread(target=dashboard, args=(url, readings, ready, done), daemon=True)
            for _ in range(dashboards)
        ]
        for thread in threads:
            thread.start()
        ready.wait()
        sock = socket.create_connection(("127.0.0.1", hub.ports["tcp"]))
        if first_line:
            sock.sendall(first_line)
            assert b'"ok"' in sock.recv(4096)
        lines = b"".join(
            b'{"device":"bench-1","sensor":"s%d","value":%d,"seq":%d}\n' % (i % 50, i, i)
            for i in range(1, readings + 1)
        )
        started = time.monotonic()
        sender = threading.Thread(target=sock.sendall, args=(lines,), daemon=True)
        sender.start()
        acks = 0
        while acks < readings:
            acks += sock.recv(1 << 20).count(b"ack")
        ingest = time.monotonic() - started
        for thread in threads:
            thread.join(120)
        fanout = max(done) - started
        sock.close()
        return readings / ingest, readings * dashboards / fanout
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=40_000)
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(options.rounds):
            for auth in (False, True):
                ingest, fanout = run(Path(directory), auth, options.readings, options.dashboards)
                results[auth].append((ingest, fanout))
                print(f"round {round_} auth {'on ' if auth else 'off'}: TCP ingest {ingest:9.0f}"
                      f" readings/s, fan-out {fanout:10.0f} deliveries/s", flush=True)  # fmt: skip
    for index, what in ((0, "TCP ingest"), (1, "fan-out")):
        off = statistics.median(r[index] for r in results[False])
        on = statistics.median(r[index] for r in results[True])
        print(f"{what}: auth on / off = {on / off:.3f} (medians {on:.0f} / {off:.0f})")


if __name__ == "__main__":
    main()
