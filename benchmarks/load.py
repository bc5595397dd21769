"""Load-generator processes for the benchmark (run as child processes).

    python -m benchmarks.load sub ...   N WebSocket subscribers in one process
    python -m benchmarks.load pub ...   one publisher (WebSocket, raw TCP or UDP)

Owns: minimal WebSocket client framing, pacing, counting and latency
sampling. Does not know about hubs, scenarios or reports; the harness
(`benchmarks.harness`) drives it through JSON lines:

    child  -> harness (stdout): {"ready": {...}}, then {"result": {...}}
    harness -> child  (stdin):  {"go": {"t0": s, "m0": s, "m1": s}}, {"finish": {}}

All times are CLOCK_MONOTONIC (``time.monotonic()``), which every process on
one machine shares, so a reading's ``value`` carries its send time in
microseconds and any subscriber computes latency as ``recv_us - value``.
Values are strictly increasing per publisher, so the newest echo also says
how many readings are still in flight (the publisher's send window).

The WebSocket code is deliberately minimal: the client masks with the all-zero
key (legal per RFC 6455, and masking becomes the identity), and server frames
are only walked header to header; payloads are looked at only for the sampled
latency (one regex search in C). Stdin EOF ends every child, and the harness
also gives each child PR_SET_PDEATHSIG, so nothing outlives the benchmark.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import resource
import socket
import sys
import threading
import time
from collections import deque

VALUE_RE = re.compile(rb'"value"\s*:\s*(-?\d+)')
ZERO_MASK = b"\0\0\0\0"


def now_us() -> int:
    return time.monotonic_ns() // 1000


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked client frame (FIN set) with the all-zero masking key."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + ZERO_MASK + payload


def handshake(host: str, port: int, path: str, protocol: str | None = None) -> bytes:
    extra = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def emit(kind: str, body: dict) -> None:
    sys.stdout.write(json.dumps({kind: body}) + "\n")
    sys.stdout.flush()


class Window:
    """Measurement window shared by all connections of one process (µs)."""

    def __init__(self) -> None:
        self.m0 = 1 << 62  # nothing counts before "go"
        self.m1 = 1 << 62


class WsClient(asyncio.Protocol):
    """One WebSocket client connection that counts the data frames it gets.

    ``lat_every``: 0 = no latency samples; k = every k-th data frame is parsed
    for its value and, if that value (= send time) is inside the window, the
    latency is recorded. ``track_last``: remember the value of the newest data
    frame of every chunk (publisher echo / ingest counter).
    """

    def __init__(
        self,
        hs: bytes,
        win: Window,
        lat: array.array | None,
        lat_every: int = 0,
        track_last: bool = False,
        on_echo=None,
    ) -> None:
        self.hs = hs
        self.win = win
        self.lat = lat
        self.lat_every = lat_every
        self.track_last = track_last
        self.on_echo = on_echo
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_event_loop().create_future()
        self.is_open = False
        self.buf = b""
        self.frames = 0  # data frames since open
        self.in_window = 0  # data frames received inside [m0, m1]
        self.k = 0
        self.last_value = -1
        self.closed_by_server = False
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.hs)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before open: {exc}"))
        if self.on_echo is not None:
            self.on_echo()

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.is_open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.is_open = True
            self.opened.set_result(True)
            data = data[end + 4 :]
        t = now_us()
        win = self.win
        inwin = win.m0 <= t <= win.m1
        n = len(data)
        i = 0
        count = 0
        last = -1
        every = self.lat_every
        while n - i >= 2:
            b0 = data[i]
            ln = data[i + 1] & 127
            if ln < 126:
                h = 2
            elif ln == 126:
                if n - i < 4:
                    break
                ln = int.from_bytes(data[i + 2 : i + 4], "big")
                h = 4
            else:
                if n - i < 10:
                    break
                ln = int.from_bytes(data[i + 2 : i + 10], "big")
                h = 10
            end = i + h + ln
            if end > n:
                break
            op = b0 & 15
            if op <= 2:
                if b0 & 128:
                    count += 1
                    last = i + h
                    if every:
                        self.k += 1
                        if self.k >= every:
                            self.k = 0
                            m = VALUE_RE.search(data, i + h, end)
                            if m is not None:
                                v = int(m.group(1))
                                if win.m0 <= v <= win.m1:
                                    self.lat.append(t - v)
            elif op == 9:  # ping -> pong with the same payload
                self.transport.write(client_frame(data[i + h : end], 10))
            elif op == 8:  # close -> answer and drop
                self.closed_by_server = True
                self.transport.write(client_frame(data[i + h : end], 8))
                self.transport.close()
            i = end
        if i < n:
            self.buf = data[i:]
        if count:
            self.frames += count
            if inwin:
                self.in_window += count
            if self.track_last:
                m = VALUE_RE.search(data, last, last + 200)
                if m is not None:
                    v = int(m.group(1))
                    if v > self.last_value:
                        self.last_value = v
                if self.on_echo is not None:
                    self.on_echo()


async def open_ws(loop, host, port, path, factory, rcvbuf: int = 0, attempts: int = 5) -> WsClient:
    delay = 0.05
    for attempt in range(attempts):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 10)
            _, proto = await loop.create_connection(factory, sock=sock)
            await asyncio.wait_for(proto.opened, 10)
            return proto
        except (TimeoutError, OSError, ConnectionError):
            sock.close()
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class Control:
    """stdin JSON lines -> callbacks on the event loop (EOF = stop)."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.go = loop.create_future()
        self.finish = loop.create_future()
        threading.Thread(target=self._read, daemon=True).start()

    def _set(self, fut, value) -> None:
        if not fut.done():
            fut.set_result(value)

    def _read(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            msg = json.loads(line)
            if "go" in msg:
                self.loop.call_soon_threadsafe(self._set, self.go, msg["go"])
            elif "finish" in msg:
                self.loop.call_soon_threadsafe(self._set, self.finish, msg["finish"])
        # EOF: the harness is gone or done with us
        self.loop.call_soon_threadsafe(self._set, self.go, None)
        self.loop.call_soon_threadsafe(self._set, self.finish, None)


def set_window(win: Window, go: dict) -> None:
    win.m0 = int(go["m0"] * 1e6)
    win.m1 = int(go["m1"] * 1e6)


async def start_sending(ctl: Control, win: Window, sender) -> bool:
    """Wait for "go", set the window, sleep until its t0, mark ``sender`` running.

    False when the harness said stop instead. Shared by the publisher and the
    devices, so both start their clocks the same way.
    """
    go = await ctl.go
    if go is None:
        return False
    set_window(win, go)
    delay = go["t0"] - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    sender.t_end = win.m1
    sender.running = True
    sender.last_progress = time.monotonic()
    return True


# ---------------------------------------------------------------- subscribers


async def run_sub(args) -> None:
    loop = asyncio.get_running_loop()
    ctl = Control(loop)
    win = Window()
    lat = array.array("q")
    hs = handshake(args.host, args.port, args.path, args.protocol)
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def one(rcvbuf=0):
        async with sem:
            return await open_ws(
                loop,
                args.host,
                args.port,
                args.path,
                lambda: WsClient(hs, win, lat, args.lat_every),
                rcvbuf=rcvbuf,
            )

    results = await asyncio.gather(*(one() for _ in range(args.conns)), return_exceptions=True)
    clients = [r for r in results if isinstance(r, WsClient)]
    errors = [repr(r) for r in results if not isinstance(r, WsClient)]
    stalled = []
    for _ in range(args.stalled):
        c = await one(rcvbuf=4096)
        c.transport.pause_reading()
        stalled.append(c)
    if args.subscribe:  # WAMP: HELLO/SUBSCRIBE sent by the harness' helper
        for c in clients:
            for frame in args.subscribe:
                c.transport.write(client_frame(frame.encode()))
    await asyncio.sleep(args.settle)
    emit(
        "ready",
        {
            "connected": len(clients),
            "failed": len(errors),
            "errors": errors[:3],
            "connect_s": time.monotonic() - started,
        },
    )
    go = await ctl.go
    if go is None:
        return
    set_window(win, go)
    at_go = sum(c.frames for c in clients)
    fin = await ctl.finish
    # drain: wait until frames stop arriving (or the deadline)
    deadline = time.monotonic() + (fin or {}).get("drain_s", 2.0)
    last_total = -1
    while time.monotonic() < deadline:
        total = sum(c.frames for c in clients)
        if total == last_total:
            break
        last_total = total
        await asyncio.sleep(0.15)
    stalled_info = []
    for c in stalled:
        before = c.frames
        c.transport.resume_reading()
        await asyncio.sleep(1.0)
        stalled_info.append(
            {
                "closed_by_server": c.closed_by_server,
                "lost": c.lost,
                "frames_after_resume": c.frames - before,
            }
        )
    per = [c.in_window for c in clients]
    if args.lat_out:
        with open(args.lat_out, "wb") as f:
            lat.tofile(f)
    emit(
        "result",
        {
            "conns": len(clients),
            "in_window": sum(per),
            "per_conn_min": min(per) if per else 0,
            "per_conn_max": max(per) if per else 0,
            "frames_total": sum(c.frames for c in clients),
            "frames_after_go": sum(c.frames for c in clients) - at_go,
            "closed_by_server": sum(c.closed_by_server for c in clients),
            "lost": sum(c.lost for c in clients),
            "lat_samples": len(lat),
            "stalled": stalled_info,
            "cpu_s": sum(os.times()[:2]),
        },
    )
    for c in clients + stalled:
        if c.transport is not None:
            c.transport.abort()


# ----------------------------------------------------------------- publisher


class Publisher:
    """Sends readings whose value is its send time in µs (strictly increasing).

    mode "max": keep at most ``window`` readings in flight (sent, newer than
    the newest echo seen), sending ``burst`` readings per write.
    mode "rate": ``rate`` readings/s on a fixed schedule (open loop: a late
    tick is sent at once, never skipped), ``burst`` readings per tick.
    """

    def __init__(self, args, loop, win: Window) -> None:
        self.a = args
        self.loop = loop
        self.win = win
        self.last_v = 0
        self.inflight: deque[int] = deque()
        self.sent = 0
        self.sent_in_window = 0
        self.t_end = 0
        self.running = False
        self.echo: WsClient | None = None
        self.window_resets = 0
        self.udp_blocked = 0
        self.tasks: set[asyncio.Task] = set()
        self.last_progress = 0.0
        # lost readings (UDP drops, conflated echoes) must not stall the window
        self.stuck_after = 0.03 if args.transport == "udp" else 0.3
        self.sensors = [f"s{i}" for i in range(args.sensors)]
        dev = args.device
        self.prefix = [
            (f'{{"device":"{dev}","sensor":"{s}","value":').encode() for s in self.sensors
        ]
        self.suffix = b',"unit":"V"}'
        self.send_raw = None  # set by setup

    def next_payloads(self, n: int) -> list[bytes]:
        v = max(now_us(), self.last_v + 1)
        out = []
        ns = len(self.prefix)
        base = self.sent
        for j in range(n):
            out.append(b"%s%d%s" % (self.prefix[(base + j) % ns], v + j, self.suffix))
            self.inflight.append(v + j)
        self.last_v = v + n - 1
        self.sent += n
        if self.win.m0 <= v <= self.win.m1:
            self.sent_in_window += n
        return out

    def on_echo(self) -> None:
        if self.echo is None:
            return
        lv = self.echo.last_value
        fl = self.inflight
        if fl and fl[0] <= lv:
            self.last_progress = time.monotonic()
            while fl and fl[0] <= lv:
                fl.popleft()
        if self.running and self.a.mode == "max":
            self.pump()

    def pump(self) -> None:
        a = self.a
        while len(self.inflight) < a.window:
            if now_us() >= self.t_end:
                self.running = False
                return
            self.send_raw(self.next_payloads(a.burst))

    async def unstick(self) -> None:
        """Readings can be lost (UDP, or conflated echoes): do not stall."""
        while self.running:
            await asyncio.sleep(self.stuck_after / 3)
            if self.inflight and time.monotonic() - self.last_progress > self.stuck_after:
                self.window_resets += 1
                self.inflight.clear()
                self.last_progress = time.monotonic()
                self.pump()

    async def rate_loop(self) -> None:
        a = self.a
        period = a.burst / a.rate
        t0 = time.monotonic()
        i = 0
        while self.running:
            target = t0 + i * period
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if now_us() >= self.t_end:
                break
            self.send_raw(self.next_payloads(a.burst))
            self.inflight.clear()  # no window in rate mode
            i += 1
        self.running = False


async def run_pub(args) -> None:
    loop = asyncio.get_running_loop()
    ctl = Control(loop)
    win = Window()
    pub = Publisher(args, loop, win)
    hs = handshake(args.host, args.port, "/")
    # the echo stream: the WS publisher's own connection, or a WS counter
    echo = await open_ws(
        loop,
        args.host,
        args.port,
        "/",
        lambda: WsClient(hs, win, None, 0, track_last=True, on_echo=pub.on_echo),
    )
    pub.echo = echo
    if args.transport == "ws":
        tr = echo.transport

        def send(payloads):
            tr.write(b"".join([client_frame(p) for p in payloads]))
    elif args.transport == "tcp":
        r, w = await asyncio.open_connection(args.host, args.ingest_port)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pub.tasks.add(loop.create_task(drain_reader(r)))  # acks/errors, if any

        def send(payloads):
            w.write(b"\n".join(payloads) + b"\n")
    elif args.transport == "udp":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.connect((args.host, args.ingest_port))
        udp.setblocking(False)
        udp_send = udp.send

        def send(payloads):
            for p in payloads:
                try:
                    udp_send(p)
                except BlockingIOError:
                    pub.udp_blocked += 1
    else:
        raise SystemExit(f"unknown transport {args.transport}")
    pub.send_raw = send
    await asyncio.sleep(0.2)  # let the last-value snapshot arrive
    emit("ready", {"transport": args.transport})
    if not await start_sending(ctl, win, pub):
        return
    if args.mode == "max":
        unstick = loop.create_task(pub.unstick())
        pub.pump()
    else:
        unstick = loop.create_task(pub.rate_loop())
    while pub.running:
        await asyncio.sleep(0.05)
    await ctl.finish
    pub.running = False
    unstick.cancel()
    emit(
        "result",
        {
            "sent": pub.sent,
            "sent_in_window": pub.sent_in_window,
            "echo_in_window": echo.in_window,
            "echo_frames": echo.frames,
            "window_resets": pub.window_resets,
            "udp_blocked": pub.udp_blocked,
            "echo_closed_by_server": echo.closed_by_server or echo.lost,
            "cpu_s": sum(os.times()[:2]),
        },
    )
    echo.transport.abort()


async def drain_reader(reader) -> None:
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, asyncio.CancelledError):
        pass


