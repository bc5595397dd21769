"""Scenarios and trials: what is measured, how, and the medians.

Owns: the scenario list of issue 5, one trial function per kind, the
alternation Tantra/reference inside one invocation, repetition and medians.
Does not own process handling (`procs`) or rendering (`report`).

A trial of a streaming scenario:
  1. the subscriber process connects N clients (and waits out the snapshot);
  2. the publisher process connects;
  3. the harness picks t0 (start sending), m0 = t0 + warm-up, m1 = m0 + duration
     and sends them to both; it reads the hub's utime+stime (and RSS) at m0 and
     m1;
  4. frames received inside [m0, m1] are deliveries; latency samples are taken
     from readings *sent* inside [m0, m1], after a drain at the end.
"""

from __future__ import annotations

import array
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import procs


@dataclass
class Timing:
    reps: int
    warm: float
    dur: float  # fan-out / ingest window
    rate_dur: float  # fixed-rate window (latency needs more samples)
    mem_settle: float
    drain: float  # max wait for in-flight frames after the window
    stall_dur: float  # the stalled-subscriber window (Tantra's stall timeout is 30 s)


QUICK = Timing(reps=3, warm=0.3, dur=1.2, rate_dur=2.0, mem_settle=0.7, drain=8.0, stall_dur=2.0)
FULL = Timing(reps=5, warm=1.0, dur=6.0, rate_dur=10.0, mem_settle=2.0, drain=15.0, stall_dur=40.0)
SMOKE = Timing(reps=1, warm=0.1, dur=0.4, rate_dur=0.5, mem_settle=0.2, drain=1.0, stall_dur=0.5)


@dataclass
class Scenario:
    key: str
    title: str
    kind: str  # stream | ingest | memory | reconnect | wamp | paths (variants of the hub)
    params: dict
    targets: tuple = ("tantra", "reference")
    metrics: tuple = ()  # (name, label, higher_is_better)
    goal: str = ""
    #: run by --quick and --smoke when no -s is given (long ones: --full or -s only)
    quick: bool = True


STREAM_METRICS = (
    ("deliveries_per_s", "deliveries/s", True),
    ("hub_us_per_delivery", "hub CPU µs/delivery", False),
    ("hub_util", "hub CPU busy", None),
    ("delivered_pct", "delivered %", None),
    ("load_util", "load CPU busy", None),
)
TICK_METRICS = (
    ("deliveries_per_s", "deliveries/s", True),
    ("deliveries_per_cpu_s", "deliveries per hub CPU-second", True),
    ("hub_us_per_delivery", "hub CPU µs/delivery", False),
    ("hub_user_us_per_delivery", "  of which user µs", False),
    ("hub_sys_us_per_delivery", "  of which kernel µs", False),
    ("hub_util", "hub CPU busy", None),
    ("delivered_pct", "delivered %", None),
    ("load_util", "load CPU busy", None),
)
RATE_METRICS = (
    ("p50_ms", "latency p50 ms", False),
    ("p99_ms", "latency p99 ms", False),
    ("hub_us_per_delivery", "hub CPU µs/delivery", False),
    ("delivered_pct", "delivered %", None),
)
INGEST_METRICS = (
    ("readings_per_s", "readings/s", True),
    ("hub_us_per_reading", "hub CPU µs/reading", False),
    ("hub_util", "hub CPU busy", None),
)
MEMORY_METRICS = (("kb_per_client", "RSS KB/client", False), ("rss_mb", "hub RSS MB", False))
RECONNECT_METRICS = (
    ("all_open_s", "all reconnected after s", False),
    ("not_reconnected", "not reconnected", None),
    ("refused", "of which refused/reset", None),
    ("connect_p50_ms", "connect+handshake p50 ms", False),
    ("connect_p99_ms", "connect+handshake p99 ms", False),
    ("listen_overflows", "kernel ListenOverflows", None),
    ("syncookies_sent", "kernel SyncookiesSent", None),
)
STALL_METRICS = (
    ("p99_ms", "others' p99 ms", False),
    ("p50_ms", "others' p50 ms", False),
    ("rss_max_mb", "hub RSS max MB", False),
    ("rss_growth_mb", "RSS growth in window MB", False),
    ("delivered_pct", "others delivered %", None),
    ("stalled_closed", "stalled client closed", None),
)


