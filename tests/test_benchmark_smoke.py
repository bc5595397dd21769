"""Keep the benchmark from rotting: one tiny run of a few scenarios.

Runs ``python -m benchmarks --smoke`` (about ten seconds) against whichever
hubs this machine has: Tantra (always, when installed) and the Node.js
reference relay (when ``node``/``npm`` exist and its ``npm ci`` works).
Checks only that every trial ran and produced numbers: no timed assertions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [
    "fanout-10",
    "fanout-1000-tick1",  # with the C relay (the physical limit) as a third hub
    "rate-100x200",
    "ingest-tcp",
    "idle-1000",
    "reconnect-1000",
    "stall-1000x50",
]


def _targets() -> list[str]:
    targets = ["tantra"]
    if shutil.which("cc") or shutil.which("gcc"):
        targets.append("limit")  # benchmarks/loadgen/wsrelay.c
    if shutil.which("node") and shutil.which("npm"):
        ref = ROOT / "benchmarks" / "reference"
        if not (ref / "node_modules" / "ws").is_dir():
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=ref,
                capture_output=True,
                timeout=300,
            )
            if done.returncode != 0:
                return targets
        targets.append("reference")
    return targets


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_benchmark_smoke_run(tmp_path: Path) -> None:
    targets = _targets()
    cmd = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)]
    for s in SCENARIOS:
        cmd += ["-s", s]
    for t in targets:
        cmd += ["-t", t]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.md").read_text().startswith("Run ")
    by_key = {s["key"]: s for s in result["scenarios"]}
    assert set(by_key) == set(SCENARIOS)
    for key, scenario in by_key.items():
        for target in targets:
            trials = scenario["trials"].get(target)
            if trials is None:
                assert target not in scenario["targets"] or target in scenario["skipped"]
                continue
            errors = [t["error"] for t in trials if "error" in t]
            assert not errors, (key, target, errors)
    assert by_key["fanout-10"]["medians"]["tantra"]["deliveries_per_s"] > 0
    assert by_key["ingest-tcp"]["medians"]["tantra"]["readings_per_s"] > 0
    assert by_key["idle-1000"]["medians"]["tantra"]["rss_mb"] > 0
    assert by_key["rate-100x200"]["medians"]["tantra"]["lat_samples"] > 0
    assert by_key["reconnect-1000"]["medians"]["tantra"]["reconnected"] > 0
    if "limit" in targets:
        assert by_key["fanout-1000-tick1"]["medians"]["limit"]["deliveries_per_s"] > 0
    if "reference" in targets:
        assert by_key["fanout-10"]["medians"]["reference"]["deliveries_per_s"] > 0