# ------------------------------------------------ devices with seq (acks)
#
#   python -m benchmarks.load dev ...   TCP or MQTT devices that send readings
#                                        with ``seq`` and time each ack
#
# The new paths of issue 14 (stored ingest, ack latency after commit, auth,
# the MQTT bridge) are measured by what the hub *acknowledges*: with a store
# an ack means committed, so acks/s is stored readings/s, and send -> ack is
# the latency a device sees. Same JSON-lines control protocol as sub/pub.

ACK_HEAD = b'{"ack":'


class SeqConn:
    """One device: its seqs, what is in flight, and the ack-latency samples.

    Acks of one connection come back in send order (the hub keeps payload
    order), so an ack naming seq H settles every sampled seq <= H.
    """

    def __init__(self, device: str, seq0: int, sensors: int) -> None:
        self.device = device
        self.seq = seq0
        self.inflight = 0
        self.samples: deque[tuple[int, int]] = deque()  # (seq, send µs), in seq order
        dev = device.encode()
        self.prefix = [b'{"device":"%s","sensor":"s%d","value":' % (dev, i) for i in range(sensors)]
        self.write = None  # set by the transport: bytes -> None (one payload)
        self.write_many = None  # list[bytes] -> None (payloads in order)

    def payload(self, n: int, t_us: int, sample: bool) -> bytes:
        """``n`` readings (a batch when n > 1) whose value is the send time in µs."""
        first = self.seq + 1
        self.seq += n
        ns = len(self.prefix)
        items = [
            b'%s%d,"seq":%d}' % (self.prefix[(first + j) % ns], t_us, first + j) for j in range(n)
        ]
        if sample:
            self.samples.append((self.seq, t_us))
        self.inflight += n
        return items[0] if n == 1 else b"[" + b",".join(items) + b"]"


