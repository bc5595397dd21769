"""The reactor's cost of a stored TCP reading, in-process: ingest, flush, commit, acks (issue 14).

    python benchmarks/experiments/mb_ackturn.py                          # the installed Tantra
    PYTHONPATH=/tmp/before python benchmarks/experiments/mb_ackturn.py   # an older tree

What ``store-acked`` measures on the reactor thread, without sockets, the
writer thread or a shared machine's noise: 4 TCP device connections
(``DeviceLineProtocol`` over a transport that only counts bytes), each
sending ``--lines`` lines of batches of 10 readings with ``seq`` per turn;
the hub numbers the turn's readings (``keep_history``) and hands them to a
store whose commit this script fires, as the writer's would. Reported per
reading (median of ``--turns`` turns): the whole turn, and the commit alone
(the gate, the settled payloads and the ack writes).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address

from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.store.ids import CounterIds
from tantra.transports.raw import DeviceLineFactory


class CountingTransport:
    """What the protocol needs of a TCP transport; writes are counted, not kept."""

    disconnecting = False
    bufferSize = 0

    def __init__(self, host: str):
        self.written = 0
        self.writes = 0
        self._peer = IPv4Address("TCP", host, 5555)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def writeSequence(self, parts: list[bytes]) -> None:
        self.written += sum(map(len, parts))
        self.writes += 1

    def getPeer(self) -> IPv4Address:
        return self._peer

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 7000)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def loseConnection(self) -> None:
        pass


class FiredStore:
    """A store whose commits this script fires (the writer's thread does, in the hub)."""

    def __init__(self) -> None:
        self.ids = CounterIds(1)
        self.pending: list[defer.Deferred] = []

    def submit(self, readings: object) -> defer.Deferred:
        deferred: defer.Deferred = defer.Deferred()
        self.pending.append(deferred)
        return deferred

    def commit(self) -> None:
        pending, self.pending = self.pending, []
        for deferred in pending:
            deferred.callback(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--lines", type=int, default=25, help="lines per connection per turn")
    parser.add_argument("--turns", type=int, default=400)
    args = parser.parse_args()

    clock = task.Clock()
    hub = Hub(clock, dedupe=SeqWindow(size=4096, seconds=600))
    store = FiredStore()
    hub.keep_history(store)
    factory = DeviceLineFactory(hub, clock, max_line=4096, idle_timeout=300.0)
    connections = []
    for index in range(args.connections):
        host = f"10.0.0.{index + 1}"
        protocol = factory.buildProtocol(IPv4Address("TCP", host, 5555))
        transport = CountingTransport(host)
        protocol.makeConnection(transport)
        connections.append((protocol, transport))

    seqs = [0] * args.connections

    def data(index: int) -> bytes:
        lines = []
        for _ in range(args.lines):
            first = seqs[index] + 1
            seqs[index] += 10
            batch = ",".join(
                f'{{"sensor":"s{seq % 8}","value":{seq % 100}.5,"seq":{seq}}}'
                for seq in range(first, first + 10)
            )
            lines.append(b"[" + batch.encode() + b"]\n")
        return b"".join(lines)

    readings = args.connections * args.lines * 10
    whole, commits = [], []
    gc.collect()
    for turn in range(args.turns + 20):
        chunks = [data(index) for index in range(args.connections)]
        start = time.perf_counter_ns()
        for (protocol, _), chunk in zip(connections, chunks, strict=True):
            protocol.dataReceived(chunk)
        clock.advance(0)
        mid = time.perf_counter_ns()
        store.commit()
        end = time.perf_counter_ns()
        if turn >= 20:  # warmed up
            whole.append((end - start) / readings)
            commits.append((end - mid) / readings)
    writes = sum(t.writes for _, t in connections)
    acked = sum(t.written for _, t in connections)
    print(
        f"per reading: whole turn {statistics.median(whole) / 1000:.3f} µs; commit and acks "
        f"{statistics.median(commits) / 1000:.3f} µs; "
        f"{writes / (args.turns + 20):.1f} writes per turn, {acked} ack bytes"
    )


if __name__ == "__main__":
    main()