def scenarios() -> list[Scenario]:
    s = []
    for n in (10, 100, 1000):
        # enough readings in flight to keep either hub busy (round trips are
        # short with few subscribers)
        w = max(64, 5120 // n)
        s.append(
            Scenario(
                f"fanout-{n}",
                f"fan-out max, publisher flat out ({w} in flight), {n} subscribers",
                "stream",
                dict(subs=n, mode="max", burst=1, window=w, lat_every=64),
                metrics=STREAM_METRICS,
            )
        )
    s.append(
        Scenario(
            "fanout-1000-tick1",
            "fan-out max, 1 reading per tick (1 in flight), 1000 subscribers",
            "stream",
            dict(subs=1000, mode="max", burst=1, window=1, lat_every=64),
            targets=("tantra", "reference", "limit"),
            metrics=TICK_METRICS,
            goal="≥ 0.9× limit (wsrelay.c) and ≥ 2.0× reference deliveries/s",
        )
    )
    s.append(
        Scenario(
            "fanout-1000-burst16",
            "fan-out max, bursts of 16 readings per write, 1000 subscribers",
            "stream",
            dict(subs=1000, mode="max", burst=16, window=256, lat_every=256),
            metrics=STREAM_METRICS,
            goal="≥ 1,000,000 deliveries/s",
        )
    )
    s.append(
        Scenario(
            "rate-1000x50",
            "fixed rate 50 readings/s → 1000 subscribers",
            "stream",
            dict(subs=1000, mode="rate", rate=50, lat_every=1),
            metrics=RATE_METRICS,
            goal="p99 ≤ reference",
        )
    )
    s.append(
        Scenario(
            "rate-100x200",
            "fixed rate 200 readings/s → 100 subscribers",
            "stream",
            dict(subs=100, mode="rate", rate=200, lat_every=1),
            metrics=RATE_METRICS,
        )
    )
    s.append(
        Scenario(
            "rate-1000x200",
            "fixed rate 200 readings/s → 1000 subscribers",
            "stream",
            dict(subs=1000, mode="rate", rate=200, lat_every=1),
            metrics=RATE_METRICS,
            goal="p99 ≤ 20 ms",
        )
    )
    s.append(
        Scenario(
            "ingest-ws",
            "ingest over WebSocket, 1 device, no other subscriber",
            "ingest",
            dict(transport="ws", burst=32, window=2048),
            metrics=INGEST_METRICS,
        )
    )
    s.append(
        Scenario(
            "ingest-tcp",
            "ingest over raw TCP (1 WS counter subscribed)",
            "ingest",
            dict(transport="tcp", burst=32, window=2048),
            targets=("tantra",),
            metrics=INGEST_METRICS,
            goal="≥ 100,000 readings/s",
        )
    )
    s.append(
        Scenario(
            "ingest-tcp-store",
            "ingest over raw TCP with history on (--store sqlite:, group commit; "
            "compare ingest-tcp, --store none)",
            "ingest",
            dict(transport="tcp", burst=32, window=2048, store="sqlite:bench.sqlite3"),
            targets=("tantra",),
            metrics=INGEST_METRICS,
        )
    )
    s.append(
        Scenario(
            "ingest-udp",
            "ingest over UDP (1 WS counter subscribed)",
            "ingest",
            dict(transport="udp", burst=16, window=256),
            targets=("tantra",),
            metrics=INGEST_METRICS,
            goal="≥ 100,000 readings/s",
        )
    )
    for n in (1000, 5000):
        s.append(
            Scenario(
                f"idle-{n}",
                f"memory: {n} idle WebSocket clients",
                "memory",
                dict(conns=n),
                metrics=MEMORY_METRICS,
                goal="KB/client ≤ reference" if n == 5000 else "",
            )
        )
    s.append(
        Scenario(
            "idle-10000",
            "memory: 10,000 idle WebSocket clients (opened all at once)",
            "memory",
            dict(conns=10000, parallel=True),
            metrics=MEMORY_METRICS,
            goal="KB/client ≤ reference",
            quick=False,
        )
    )
    s.append(
        Scenario(
            "rate-10000x10",
            "fixed rate 10 readings/s → 10,000 subscribers",
            "stream",
            dict(subs=10000, mode="rate", rate=10, lat_every=1, parallel=True),
            metrics=RATE_METRICS,
            goal="p99 ≤ reference",
            quick=False,
        )
    )
    for n, quick in ((1000, True), (10000, False)):
        s.append(
            Scenario(
                f"reconnect-{n}",
                f"{n:,} dashboards reconnect at once after a hub restart (same port)",
                "reconnect",
                dict(conns=n),
                metrics=RECONNECT_METRICS,
                goal="all within 10 s, none refused" if n == 10000 else "",
                quick=quick,
            )
        )
    s.append(
        Scenario(
            "stall-1000x50",
            "1 stalled subscriber among 1000, 50 readings/s",
            "stream",
            dict(subs=999, stalled=1, mode="rate", rate=50, lat_every=1, sensors=100),
            metrics=STALL_METRICS,
        )
    )
    wamp_metrics = (
        ("deliveries_per_s", "events/s", True),
        ("hub_us_per_delivery", "hub CPU µs/event", False),
        ("hub_util", "hub CPU busy", None),
        ("delivered_pct", "delivered %", None),
        ("load_util", "load CPU busy", None),
    )
    s.append(
        Scenario(
            "wamp-100",
            "WAMP fan-out: 1 WebSocket publisher flat out (64 in flight), 100 WAMP subscribers "
            "(wamp.2.json, prefix tantra.reading)",
            "wamp",
            dict(subs=100, mode="max", burst=1, window=64, lat_every=16),
            targets=("tantra",),
            metrics=wamp_metrics,
        )
    )
    s.append(
        Scenario(
            "wamp-rate-1000x50",
            "WAMP fixed rate 50 readings/s → 1000 WAMP subscribers (compare rate-1000x50)",
            "wamp",
            dict(subs=1000, mode="rate", rate=50, lat_every=1),
            targets=("tantra",),
            metrics=RATE_METRICS,
            goal="p99 ≤ 1.2× rate-1000x50's dashboard p99",
        )
    )
    s.append(
        Scenario(
            "wamp-1000-burst16",
            "WAMP fan-out: bursts of 16 readings per write (256 in flight), 1000 WAMP "
            "subscribers (wamp.2.json, prefix tantra.reading)",
            "wamp",
            dict(subs=1000, mode="max", burst=16, window=256, lat_every=256),
            targets=("tantra",),
            metrics=wamp_metrics,
            goal="≥ 1,000,000 events/s",
        )
    )
    s += path_scenarios()
    return s


# --------------------------------------------------------------------- trials


def percentile(sorted_vals, q: float):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


class ProfileWindow:
    """Runs the profiler on the hub during the measurement window only."""

    def __init__(self, profiler, hub, sc) -> None:
        self.profiler, self.hub, self.sc = profiler, hub, sc
        self.handle = None

    def begin(self) -> None:
        self.handle = self.profiler.start(self.hub, self.sc)

    def end(self) -> None:
        if self.handle is not None:
            self.profiler.stop(self.handle)
            self.handle = None


class _NoWindow:
    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass


NO_WINDOW = _NoWindow()


def trial_stream(hub, p: dict, t: Timing, window=NO_WINDOW, wamp: bool = False) -> dict:
    dur = t.stall_dur if p.get("stalled") else t.rate_dur if p["mode"] == "rate" else t.dur
    fd, lat_path = tempfile.mkstemp(prefix="tantra-bench-lat-")
    os.close(fd)
    sub = pub = None
    try:
        sargs = [
            "sub",
            "--port",
            hub.http_port,
            "--conns",
            p["subs"],
            "--lat-every",
            p.get("lat_every", 0),
            "--lat-out",
            lat_path,
            "--stalled",
            p.get("stalled", 0),
        ]
        if p.get("parallel"):
            sargs += ["--parallel", 1]
        if wamp:
            sargs += wamp_sub_args()
        sub = procs.Loader(sargs)
        ready = sub.expect("ready", 180)
        if ready["failed"]:
            raise RuntimeError(
                f"{ready['failed']} subscribers failed to connect: {ready['errors']}"
            )
        pargs = [
            "pub",
            "--port",
            hub.http_port,
            "--mode",
            p["mode"],
            "--burst",
            p.get("burst", 1),
            "--window",
            p.get("window", 1),
            "--rate",
            p.get("rate", 100),
            "--sensors",
            p.get("sensors", 10),
        ]
        pub = procs.Loader(pargs)
        pub.expect("ready", 30)
        t0 = time.monotonic() + 0.2
        m0 = t0 + t.warm
        m1 = m0 + dur
        go = {"t0": t0, "m0": m0, "m1": m1}
        sub.send({"go": go})
        pub.send({"go": go})
        sleep_until(m0)
        c0 = hub.cpu()
        u0, k0 = hub.cpu_split()
        l0 = sub.cpu() + pub.cpu()
        rss0 = rss_max = hub.rss()
        window.begin()
        while time.monotonic() < m1:
            time.sleep(min(0.2, max(0.0, m1 - time.monotonic())))
            rss_max = max(rss_max, hub.rss())
        c1 = hub.cpu()
        u1, k1 = hub.cpu_split()
        l1 = sub.cpu() + pub.cpu()
        rss1 = hub.rss()
        window.end()
        pub.send({"finish": {}})
        pr = pub.expect("result", 15)
        sub.send({"finish": {"drain_s": t.drain}})
        sr = sub.expect("result", t.drain + 30)
        lat = array.array("q")
        with open(lat_path, "rb") as f:
            lat.frombytes(f.read())
    finally:
        for ld in (pub, sub):
            if ld is not None:
                ld.close()
        os.unlink(lat_path)
    cpu = c1 - c0
    deliveries = sr["in_window"]
    expected = pr["sent_in_window"] * p["subs"]
    out = {
        "deliveries_per_s": deliveries / dur,
        "published_per_s": pr["sent_in_window"] / dur,
        "hub_cpu_s": cpu,
        "hub_util": cpu / dur,
        "hub_us_per_delivery": cpu * 1e6 / deliveries if deliveries else None,
        # user code vs kernel (the send syscalls, and on loopback the receivers' TCP input)
        "hub_user_us_per_delivery": (u1 - u0) * 1e6 / deliveries if deliveries else None,
        "hub_sys_us_per_delivery": (k1 - k0) * 1e6 / deliveries if deliveries else None,
        # what the hub could deliver with one core to itself (load-insensitive throughput)
        "deliveries_per_cpu_s": deliveries / cpu if cpu else None,
        "rss_mb": rss1 / 1024,
        "rss_max_mb": rss_max / 1024,
        "rss_growth_mb": (rss_max - rss0) / 1024,
        "per_conn_min": sr["per_conn_min"],
        "per_conn_max": sr["per_conn_max"],
        "closed_by_server": sr["closed_by_server"],
        "load_util": (l1 - l0) / dur,
        "load_us_per_delivery": (l1 - l0) * 1e6 / deliveries if deliveries else None,
        "window_resets": pr["window_resets"],
    }
    if p["mode"] == "max" and pr["sent"]:
        # whole run, after the drain: frames of live readings / (readings * subscribers)
        out["delivered_pct"] = 100.0 * sr["frames_after_go"] / (pr["sent"] * p["subs"])
    if lat:
        vals = sorted(lat)
        out["p50_ms"] = percentile(vals, 0.50) / 1000
        out["p99_ms"] = percentile(vals, 0.99) / 1000
        out["p999_ms"] = percentile(vals, 0.999) / 1000
        out["max_ms"] = vals[-1] / 1000
        out["lat_samples"] = len(vals)
        if p["mode"] == "rate" and expected:
            out["delivered_pct"] = 100.0 * len(vals) * p.get("lat_every", 1) / expected
    if p.get("stalled"):
        st = sr["stalled"][0] if sr["stalled"] else {}
        out["stalled_closed"] = "yes" if (st.get("closed_by_server") or st.get("lost")) else "no"
    return out


def trial_ingest(hub, p: dict, t: Timing, window=NO_WINDOW) -> dict:
    port = {"ws": 0, "tcp": hub.tcp_port, "udp": hub.udp_port}[p["transport"]]
    pub = procs.Loader(
        [
            "pub",
            "--port",
            hub.http_port,
            "--ingest-port",
            port,
            "--transport",
            p["transport"],
            "--mode",
            "max",
            "--burst",
            p["burst"],
            "--window",
            p["window"],
            "--sensors",
            10,
        ]
    )
    try:
        pub.expect("ready", 30)
        t0 = time.monotonic() + 0.2
        m0 = t0 + t.warm
        m1 = m0 + t.dur
        pub.send({"go": {"t0": t0, "m0": m0, "m1": m1}})
        sleep_until(m0)
        c0 = hub.cpu()
        window.begin()
        sleep_until(m1)
        c1 = hub.cpu()
        window.end()
        pub.send({"finish": {}})
        pr = pub.expect("result", 15)
    finally:
        pub.close()
    n = pr["echo_in_window"]
    cpu = c1 - c0
    return {
        "readings_per_s": n / t.dur,
        "sent_per_s": pr["sent_in_window"] / t.dur,
        "hub_cpu_s": cpu,
        "hub_util": cpu / t.dur,
        "hub_us_per_reading": cpu * 1e6 / n if n else None,
        "window_resets": pr["window_resets"],
        "load_pub_cpu_s": pr["cpu_s"],
    }


def trial_memory(hub_cls, p: dict, t: Timing) -> dict:
    with hub_cls() as hub:
        time.sleep(t.mem_settle)
        base = hub.rss()
        sargs = ["sub", "--port", hub.http_port, "--conns", p["conns"], "--settle", 0.2]
        if p.get("parallel"):
            sargs += ["--parallel", 1]
        sub = procs.Loader(sargs)
        try:
            ready = sub.expect("ready", 300)
            if ready["failed"]:
                raise RuntimeError(f"{ready['failed']} clients failed: {ready['errors']}")
            time.sleep(t.mem_settle)
            rss = hub.rss()
            sub.send({"go": {"t0": 0, "m0": 0, "m1": 0}})
            sub.send({"finish": {"drain_s": 0}})
            sub.expect("result", 30)
        finally:
            sub.close()
    return {
        "rss_base_mb": base / 1024,
        "rss_mb": rss / 1024,
        "kb_per_client": (rss - base) / p["conns"],
        "connect_s": ready["connect_s"],
    }


def parse_netstat(text: str) -> dict[str, int]:
    """``/proc/net/netstat`` as ``{"TcpExt.ListenOverflows": n, ...}``.

    The file holds pairs of lines per group: ``TcpExt: name name ...`` then
    ``TcpExt: value value ...``.
    """
    out: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, keys = names.partition(":")
        vgroup, _, vals = values.partition(":")
        if group != vgroup:
            continue
        for k, v in zip(keys.split(), vals.split(), strict=False):
            if v.lstrip("-").isdigit():
                out[f"{group}.{k}"] = int(v)
    return out


def netstat() -> dict[str, int]:
    try:
        with open("/proc/net/netstat") as f:
            return parse_netstat(f.read())
    except OSError:
        return {}


def reconnect_summary(opened: dict, before: dict[str, int], after: dict[str, int]) -> dict:
    """The figures of one reconnect storm: wssub's ``opened`` and the kernel's counters.

    ``before``/``after`` are :func:`netstat` snapshots around the storm; the
    counters are the machine's (its network namespace), so other work on the
    machine can add to them, never take away.
    """
    failed = opened["refused"] + opened["reset"] + opened["timeout"] + opened["other"]

    def delta(key: str) -> int | None:
        if key in before and key in after:
            return after[key] - before[key]
        return None

    return {
        "all_open_s": opened["all_open_s"] if not failed else None,
        "last_open_s": opened["all_open_s"],
        "reconnected": opened["ok"],
        "not_reconnected": failed,
        "refused": opened["refused"] + opened["reset"],
        "timed_out": opened["timeout"],
        "connect_p50_ms": opened["p50_ms"],
        "connect_p99_ms": opened["p99_ms"],
        "connect_max_ms": opened["max_ms"],
        "listen_overflows": delta("TcpExt.ListenOverflows"),
        "listen_drops": delta("TcpExt.ListenDrops"),
        "syncookies_sent": delta("TcpExt.SyncookiesSent"),
        "req_q_full_drops": delta("TcpExt.TCPReqQFullDrop"),
    }


def trial_reconnect(hub_cls, p: dict, t: Timing) -> dict:
    """N dashboards open, the hub restarts on the same port, all reconnect at once.

    The subscriber process opens every client at once (``--parallel``); the
    harness stops the hub (SIGTERM: the clients lose their connections),
    starts a new one on the same port, and only once it listens says "go":
    every client reconnects at the same moment, without retrying a refusal,
    so the figures are the hub's (backlog, accept loop, handshakes), not a
    client's back-off. The kernel retransmits a dropped SYN by itself (after
    1 s, 3 s, 7 s, ...): that shows in the time until the last one is open.
    """
    timeout = p.get("timeout", 30.0)
    hub = hub_cls()
    hub.start()
    sub = None
    try:
        sub = procs.Loader(
            [
                "sub",
                "--port",
                hub.http_port,
                "--conns",
                p["conns"],
                "--parallel",
                1,
                "--reconnect",
                1,
                "--settle",
                0.2,
                "--connect-timeout",
                timeout,
            ]
        )
        ready = sub.expect("ready", timeout + 60)
        first = ready["opened"]
        port = hub.http_port
        hub.stop()  # the restart: every client loses its connection
        hub = hub_cls(listen_port=port)
        hub.start()
        time.sleep(t.mem_settle)
        before = netstat()
        sub.send({"go": {"t0": 0, "m0": 0, "m1": 0}})
        sub.send({"finish": {"drain_s": 0}})
        res = sub.expect("result", timeout + 60)
        after = netstat()
        rss = hub.rss()
    finally:
        if sub is not None:
            sub.close()
        hub.stop()
    out = reconnect_summary(res["opened"], before, after)
    out["first_open_s"] = first["all_open_s"]
    out["first_not_opened"] = p["conns"] - first["ok"]
    out["rss_mb"] = rss / 1024
    return out


def wamp_sub_args() -> list:
    hello = '[1,"tantra",{"roles":{"subscriber":{}}}]'
    subscribe = '[32,1,{"match":"prefix"},"tantra.reading"]'
    return [
        "--path",
        "/wamp",
        "--protocol",
        "wamp.2.json",
        "--subscribe",
        hello,
        "--subscribe",
        subscribe,
    ]


def wamp_available(hub_cls) -> str | None:
    """Whether the Tantra that the hub will run has the WAMP router."""
    code = "import importlib.util; print(importlib.util.find_spec('tantra.wamp') is not None)"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=dict(os.environ, **hub_cls.extra_env()),
    )
    if r.stdout.strip() != "True":
        return "not yet: tantra/wamp.py does not exist"
    return None