class SeqSender:
    """Sends readings with seq over ``conns`` devices; counts acks, errors, latency."""

    def __init__(self, args, win: Window) -> None:
        self.a = args
        self.win = win
        self.conns: list[SeqConn] = []
        self.sent = self.sent_in_window = 0
        self.acked = self.acked_in_window = 0
        self.errors = 0
        self.error_sample = ""
        self.lat = array.array("q")
        self.t_end = 0
        self.running = False
        self.k = 0
        self.last_progress = time.monotonic()
        self.window_resets = 0

    def reply(self, conn: SeqConn, line: bytes, pump: bool = True) -> None:
        """One reply line; ``pump``: refill the window now (else the caller does,
        once per read, so a read's worth of new payloads goes out in one write)."""
        now = now_us()
        if line.startswith(ACK_HEAD):
            body = line[7:].rstrip(b"} \r")
            if body.startswith(b"["):
                count = body.count(b",") + 1
                high = int(body[body.rfind(b",") + 1 if count > 1 else 1 : -1])
            else:
                count, high = 1, int(body)
            conn.inflight -= count
            self.acked += count
            if self.win.m0 <= now <= self.win.m1:
                self.acked_in_window += count
            samples = conn.samples
            while samples and samples[0][0] <= high:
                _, sent = samples.popleft()
                if self.win.m0 <= sent <= self.win.m1:
                    self.lat.append(now - sent)
            self.last_progress = time.monotonic()
        elif b'"error"' in line:
            self.errors += 1
            conn.inflight -= 1
            if not self.error_sample:
                self.error_sample = line[:200].decode(errors="replace")
        if pump and self.running and self.a.mode == "max":
            self.pump(conn)

    def payload(self, conn: SeqConn) -> bytes:
        a = self.a
        t = now_us()
        self.k += 1
        sample = a.mode == "rate" or self.k % a.lat_every == 0
        self.sent += a.batch
        if self.win.m0 <= t <= self.win.m1:
            self.sent_in_window += a.batch
        return conn.payload(a.batch, t, sample)

    def send(self, conn: SeqConn) -> None:
        conn.write(self.payload(conn))

    def pump(self, conn: SeqConn) -> None:
        """Fill the window; the new payloads go out in one write (TCP) as a device
        with a backlog would send them, not one segment per payload."""
        out = []
        while conn.inflight + self.a.batch <= self.a.window:
            if now_us() >= self.t_end:
                self.running = False
                break
            out.append(self.payload(conn))
        if out:
            conn.write_many(out)

    async def unstick(self) -> None:
        """A reply lost (or a shed reading never acked) must not stall the window."""
        while self.running:
            await asyncio.sleep(0.5)
            if time.monotonic() - self.last_progress > 2.0:
                self.window_resets += 1
                self.last_progress = time.monotonic()
                for c in self.conns:
                    c.inflight = 0
                    c.samples.clear()
                    self.pump(c)

    async def rate_loop(self) -> None:
        a = self.a
        period = a.batch / a.rate
        t0 = time.monotonic()
        i = 0
        while self.running:
            delay = t0 + i * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if now_us() >= self.t_end:
                break
            self.send(self.conns[i % len(self.conns)])
            i += 1
        self.running = False


