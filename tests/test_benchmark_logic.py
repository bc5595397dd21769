"""Pure parts of the benchmark harness (no processes, no sockets)."""

from __future__ import annotations

from benchmarks import harness
from benchmarks.__main__ import select

NETSTAT = (
    "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\n"
    "TcpExt: 3 0 120 125\n"
    "IpExt: InNoRoutes InOctets\n"
    "IpExt: 0 987654321\n"
)


def test_parse_netstat_pairs_names_with_values_per_group():
    got = harness.parse_netstat(NETSTAT)
    assert got["TcpExt.ListenOverflows"] == 120
    assert got["TcpExt.SyncookiesSent"] == 3
    assert got["IpExt.InOctets"] == 987654321
    assert harness.parse_netstat("TcpExt: A\nIpExt: 1\n") == {}  # mismatched pair: skipped


def _opened(**kw):
    base = dict(ok=10, refused=0, reset=0, timeout=0, other=0, all_open_s=1.5)
    base.update(p50_ms=5.0, p99_ms=900.0, max_ms=1400.0)
    base.update(kw)
    return base


def test_reconnect_summary_counts_kernel_drops_between_snapshots():
    before = harness.parse_netstat(NETSTAT)
    after = dict(before, **{"TcpExt.ListenOverflows": 130})
    out = harness.reconnect_summary(_opened(), before, after)
    assert out["all_open_s"] == 1.5 and out["not_reconnected"] == 0
    assert out["listen_overflows"] == 10 and out["syncookies_sent"] == 0
    assert out["req_q_full_drops"] is None  # not in this kernel's file


def test_reconnect_summary_has_no_all_open_time_when_some_failed():
    out = harness.reconnect_summary(_opened(ok=7, refused=2, timeout=1), {}, {})
    assert out["all_open_s"] is None
    assert (out["not_reconnected"], out["refused"], out["timed_out"]) == (3, 2, 1)
    assert out["last_open_s"] == 1.5


def test_long_scenarios_run_only_with_full_or_by_name():
    all_sc = harness.scenarios()
    quick = {sc.key for sc in select(all_sc, [], full=False)}
    full = {sc.key for sc in select(all_sc, [], full=True)}
    assert "reconnect-10000" not in quick and "reconnect-10000" in full
    assert "idle-10000" in full and "rate-10000x10" in full and "fanout-1000-tick1" in quick
    assert [sc.key for sc in select(all_sc, ["*-10000*"], full=False)] == [
        "idle-10000",
        "rate-10000x10",
        "reconnect-10000",
    ]


def test_tick1_is_measured_against_the_physical_limit():
    (tick1,) = [sc for sc in harness.scenarios() if sc.key == "fanout-1000-tick1"]
    assert "limit" in tick1.targets
    assert "deliveries_per_cpu_s" in {m[0] for m in tick1.metrics}