# ------------------------------------------------------------------- driver


@dataclass
class Result:
    scenario: Scenario
    trials: dict = field(default_factory=dict)  # target -> [dict]
    skipped: dict = field(default_factory=dict)  # target -> reason
    versions: dict = field(default_factory=dict)  # target -> version when the scenario ran
    variants: list = field(default_factory=list)  # "paths" scenarios: trial keys, baseline first

    def medians(self, target: str) -> dict:
        rows = [r for r in self.trials.get(target, []) if "error" not in r]
        out = {}
        keys = set().union(*rows) if rows else set()
        for k in keys:
            vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
            if vals:
                out[k] = statistics.median(vals)
            else:
                strs = [r[k] for r in rows if isinstance(r.get(k), str)]
                if strs:
                    out[k] = "/".join(sorted(set(strs)))
        return out

    def errors(self, target: str) -> list[str]:
        return [r["error"] for r in self.trials.get(target, []) if "error" in r]


def run(
    selected: list[Scenario], targets: list[str], t: Timing, log=print, profile=None
) -> list[Result]:
    results = []
    for sc in selected:
        if sc.kind == "paths":  # variants of the Tantra hub, ratios to the first
            results.append(run_paths(sc, targets, t, log, profile))
            continue
        res = Result(sc)
        results.append(res)
        tg = [
            x for x in targets if x in sc.targets or (x == "candidate" and "tantra" in sc.targets)
        ]
        for name in list(tg):
            why = procs.HUBS[name].available()
            if why is None and sc.kind == "wamp" and name in ("tantra", "candidate"):
                why = wamp_available(procs.HUBS[name])
            if why:
                res.skipped[name] = why
                tg.remove(name)
        if not tg:
            log(f"-- {sc.key}: skipped ({'; '.join(res.skipped.values())})")
            continue
        log(f"-- {sc.key}: {sc.title}  [{', '.join(tg)}] × {t.reps}")
        hubs = {}
        # the hub imports whatever code is installed *now*: record it per scenario
        for name in tg:
            res.versions[name] = procs.HUBS[name].version()
        try:
            if sc.kind not in ("memory", "reconnect"):  # these start their own hubs
                for name in tg:
                    hubs[name] = procs.HUBS[name]()
                    if "store" in sc.params:  # Tantra's history; otherwise --store none
                        hubs[name].store = sc.params["store"]
                    hubs[name].start()
            for rep in range(t.reps):
                order = tg if rep % 2 == 0 else list(reversed(tg))
                for name in order:
                    started = time.monotonic()
                    try:
                        if sc.kind == "memory":
                            r = trial_memory(procs.HUBS[name], sc.params, t)
                        elif sc.kind == "reconnect":
                            r = trial_reconnect(procs.HUBS[name], sc.params, t)
                        else:
                            hub = hubs[name]
                            if not hub.alive():
                                raise RuntimeError(
                                    "hub died:\n" + "\n".join(list(hub.tail.lines)[-20:])
                                )
                            window = (
                                ProfileWindow(profile, hub, sc)
                                if (profile and name == "tantra" and rep == 0)
                                else NO_WINDOW
                            )
                            try:
                                if sc.kind == "ingest":
                                    r = trial_ingest(hub, sc.params, t, window)
                                else:
                                    r = trial_stream(
                                        hub, sc.params, t, window, wamp=sc.kind == "wamp"
                                    )
                            finally:
                                window.end()
                    except (RuntimeError, OSError, KeyError, ValueError) as e:
                        r = {"error": f"{type(e).__name__}: {e}"}
                    r["elapsed_s"] = time.monotonic() - started
                    res.trials.setdefault(name, []).append(r)
                    log(f"   rep {rep + 1} {name:9s} " + brief(sc, r))
        finally:
            for hub in hubs.values():
                hub.stop()
    return results