class _TcpDev(asyncio.Protocol):
    def __init__(self, sender: SeqSender, conn: SeqConn) -> None:
        self.sender, self.conn = sender, conn
        self.buf = b""
        self.transport = None
        self.authed = asyncio.get_event_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.write = lambda data: transport.write(data + b"\n")
        self.conn.write_many = lambda items: transport.write(b"\n".join(items) + b"\n")

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        lines = data.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if not self.authed.done():
                if b'"ok"' in line:
                    self.authed.set_result(True)
                else:
                    self.authed.set_exception(ConnectionError(line.decode(errors="replace")))
                continue
            self.sender.reply(self.conn, line, pump=False)
        sender = self.sender
        if sender.running and sender.a.mode == "max":
            sender.pump(self.conn)

    def connection_lost(self, exc) -> None:
        if not self.authed.done():
            self.authed.set_exception(ConnectionError(f"closed: {exc}"))


async def open_tcp_devs(loop, args, sender: SeqSender, seq0: int) -> None:
    tokens = args.auth or []
    for i in range(args.conns):
        conn = SeqConn(f"{args.device}-{i}", seq0, args.sensors)
        sender.conns.append(conn)
        _, proto = await loop.create_connection(
            lambda conn=conn: _TcpDev(sender, conn), args.host, args.ingest_port
        )
        if tokens:
            proto.transport.write(json.dumps({"auth": tokens[i]}).encode() + b"\n")
            await asyncio.wait_for(proto.authed, 10)
        else:
            proto.authed.set_result(True)


