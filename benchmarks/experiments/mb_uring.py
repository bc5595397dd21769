"""Is one io_uring submission of N sends cheaper than N ``send`` calls? (issue 14, item 3)

The broadcast path spends ~74 % on ``socket.send`` (one syscall per dashboard);
the only way past the per-call cost is fewer syscalls per turn. This measures,
in-process, for N connected loopback sockets with room in their send buffers:

* ``raw``    — the bare Python ``for send in sends: send(DATA)`` loop (mb2.py's floor);
* ``uring``  — the same N sends as ``IORING_OP_SEND`` SQEs (``MSG_DONTWAIT |
  MSG_NOSIGNAL``: a full socket completes at once with ``-EAGAIN`` instead of
  being polled), one ``io_uring_submit_and_wait(ring, N)``, then every CQE
  reaped (``res`` = bytes sent, partial, or ``-errno``) — split into its
  ``prep`` (Python builds SQEs), ``enter`` (the one syscall: the kernel does the
  sends) and ``reap`` (Python reads CQEs) parts;
* ``tuned``  — ``uring`` on a ring set up with ``SINGLE_ISSUER | DEFER_TASKRUN``
  and the sockets registered (``IOSQE_FIXED_FILE``: no fget/fput per op);
* ``skip``   — ``tuned`` with ``IOSQE_CQE_SKIP_SUCCESS`` (no CQE unless an error):
  a lower bound only, since it also hides partial sends, which the hub must see;
* ``cloop``  — for contrast, no ring: the whole loop in C (``sendmany.c``, via
  ctypes, one call per turn; only if ``SENDMANY`` names the built ``.so``);
* ``nop``    — the same with ``IORING_OP_NOP``: the liburing Python API cost per
  SQE/CQE plus the bare ring overhead, without any socket work.

``python mb_uring.py semantics`` checks instead the completion semantics the hub
would rely on: a partial send, an immediate ``-EAGAIN`` on a full socket (not
polled), ``-ECONNRESET``/``-EPIPE`` on a reset peer, each SQE independent.
(``CQE.res`` of this wrapper raises ``OSError`` for a negative result.)

Receivers are drained outside the timing. Compare with the C loop
(``sendloop.c`` with ``-DN=1000``) in the same run, on one core:

    cc -O2 -DN=1000 -o /tmp/sendloop benchmarks/experiments/sendloop.c
    taskset -c 0 /tmp/sendloop; taskset -c 0 python benchmarks/experiments/mb_uring.py [rounds]
"""

from __future__ import annotations

import ctypes
import os
import socket
import statistics
import sys
import time

import liburing as lu
import loopback  # benchmarks/experiments/loopback.py: run as a script from here