def brief(sc: Scenario, r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[0][:200]
    parts = []
    for key, label, _ in sc.metrics:
        v = r.get(key)
        if v is not None:
            parts.append(f"{label}={fmt(v)}")
    return ", ".join(parts) + f"  ({r['elapsed_s']:.1f}s)"


def fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "–"
    a = abs(v)
    if a >= 10000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# ------------------------------------------------ new paths (issue 14, item 5)
#
# Stored ingest (SQLite, PostgreSQL), ack latency after commit, auth, the MQTT
# bridge and the cluster: each scenario runs *variants* of the Tantra hub
# (store off/on, auth off/on, ...) alternately in one invocation and reports
# every variant's medians with its ratio to the scenario's baseline variant
# (the first). Devices send readings with ``seq`` (``load.py dev``) and count
# acks: with a store an ack means committed, so acks/s is stored readings/s.
# PostgreSQL and Mosquitto are used when reachable (else the variant is
# skipped with the reason): PostgreSQL in a schema of its own per hub,
# dropped afterwards; Mosquitto under a topic prefix of its own per run.

PG_URL = os.environ.get("TANTRA_BENCH_PG", "postgresql://127.0.0.1:5432/test")
MQTT_ADDR = os.environ.get("TANTRA_BENCH_MQTT", "127.0.0.1:1883")


@dataclass
class Variant:
    label: str
    #: hub set-up: store ("none" | "sqlite" | "postgresql"), auth (bool),
    #: mqtt (bool), cluster (bool: two hubs A and B on the broker)
    hub: dict
    #: what the trial does: kind "dev" (load.py dev) or "cluster"; its parameters
    load: dict


ACKED_METRICS = (
    ("readings_per_s", "acked readings/s", True),
    ("hub_us_per_reading", "hub CPU µs/reading", False),
    ("main_us_per_reading", "  of it reactor thread", False),
    ("threads_us_per_reading", "  of it other threads (writer)", False),
    ("hub_util", "hub CPU busy", None),
    ("load_util", "load CPU busy", None),
    ("ack_p50_ms", "ack p50 ms", None),
    ("ack_p99_ms", "ack p99 ms", None),
    ("shed", "shed by the store", None),
)
ACK_LATENCY_METRICS = (
    ("ack_p50_ms", "ack p50 ms", False),
    ("ack_p99_ms", "ack p99 ms", False),
    ("ack_p999_ms", "ack p99.9 ms", False),
    ("acked_pct", "acked %", None),
    ("hub_us_per_reading", "hub CPU µs/reading", False),
)
CLUSTER_LAT_METRICS = (
    ("added_p50_ms", "added p50 ms (B − A)", False),
    ("added_p99_ms", "added p99 ms (B − A)", False),
    ("a_p99_ms", "p99 on A ms", False),
    ("b_p99_ms", "p99 on B ms", False),
    ("delivered_pct", "delivered % on B", None),
)


def path_scenarios() -> list[Scenario]:
    """The new paths' scenarios; ``params["variants"][0]`` is the baseline."""
    tcp = dict(kind="dev", transport="tcp", mode="max", batch=10, window=4096, conns=4)
    return [
        Scenario(
            "store-acked",
            "TCP ingest, batches of 10 with seq, 4 devices, counted by acks (= committed): "
            "store none / SQLite / PostgreSQL",
            "paths",
            dict(
                variants=[
                    Variant("store none", dict(store="none"), tcp),
                    Variant("sqlite", dict(store="sqlite"), tcp),
                    Variant("postgresql", dict(store="postgresql"), tcp),
                ]
            ),
            targets=("tantra",),
            metrics=ACKED_METRICS,
            goal="SQLite ≥ 100,000/s, PostgreSQL ≥ 50,000/s (issue 10)",
        ),
        Scenario(
            "ingest-tcp-pg",
            "ingest over raw TCP as ingest-tcp-store (no seq, counted by broadcasts on a WS "
            "counter): store none / SQLite / PostgreSQL; 'shed' says whether the store kept up",
            "paths",
            dict(
                variants=[
                    Variant(
                        name,
                        dict(store=store),
                        dict(kind="ingest", transport="tcp", burst=32, window=2048),
                    )
                    for name, store in (
                        ("store none", "none"),
                        ("sqlite", "sqlite"),
                        ("postgresql", "postgresql"),
                    )
                ]
            ),
            targets=("tantra",),
            metrics=(
                ("readings_per_s", "readings/s", True),
                ("hub_us_per_reading", "hub CPU µs/reading", False),
                ("hub_util", "hub CPU busy", None),
                ("shed", "shed by the store", None),
            ),
            goal="PostgreSQL ≥ 50,000/s (issue 10), none shed",
        ),
        Scenario(
            "ack-latency",
            "send → ack at 10,000 readings/s (batches of 10, 1 device): store none / SQLite / "
            "PostgreSQL (acks after commit)",
            "paths",
            dict(
                variants=[
                    Variant(
                        "store none",
                        dict(store="none"),
                        {**tcp, "mode": "rate", "rate": 10_000, "conns": 1},
                    ),
                    Variant(
                        "sqlite",
                        dict(store="sqlite"),
                        {**tcp, "mode": "rate", "rate": 10_000, "conns": 1},
                    ),
                    Variant(
                        "postgresql",
                        dict(store="postgresql"),
                        {**tcp, "mode": "rate", "rate": 10_000, "conns": 1},
                    ),
                ]
            ),
            targets=("tantra",),
            metrics=ACK_LATENCY_METRICS,
            goal="p99 ≤ 25 ms with a store (issue 10)",
        ),
        Scenario(
            "auth-tcp",
            "TCP ingest with seq (store none), 4 devices: auth off / on (a device token each)",
            "paths",
            dict(
                variants=[
                    Variant("auth off", dict(store="none"), tcp),
                    Variant("auth on", dict(store="none", auth=True), tcp),
                ]
            ),
            targets=("tantra",),
            metrics=ACKED_METRICS,
            goal="the cost of --auth as a ratio (issue 11)",
        ),
        Scenario(
            "mqtt-ingest",
            "ingest with seq, 4 devices, batches of 10, store none: TCP without a broker / "
            "TCP with the hub bridged out to the broker (every reading published) / MQTT in "
            "(tantra/in → tantra/ack, QoS 0 publishes)",
            "paths",
            dict(
                variants=[
                    Variant("tcp, no broker", dict(store="none"), tcp),
                    Variant(
                        "tcp, bridged out", dict(store="none", mqtt=True), {**tcp, "count_mqtt": 1}
                    ),
                    Variant(
                        "mqtt in",
                        dict(store="none", mqtt=True),
                        {**tcp, "transport": "mqtt", "count_mqtt": 1},
                    ),
                ]
            ),
            targets=("tantra",),
            metrics=(
                *ACKED_METRICS[:2],
                ("bridged_per_s", "bridged out, got by 1 QoS 0 subscriber/s (lower bound)", None),
                ("mqtt_published", "readings published (trial)", None),
                ("mqtt_conflated", "readings conflated, newest kept (trial)", None),
                ("mqtt_dropped", "publishes dropped, queue full (trial)", None),
                *ACKED_METRICS[2:],
            ),
        ),
        Scenario(
            "cluster-latency",
            "cluster A → broker → B at 1000 readings/s (TCP into A; a dashboard on A and one "
            "on B, same readings): store none / SQLite (A publishes after commit)",
            "paths",
            dict(
                variants=[
                    Variant(
                        "store none",
                        dict(store="none", cluster=True),
                        dict(kind="cluster", rate=1000),
                    ),
                    Variant(
                        "sqlite",
                        dict(store="sqlite", cluster=True),
                        dict(kind="cluster", rate=1000),
                    ),
                ]
            ),
            targets=("tantra",),
            metrics=CLUSTER_LAT_METRICS,
            goal="added p99 ≤ 5 ms (issue 12)",
        ),
        Scenario(
            "cluster-throughput",
            "readings/s into A flat out (TCP, 32 per write), counted on A's dashboard / on B's "
            "(over the broker); store none",
            "paths",
            dict(
                variants=[
                    Variant(
                        "on A", dict(store="none", cluster=True), dict(kind="bus", count_on="a")
                    ),
                    Variant(
                        "on B", dict(store="none", cluster=True), dict(kind="bus", count_on="b")
                    ),
                ]
            ),
            targets=("tantra",),
            metrics=(
                ("readings_per_s", "readings/s", True),
                ("hub_us_per_reading", "hubs' CPU µs/reading (A + B)", False),
            ),
        ),
    ]


def pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # any failure means "not here"
        return f"PostgreSQL at {PG_URL} unreachable ({type(e).__name__}: {str(e).strip()[:80]})"
    return None


def mqtt_available() -> str | None:
    import socket

    host, _, port = MQTT_ADDR.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as e:
        return f"no MQTT broker at {MQTT_ADDR} ({e})"
    return None


class PathHubs:
    """The hub(s) of one variant: set-up (schema, tokens, prefix), start, stop."""

    def __init__(self, hub_cls, v: Variant, tag: str) -> None:
        self.hub_cls, self.v, self.tag = hub_cls, v, tag
        self.hubs: list = []
        self.schema: str | None = None
        self.tokens: list[str] = []
        self.prefix = f"bench-{tag}"

    def start(self) -> None:
        h = self.v.hub
        args: list[str] = []
        store = h.get("store", "none")
        if store == "sqlite":
            store = "sqlite:bench.sqlite3"
        elif store == "postgresql":
            import psycopg

            self.schema = f"bench_{self.tag}"
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
                conn.execute(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in PG_URL else "?"
            store = f"{PG_URL}{sep}options=-csearch_path%3D{self.schema}"
        if h.get("mqtt") or h.get("cluster"):
            args += ["--mqtt", f"mqtt://{MQTT_ADDR}", "--mqtt-prefix", self.prefix]
        if h.get("cluster"):
            args += ["--cluster", "bench"]
        for _ in range(2 if h.get("cluster") else 1):  # A (and B)
            hub = self.hub_cls()
            hub.store = store  # SQLite: each hub its own file in its own directory
            extra = list(args)
            if h.get("auth"):
                extra += ["--auth", self._tokens(hub.workdir)]
            hub.extra_args = extra
            self.hubs.append(hub)
            hub.start()
            if "--mqtt" in extra:
                hub.tail.wait_for(re.compile(r"MQTT: (connected)"), 1, 20)
        if h.get("mqtt") or h.get("cluster"):
            time.sleep(0.5)  # the SUBACKs

    def _tokens(self, workdir: str) -> str:
        path = os.path.join(workdir, "auth.json")
        tantra = os.path.join(os.path.dirname(sys.executable), "tantra")
        self.tokens = []
        for i in range(self.v.load.get("conns", 1)):
            r = subprocess.run(
                [tantra, "token", "add", "--auth", path, "--kind", "device", f"bench-dev-{i}"],
                capture_output=True,
                text=True,
                check=True,
                env=dict(os.environ, **self.hub_cls.extra_env()),
            )
            self.tokens.append(__import__("json").loads(r.stdout)["token"])
        return path

    def alive(self) -> bool:
        return all(h.alive() for h in self.hubs)

    def cpu(self) -> float:
        return sum(h.cpu() for h in self.hubs)

    def stop(self) -> None:
        for hub in self.hubs:
            hub.stop()
        if self.schema:
            import psycopg

            try:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            except Exception as e:  # clean-up must not hide the result
                print(f"could not drop schema {self.schema}: {e}", file=sys.stderr)
        if self.hubs and ("--mqtt" in self.hubs[0].extra_args):
            clear_retained(f"{self.prefix}/#")


def clear_retained(topic_filter: str) -> None:
    """Forget the retained readings a run left on the broker (its own prefix only)."""
    import shutil

    if shutil.which("mosquitto_sub") is None:
        return
    host, _, port = MQTT_ADDR.rpartition(":")
    found = subprocess.run(
        ["mosquitto_sub", "-h", host, "-p", port, "-t", topic_filter, "--retained-only",
         "-W", "1", "-F", "%t"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for topic in found:
        subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-t", topic, "-r", "-n"])


def main_thread_cpu(hub) -> float:
    """utime + stime of the hub's reactor (main) thread alone."""
    with open(f"/proc/{hub.pid}/task/{hub.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / procs.CLK_TCK


def hub_stats(hub) -> dict:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{hub.http_port}/stats", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


def trial_dev(hubs: PathHubs, v: Variant, t: Timing, window=NO_WINDOW) -> dict:
    """Devices with seq against hub A; acked readings/s and send → ack latency."""
    p = v.load
    hub = hubs.hubs[0]
    fd, lat_path = tempfile.mkstemp(prefix="tantra-bench-ack-")
    os.close(fd)
    args = [
        "dev",
        "--ingest-port", hub.tcp_port,
        "--transport", p.get("transport", "tcp"),
        "--mqtt", MQTT_ADDR,
        "--mqtt-prefix", hubs.prefix,
        "--conns", p.get("conns", 1),
        "--mode", p.get("mode", "max"),
        "--rate", p.get("rate", 1000),
        "--batch", p.get("batch", 10),
        "--window", p.get("window", 4096),
        "--lat-out", lat_path,
    ]  # fmt: skip
    for token in hubs.tokens:
        args += ["--auth", token]
    if p.get("count_mqtt"):
        args.append("--count-mqtt")
    dur = t.rate_dur if p.get("mode") == "rate" else t.dur
    dev = procs.Loader(args)
    try:
        dev.expect("ready", 30)
        st0 = hub_stats(hub)
        s0 = st0.get("store", {})
        t0 = time.monotonic() + 0.2
        m0, m1 = t0 + t.warm, t0 + t.warm + dur
        dev.send({"go": {"t0": t0, "m0": m0, "m1": m1}})
        sleep_until(m0)
        c0, l0, m0cpu = hubs.cpu(), dev.cpu(), main_thread_cpu(hub)
        window.begin()
        sleep_until(m1)
        c1, l1, m1cpu = hubs.cpu(), dev.cpu(), main_thread_cpu(hub)
        window.end()
        dev.send({"finish": {"drain_s": t.drain}})
        r = dev.expect("result", t.drain + 30)
        st1 = hub_stats(hub)
        s1 = st1.get("store", {})
        lat = array.array("q")
        with open(lat_path, "rb") as f:
            lat.frombytes(f.read())
    finally:
        dev.close()
        os.unlink(lat_path)
    n = r["acked_in_window"]
    cpu = c1 - c0
    out = {
        "readings_per_s": n / dur,
        "sent_per_s": r["sent_in_window"] / dur,
        "hub_cpu_s": cpu,
        "hub_util": cpu / dur,
        "hub_us_per_reading": cpu * 1e6 / n if n else None,
        "load_util": (l1 - l0) / dur,
        # the reactor thread alone; the rest is the history writer (and read threads)
        "main_us_per_reading": (m1cpu - m0cpu) * 1e6 / n if n else None,
        "threads_us_per_reading": (cpu - (m1cpu - m0cpu)) * 1e6 / n if n else None,
        "errors": r["errors"],
        "window_resets": r["window_resets"],
        "shed": s1.get("shed", 0) - s0.get("shed", 0),
        "commits": s1.get("commits", 0) - s0.get("commits", 0),
    }
    if p.get("count_mqtt"):
        out["bridged_per_s"] = r["bridged_in_window"] / dur
        q0, q1 = st0.get("mqtt", {}), st1.get("mqtt", {})
        # whole trial (warm-up and drain included): what the hub published / dropped
        out["mqtt_published"] = q1.get("readings_published", 0) - q0.get("readings_published", 0)
        out["mqtt_conflated"] = q1.get("readings_conflated", 0) - q0.get("readings_conflated", 0)
        out["mqtt_dropped"] = sum((q1.get("publish_dropped") or {}).values()) - sum(
            (q0.get("publish_dropped") or {}).values()
        )
    if r["error_sample"]:
        out["error_sample"] = r["error_sample"]
    if r["sent_in_window"] and p.get("mode") == "rate":
        out["acked_pct"] = 100.0 * len(lat) * p.get("batch", 10) / r["sent_in_window"]
    if lat:
        vals = sorted(lat)
        out["ack_p50_ms"] = percentile(vals, 0.50) / 1000
        out["ack_p99_ms"] = percentile(vals, 0.99) / 1000
        out["ack_p999_ms"] = percentile(vals, 0.999) / 1000
        out["ack_max_ms"] = vals[-1] / 1000
        out["lat_samples"] = len(vals)
    return out


def trial_cluster(hubs: PathHubs, v: Variant, t: Timing, window=NO_WINDOW) -> dict:
    """A TCP device into hub A at a fixed rate; one dashboard on A and one on B
    (two subscriber processes, the same readings): latency send → A, send → B."""
    a, b = hubs.hubs
    paths = []
    subs = []
    pub = None
    try:
        for hub in (a, b):
            fd, path = tempfile.mkstemp(prefix="tantra-bench-clu-")
            os.close(fd)
            paths.append(path)
            sub = procs.Loader(["sub", "--port", hub.http_port, "--conns", 1, "--lat-every", 1,
                                "--lat-out", path])  # fmt: skip
            subs.append(sub)
            sub.expect("ready", 30)
        pub = procs.Loader(["pub", "--port", a.http_port, "--ingest-port", a.tcp_port,
                            "--transport", "tcp", "--mode", "rate", "--rate", v.load["rate"],
                            "--burst", 1, "--sensors", 100])  # fmt: skip
        pub.expect("ready", 30)
        t0 = time.monotonic() + 0.2
        m0, m1 = t0 + t.warm, t0 + t.warm + t.rate_dur
        go = {"go": {"t0": t0, "m0": m0, "m1": m1}}
        for ld in (*subs, pub):
            ld.send(go)
        sleep_until(m0)
        c0 = hubs.cpu()
        window.begin()
        sleep_until(m1)
        c1 = hubs.cpu()
        window.end()
        pub.send({"finish": {}})
        pr = pub.expect("result", 15)
        for sub in subs:
            sub.send({"finish": {"drain_s": t.drain}})
        for sub in subs:
            sub.expect("result", t.drain + 30)
        lats = []
        for path in paths:
            lat = array.array("q")
            with open(path, "rb") as f:
                lat.frombytes(f.read())
            lats.append(sorted(lat))
    finally:
        for ld in (pub, *subs):
            if ld is not None:
                ld.close()
        for path in paths:
            os.unlink(path)
    la, lb = lats
    out: dict = {"hub_cpu_s": c1 - c0, "sent": pr["sent_in_window"]}
    if la and lb:
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            out[f"a_{name}_ms"] = percentile(la, q) / 1000
            out[f"b_{name}_ms"] = percentile(lb, q) / 1000
            out[f"added_{name}_ms"] = out[f"b_{name}_ms"] - out[f"a_{name}_ms"]
    if pr["sent_in_window"]:
        out["delivered_pct"] = 100.0 * len(lb) / pr["sent_in_window"]
    return out


def trial_bus(hubs: PathHubs, v: Variant, t: Timing, window=NO_WINDOW) -> dict:
    """Flat-out TCP ingest into A; the publisher's window counts readings on A's or B's
    dashboard (``count_on``): the broker hop's throughput against the local one."""
    a, b = hubs.hubs
    counter = b if v.load["count_on"] == "b" else a
    pub = procs.Loader(["pub", "--port", counter.http_port, "--ingest-port", a.tcp_port,
                        "--transport", "tcp", "--mode", "max", "--burst", 32, "--window", 2048,
                        "--sensors", 10])  # fmt: skip
    try:
        pub.expect("ready", 30)
        t0 = time.monotonic() + 0.2
        m0, m1 = t0 + t.warm, t0 + t.warm + t.dur
        pub.send({"go": {"t0": t0, "m0": m0, "m1": m1}})
        sleep_until(m0)
        c0 = hubs.cpu()
        window.begin()
        sleep_until(m1)
        c1 = hubs.cpu()
        window.end()
        pub.send({"finish": {}})
        pr = pub.expect("result", 15)
    finally:
        pub.close()
    n = pr["echo_in_window"]
    return {
        "readings_per_s": n / t.dur,
        "hub_cpu_s": c1 - c0,
        "hub_us_per_reading": (c1 - c0) * 1e6 / n if n else None,
        "window_resets": pr["window_resets"],
    }


def trial_stored_ingest(hubs: PathHubs, v: Variant, t: Timing, window=NO_WINDOW) -> dict:
    """``trial_ingest`` (broadcasts counted, no seq) plus what the store shed meanwhile:
    without acks nothing slows the device when the writer falls behind, so a
    figure with readings shed overstates what was stored."""
    hub = hubs.hubs[0]
    s0 = hub_stats(hub).get("store", {})
    out = trial_ingest(hub, v.load, t, window)
    s1 = hub_stats(hub).get("store", {})
    out["shed"] = s1.get("shed", 0) - s0.get("shed", 0)
    return out


PATH_TRIALS = {
    "dev": trial_dev,
    "cluster": trial_cluster,
    "bus": trial_bus,
    "ingest": trial_stored_ingest,
}


def path_label(v: Variant, target: str) -> str:
    return v.label if target == "tantra" else f"{v.label} [{target}]"


def run_paths(sc: Scenario, targets: list[str], t: Timing, log=print, profile=None) -> Result:
    """Every variant of every Tantra tree alternately (forward, then backward), one hub set each."""
    res = Result(sc)
    trees = [x for x in targets if x in ("tantra", "candidate")]
    for name in list(trees):
        why = procs.HUBS[name].available()
        if why:
            res.skipped[name] = why
            trees.remove(name)
    runs = []
    for v in sc.params["variants"]:
        why = None
        if v.hub.get("store") == "postgresql":
            why = pg_available()
        if why is None and (v.hub.get("mqtt") or v.hub.get("cluster")):
            why = mqtt_available()
        for name in trees:
            if why:
                res.skipped[path_label(v, name)] = why
            else:
                runs.append((name, v))
    if not runs:
        log(f"-- {sc.key}: skipped ({'; '.join(sorted(set(res.skipped.values())))})")
        return res
    for label, why in res.skipped.items():
        log(f"   {sc.key} / {label}: skipped: {why}")
    log(f"-- {sc.key}: {sc.title}  [{', '.join(path_label(v, n) for n, v in runs)}] × {t.reps}")
    for name in trees:
        res.versions[name] = procs.HUBS[name].version()
    sets: dict[str, PathHubs] = {}
    tag0 = f"{os.getpid()}_{int(time.time()) % 100000}"
    try:
        for i, (name, v) in enumerate(runs):
            label = path_label(v, name)
            sets[label] = PathHubs(procs.HUBS[name], v, f"{tag0}_{i}")
            try:
                sets[label].start()
            except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                res.trials.setdefault(label, []).append({"error": f"start: {e}"})
                sets.pop(label).stop()
        for rep in range(t.reps):
            order = runs if rep % 2 == 0 else list(reversed(runs))
            for name, v in order:
                label = path_label(v, name)
                if label not in sets:
                    continue
                hubs = sets[label]
                started = time.monotonic()
                window = (
                    ProfileWindow(profile, hubs.hubs[0], _profile_key(sc, v))
                    if (profile and name == "tantra" and rep == 0)
                    else NO_WINDOW
                )
                try:
                    if not hubs.alive():
                        tails = [line for h in hubs.hubs for line in list(h.tail.lines)[-10:]]
                        raise RuntimeError("hub died:\n" + "\n".join(tails))
                    try:
                        r = PATH_TRIALS[v.load["kind"]](hubs, v, t, window)
                    finally:
                        window.end()
                except (RuntimeError, OSError, KeyError, ValueError) as e:
                    r = {"error": f"{type(e).__name__}: {e}"}
                r["elapsed_s"] = time.monotonic() - started
                res.trials.setdefault(label, []).append(r)
                log(f"   rep {rep + 1} {label:22s} " + brief(sc, r))
    finally:
        for hubs in sets.values():
            hubs.stop()
    res.variants = [path_label(v, n) for n, v in runs]
    return res


def _profile_key(sc: Scenario, v: Variant) -> Scenario:
    """A scenario stand-in whose key names the variant (profile file names)."""
    safe = re.sub(r"[^a-z0-9]+", "-", v.label.lower()).strip("-")
    return Scenario(f"{sc.key}-{safe}", f"{sc.title} — {v.label}", sc.kind, {})