def open_mqtt_devs(loop, args, sender: SeqSender, seq0: int) -> list:
    """paho clients on their own network thread; replies come back to the loop."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []
    for i in range(args.conns):
        conn = SeqConn(f"{args.device}-{i}", seq0, args.sensors)
        sender.conns.append(conn)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-dev-{os.getpid()}-{i}",
            protocol=mqtt.MQTTv5,
        )
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(65535)
        subscribed = threading.Event()

        def on_message(_c, _u, msg, conn=conn) -> None:
            loop.call_soon_threadsafe(sender.reply, conn, msg.payload)

        client.on_message = on_message
        client.on_subscribe = lambda *a, ev=subscribed: ev.set()
        host, _, port = args.mqtt.rpartition(":")
        client.connect(host, int(port))
        prefix = args.mqtt_prefix
        client.subscribe([(f"{prefix}/ack/{conn.device}", 0), (f"{prefix}/error/{conn.device}", 0)])
        client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("MQTT: no SUBACK within 10 s")
        topic = f"{prefix}/in/{conn.device}"
        conn.write = lambda data, c=client, t=topic: c.publish(t, data, qos=0)
        conn.write_many = lambda items, w=conn.write: [w(item) for item in items]
        clients.append(client)
    return clients


def count_bridged(args, win: Window, counts: list[int]):
    """An MQTT client counting the hub's bridged-out readings (``<prefix>/reading/#``)
    that arrive inside the window: the bridge's fan-out through the broker.

    A lower bound: it subscribes at QoS 0, and a broker may drop QoS 0
    messages for a subscriber that does not keep up (its per-client queue
    limits); the hub's own ``readings_published`` and ``publish_dropped``
    counters say what it sent."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-count-{os.getpid()}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    subscribed = threading.Event()

    def on_message(_c, _u, msg) -> None:
        if not msg.retain and win.m0 <= now_us() <= win.m1:
            counts[0] += 1

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    host, _, port = args.mqtt.rpartition(":")
    client.connect(host, int(port))
    client.subscribe(f"{args.mqtt_prefix}/reading/#", 0)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("MQTT: no SUBACK within 10 s")
    return client


