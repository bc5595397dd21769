"""Bounded measurements of hostile clients against a real hub (issue 8, items 4, 12, 17).

Run: ``python -m benchmarks.hostile [--tree DIR]`` (``--tree`` runs another
checkout's ``tantra``, e.g. the commit before a fix, for a before/after).
Each scenario takes a few seconds and prints one line; nothing here is a test.

- tcp-acks: one TCP device sends N readings with ``seq`` and never reads its acks.
- tcp-bad: one TCP device sends 64 KB bad batches and never reads the errors.
- ws-bad: one WebSocket client sends 64 KB bad batches and never reads.
- udp-bad: 20 datagrams of 8 KB bad batches; counts reply datagrams and bytes.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.hubproc import HubProcess


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def flood(sock: socket.socket, chunks, seconds: float) -> int:
    """Send chunks without reading until the hub stops reading (send blocks) or time is up."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    sent = 0
    for chunk in chunks:
        try:
            sock.sendall(chunk)
        except TimeoutError:
            break
        sent += len(chunk)
        if time.monotonic() > deadline:
            break
    return sent


def scenario_tcp(hub: HubProcess, bad: bool) -> str:
    sock = socket.create_connection((hub.host, hub.ports["tcp"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before = rss_kib(hub.process.pid)
    if bad:
        batch = b"[" + b",".join([b"1"] * 32000) + b"]\n"  # 64 KB, 32000 errors
        chunks = (batch for _ in range(100))
    else:
        chunks = (
            b"".join(b'{"sensor":"s","value":1,"seq":%d}\n' % (i * 1000 + j) for j in range(1000))
            for i in range(1000)
        )
    sent = flood(sock, chunks, 20)
    time.sleep(1)
    grown = rss_kib(hub.process.pid) - before
    sock.close()
    kind = "tcp-bad" if bad else "tcp-acks"
    return f"{kind}: sent {sent / 1e6:.1f} MB unread-replies -> RSS +{grown / 1024:.0f} MiB"


def scenario_ws(hub: HubProcess) -> str:
    sock = socket.create_connection((hub.host, hub.ports["http"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    time.sleep(0.3)
    before = rss_kib(hub.process.pid)
    payload = b"[" + b",".join([b"1"] * 30000) + b"]"
    frame = b"\x81\xfe" + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload
    sent = flood(sock, (frame for _ in range(100)), 20)
    time.sleep(1)
    grown = rss_kib(hub.process.pid) - before
    sock.close()
    return f"ws-bad: sent {sent / 1e6:.1f} MB unread-replies -> RSS +{grown / 1024:.0f} MiB"


def scenario_udp(hub: HubProcess) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    batch = b"[" + b",".join([b"1"] * 4000) + b"]"  # ~8 KB
    for _ in range(20):
        sock.sendto(batch, (hub.host, hub.ports["udp"]))
    datagrams = total = 0
    try:
        while True:
            data = sock.recv(70000)
            datagrams += 1
            total += len(data)
    except TimeoutError:
        pass
    return f"udp-bad: 20 requests of {len(batch)} B -> {datagrams} reply datagrams, {total} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="checkout whose tantra to run (default: this one)")
    args = parser.parse_args()
    if args.tree:
        os.environ["PYTHONPATH"] = args.tree
    for run in (lambda h: scenario_tcp(h, False), lambda h: scenario_tcp(h, True),
                scenario_ws, scenario_udp):  # fmt: skip
        hub = HubProcess.start(Path(tempfile.mkdtemp()))
        try:
            print(run(hub), flush=True)
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
