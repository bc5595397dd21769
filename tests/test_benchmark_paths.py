"""The new-path benchmark scenarios (issue 14, item 5): their ack counting, and one tiny run.

The device load generator (``benchmarks.load dev``) counts acks and times
send -> ack from the reply lines; that parsing is checked here without
sockets. The smoke run starts real hubs (SQLite, and PostgreSQL / Mosquitto
when this machine has them; else those variants are skipped with a reason)
and checks only that every trial ran and produced numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.load import SeqConn, SeqSender, Window

ROOT = Path(__file__).resolve().parent.parent


def sender(mode: str = "max", window: int = 100, batch: int = 10) -> SeqSender:
    args = SimpleNamespace(mode=mode, window=window, batch=batch, lat_every=1)
    win = Window()
    win.m0, win.m1 = 0, 1 << 62
    s = SeqSender(args, win)
    s.t_end = 1 << 62
    s.running = True
    return s


def test_batch_acks_settle_the_window_and_time_every_sampled_payload():
    s = sender()
    conn = SeqConn("bench-dev-0", 1000, sensors=3)
    conn.write = lambda data: None
    payloads = []
    conn.write_many = payloads.extend
    s.conns.append(conn)
    s.pump(conn)  # fills the window: 10 payloads of 10
    assert conn.inflight == 100 and len(payloads) == 10
    batch = json.loads(payloads[0])
    assert [r["seq"] for r in batch] == list(range(1001, 1011))
    assert {r["device"] for r in batch} == {"bench-dev-0"}
    s.reply(conn, b'{"ack":[' + b",".join(b"%d" % q for q in range(1001, 1011)) + b"]}", pump=False)
    assert (s.acked, conn.inflight, len(s.lat)) == (10, 90, 1)
    s.reply(conn, b'{"ack":1011}', pump=False)  # a single ack settles the samples up to it only
    assert (s.acked, len(s.lat), len(conn.samples)) == (11, 1, 9)
    s.reply(conn, b'{"error":"rate_limited","detail":"x"}', pump=False)
    assert s.errors == 1 and s.error_sample.startswith('{"error":"rate_limited"')
    s.reply(conn, b'{"ack":[1012,1013,1014,1015,1016,1017,1018,1019,1020]}')  # and refills
    # 79 in flight after 10 + 1 + 9 acks and 1 error: two more payloads fit the window
    assert len(s.lat) == 2 and conn.inflight == 99 and len(payloads) == 12


def test_a_single_reading_payload_is_an_object_not_a_batch():
    conn = SeqConn("d-1", 0, sensors=1)
    one = json.loads(conn.payload(1, 123, sample=False))
    assert one == {"device": "d-1", "sensor": "s0", "value": 123, "seq": 1}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_new_path_scenarios_smoke_run(tmp_path: Path) -> None:
    scenarios = ["store-acked", "ack-latency", "auth-tcp", "cluster-latency"]
    cmd = [sys.executable, "-m", "benchmarks", "--smoke", "-t", "tantra", "--out", str(tmp_path)]
    for s in scenarios:
        cmd += ["-s", s]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    by_key = {s["key"]: s for s in result["scenarios"]}
    assert set(by_key) == set(scenarios)
    for key, scenario in by_key.items():
        for variant, trials in scenario["trials"].items():
            errors = [t["error"] for t in trials if "error" in t]
            assert not errors, (key, variant, errors)
    acked = by_key["store-acked"]["medians"]
    assert acked["store none"]["readings_per_s"] > 0 and acked["sqlite"]["readings_per_s"] > 0
    assert acked["sqlite"]["shed"] == 0  # acks count committed readings, none shed
    assert by_key["ack-latency"]["medians"]["sqlite"]["lat_samples"] > 0
    assert by_key["auth-tcp"]["medians"]["auth on"]["readings_per_s"] > 0
    assert "New paths" in (tmp_path / "latest.md").read_text()