async def run_dev(args) -> None:
    loop = asyncio.get_running_loop()
    ctl = Control(loop)
    win = Window()
    sender = SeqSender(args, win)
    # seqs keep rising across repetitions against one hub (its de-dup window)
    seq0 = time.time_ns() // 1000
    clients = []
    bridged = [0]
    if args.count_mqtt:
        clients.append(count_bridged(args, win, bridged))
    if args.transport == "mqtt":
        clients += open_mqtt_devs(loop, args, sender, seq0)
    else:
        await open_tcp_devs(loop, args, sender, seq0)
    emit("ready", {"transport": args.transport, "conns": len(sender.conns)})
    if not await start_sending(ctl, win, sender):
        return
    if args.mode == "max":
        side = loop.create_task(sender.unstick())
        for c in sender.conns:
            sender.pump(c)
    else:
        side = loop.create_task(sender.rate_loop())
    while sender.running:
        await asyncio.sleep(0.05)
    fin = await ctl.finish
    # drain: the acks of readings sent inside the window
    deadline = time.monotonic() + (fin or {}).get("drain_s", 2.0)
    while time.monotonic() < deadline and any(c.samples for c in sender.conns):
        await asyncio.sleep(0.05)
    side.cancel()
    if args.lat_out:
        with open(args.lat_out, "wb") as f:
            sender.lat.tofile(f)
    emit(
        "result",
        {
            "sent": sender.sent,
            "sent_in_window": sender.sent_in_window,
            "acked": sender.acked,
            "acked_in_window": sender.acked_in_window,
            "errors": sender.errors,
            "error_sample": sender.error_sample,
            "unacked_samples": sum(len(c.samples) for c in sender.conns),
            "lat_samples": len(sender.lat),
            "window_resets": sender.window_resets,
            "bridged_in_window": bridged[0],
            "cpu_s": sum(os.times()[:2]),
        },
    )
    for client in clients:
        client.loop_stop()
        client.disconnect()