N = 1000
DATA = b"\x81\x50" + b"x" * 80
FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def main(rounds: int) -> None:
    clients, servers = loopback.socket_pairs(N)
    sends = [s.send for s in servers]
    fds = [s.fileno() for s in servers]

    ring = lu.Ring()
    lu.io_uring_queue_init(2 * N, ring, lu.IORING_SETUP_SUBMIT_ALL)
    cqe = lu.Cqe()
    ring2 = lu.Ring()
    lu.io_uring_queue_init(
        2 * N,
        ring2,
        lu.IORING_SETUP_SUBMIT_ALL | lu.IORING_SETUP_SINGLE_ISSUER | lu.IORING_SETUP_DEFER_TASKRUN,
    )
    files = lu.FileIndex(fds)
    lu.io_uring_register_files(ring2, files)
    get_sqe, prep_send, prep_nop = lu.io_uring_get_sqe, lu.io_uring_prep_send, lu.io_uring_prep_nop
    submit_and_wait, cq_advance = lu.io_uring_submit_and_wait, lu.io_uring_cq_advance
    CqeIter = lu.CqeIter

    def drain() -> None:
        loopback.drain(clients)

    def raw() -> tuple[int, int, int]:
        for send in sends:
            send(DATA)
        return 0, 0, 0

    def reap(n: int) -> int:
        short = 0
        got = 0
        for _ in CqeIter(ring, cqe):
            e = cqe[0]
            res = e.res
            if res != 82:
                short += 1
            _ = e.user_data
            got += 1
        cq_advance(ring, got)
        assert got == n, (got, n)
        return short

    def uring() -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        for i, fd in enumerate(fds):
            sqe = get_sqe(ring)
            prep_send(sqe, fd, DATA, FLAGS)
            sqe.user_data = i
        t1 = time.perf_counter_ns()
        submit_and_wait(ring, N)
        t2 = time.perf_counter_ns()
        short = reap(N)
        t3 = time.perf_counter_ns()
        assert short == 0, short
        return t1 - t0, t2 - t1, t3 - t2

    def tuned_(skip: bool) -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        flags = lu.IOSQE_FIXED_FILE | (lu.IOSQE_CQE_SKIP_SUCCESS if skip else 0)
        for i in range(N):
            sqe = get_sqe(ring2)
            prep_send(sqe, i, DATA, FLAGS)
            sqe.flags = flags
            sqe.user_data = i
        t1 = time.perf_counter_ns()
        if skip:
            lu.io_uring_submit(ring2)
        else:
            submit_and_wait(ring2, N)
        t2 = time.perf_counter_ns()
        if not skip:
            got = 0
            for _ in CqeIter(ring2, cqe):
                e = cqe[0]
                assert e.res == 82, e.res
                _ = e.user_data
                got += 1
            cq_advance(ring2, got)
            assert got == N
        t3 = time.perf_counter_ns()
        return t1 - t0, t2 - t1, t3 - t2

    def tuned() -> tuple[int, int, int]:
        return tuned_(False)

    def skip() -> tuple[int, int, int]:
        return tuned_(True)

    so = os.environ.get("SENDMANY")
    lib = ctypes.CDLL(so) if so else None
    cfds = (ctypes.c_int * N)(*fds)
    cres = (ctypes.c_long * N)()

    def cloop() -> tuple[int, int, int]:
        assert lib is not None
        short = lib.sendmany(N, cfds, DATA, len(DATA), cres)
        assert short == 0, short
        return 0, 0, 0

    def nop() -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        for i in range(N):
            sqe = get_sqe(ring)
            prep_nop(sqe)
            sqe.user_data = i
        t1 = time.perf_counter_ns()
        submit_and_wait(ring, N)
        t2 = time.perf_counter_ns()
        reap(N)
        t3 = time.perf_counter_ns()
        return t1 - t0, t2 - t1, t3 - t2

    order = [
        ("raw", raw),
        ("uring", uring),
        ("tuned", tuned),
        ("skip", skip),
        ("nop", nop),
        ("raw2", raw),
        ("uring2", uring),
        ("tuned2", tuned),
    ] + ([("cloop", cloop)] if lib else [])
    res: dict[str, list[float]] = {k: [] for k, _ in order}
    parts: dict[str, list[tuple[int, int, int]]] = {"uring": [], "tuned": [], "skip": [], "nop": []}
    for _ in range(rounds):
        for k, f in order:
            drain()
            t0 = time.perf_counter_ns()
            p = f()
            res[k].append((time.perf_counter_ns() - t0) / N)
            if k in parts:
                parts[k].append(p)
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"{k:7s} median ns/delivery {v:.0f}")
    for k, ps in parts.items():
        prep, enter, rp = (statistics.median(x[j] for x in ps) / N for j in range(3))
        print(f"{k:7s} per op: prep {prep:.0f} ns, enter {enter:.0f} ns, reap {rp:.0f} ns")
    for k in ("uring", "tuned"):
        ratio = statistics.median([med[k] / med["raw"], med[k + "2"] / med["raw2"]])
        print(f"{k} / raw {ratio:.3f}")
    lu.io_uring_queue_exit(ring)
    lu.io_uring_queue_exit(ring2)


def semantics() -> None:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def pair() -> tuple[socket.socket, socket.socket]:
        c = socket.create_connection(ls.getsockname())
        s, _addr = ls.accept()
        s.setblocking(False)
        c.setblocking(False)
        return c, s

    (c1, s1), (_c2, s2) = pair(), pair()
    ring = lu.Ring()
    lu.io_uring_queue_init(8, ring, lu.IORING_SETUP_SUBMIT_ALL)
    cqe = lu.Cqe()

    def batch(socks: list[socket.socket], buf: bytes) -> list[tuple[int, int]]:
        for i, x in enumerate(socks):
            sqe = lu.io_uring_get_sqe(ring)
            lu.io_uring_prep_send(sqe, x.fileno(), buf, FLAGS)
            sqe.user_data = i
        lu.io_uring_submit_and_wait(ring, len(socks))
        out = []
        for _ in lu.CqeIter(ring, cqe):
            e = cqe[0]
            try:
                out.append((e.user_data, e.res))
            except OSError as x:
                out.append((e.user_data, -x.errno))
        lu.io_uring_cq_advance(ring, len(out))
        return out

    while True:
        r = batch([s1], b"z" * 65536)
        if r[0][1] != 65536:
            print("filling socket 0:", r)
        if r[0][1] < 0:
            break
    print("socket 1 has room, socket 0 full:", batch([s2, s1], DATA))
    c1.close()
    time.sleep(0.05)
    print("socket 0's peer closed:", batch([s1, s2], DATA), "then", batch([s1, s2], DATA))
    lu.io_uring_queue_exit(ring)


if __name__ == "__main__":
    if sys.argv[1:] == ["semantics"]:
        semantics()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