def dev_parser() -> argparse.ArgumentParser:
    d = argparse.ArgumentParser(prog="python -m benchmarks.load dev")
    d.add_argument("role", choices=["dev"])
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--ingest-port", type=int, default=0, help="TCP port of the hub")
    d.add_argument("--transport", default="tcp", choices=["tcp", "mqtt"])
    d.add_argument("--mqtt", default="127.0.0.1:1883", help="broker host:port")
    d.add_argument("--mqtt-prefix", default="tantra")
    d.add_argument(
        "--count-mqtt", action="store_true", help="count the readings bridged out to the broker"
    )
    d.add_argument("--conns", type=int, default=1, help="devices (one connection each)")
    d.add_argument("--auth", action="append", help="device token per connection (in order)")
    d.add_argument("--device", default="bench-dev", help="device name prefix (-0, -1, ...)")
    d.add_argument("--mode", default="max", choices=["max", "rate"])
    d.add_argument("--rate", type=float, default=1000.0, help="readings/s in all (rate mode)")
    d.add_argument("--batch", type=int, default=10, help="readings per payload (a JSON array)")
    d.add_argument("--window", type=int, default=4096, help="unacked readings per device")
    d.add_argument("--lat-every", type=int, default=16, help="max mode: time every k-th payload")
    d.add_argument("--lat-out", default=None)
    d.add_argument("--sensors", type=int, default=10)
    return d


def main_dev(argv) -> None:
    args = dev_parser().parse_args(argv)
    raise_nofile()
    asyncio.run(run_dev(args))


# ---------------------------------------------------------------------- main


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dev"]:  # devices with seq (stored ingest, acks, auth, MQTT)
        return main_dev(argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.load")
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("sub")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--path", default="/")
    s.add_argument("--protocol", default=None, help="Sec-WebSocket-Protocol")
    s.add_argument(
        "--subscribe",
        action="append",
        default=[],
        help="text frame(s) each client sends after opening",
    )
    s.add_argument("--conns", type=int, default=10)
    s.add_argument("--stalled", type=int, default=0)
    s.add_argument("--lat-every", type=int, default=0)
    s.add_argument("--lat-out", default=None)
    s.add_argument("--concurrency", type=int, default=64)
    s.add_argument("--settle", type=float, default=0.3)
    s.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    q = sub.add_parser("pub")
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, required=True, help="WebSocket port")
    q.add_argument("--ingest-port", type=int, default=0, help="TCP/UDP port")
    q.add_argument("--transport", default="ws", choices=["ws", "tcp", "udp"])
    q.add_argument("--mode", default="max", choices=["max", "rate"])
    q.add_argument("--rate", type=float, default=100.0)
    q.add_argument("--burst", type=int, default=1)
    q.add_argument("--window", type=int, default=1)
    q.add_argument("--sensors", type=int, default=10)
    q.add_argument("--device", default="bench-pub")
    q.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = p.parse_args(argv)
    raise_nofile()
    if args.loop in ("auto", "uvloop"):
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            if args.loop == "uvloop":
                raise
    coro = run_sub(args) if args.role == "sub" else run_pub(args)
    asyncio.run(coro)


if __name__ == "__main__":
    main()
