"""The dashboard in a real browser: Debian's chromium driven by playwright-core.

Against a real ``twistd -n tantra``: the page shows readings sent over TCP,
its charts redraw, stale sensors are marked, the filters work, nothing is
requested from anywhere but the hub, no script error happens, and after the
hub restarts on the same ports the page reconnects and keeps updating.
Screenshots land in the test's tmp dir (one is copied to
/tmp/tantra-dashboard.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.clients import require, unavailable
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

BROWSER = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def expect(process: subprocess.Popen, word: str) -> None:
    line = process.stdout.readline().strip()
    if line != word:
        process.kill()
        _, err = process.communicate(timeout=10)
        pytest.fail(f"browser script said {line!r}, wanted {word!r}:\n{err}")


def tell(process: subprocess.Popen, word: str) -> None:
    process.stdin.write(word + "\n")
    process.stdin.flush()


def test_dashboard_in_chromium(tmp_path):
    node = require("node")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed (bash .ci/install-test-tools)")
    hub = HubProcess.start(tmp_path / "hub")
    shots = tmp_path / "screenshots"
    browser = subprocess.Popen(
        [
            node,
            str(BROWSER / "dashboard.js"),
            str(hub.ports["http"]),
            str(hub.ports["tcp"]),
            str(shots),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    try:
        expect(browser, "RESTART")
        hub.stop()
        tell(browser, "STOPPED")
        expect(browser, "START")
        hub = HubProcess.start(tmp_path / "hub", ports=hub.ports)
        tell(browser, "STARTED")
        out, err = browser.communicate(timeout=120)
        assert browser.returncode == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert summary["offsite"] == [] and summary["pageErrors"] == []
        assert summary["accepted"] >= 7
        for name in (
            "dashboard",
            "dashboard-filtered",
            "dashboard-reconnecting",
            "dashboard-after-restart",
        ):
            assert (shots / f"{name}.png").stat().st_size > 1000
        shutil.copy(shots / "dashboard.png", "/tmp/tantra-dashboard.png")
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.communicate(timeout=10)
        hub.stop()


def test_dashboard_sign_in_in_chromium(tmp_path, capsys):
    """With --auth: the login form, a refused token, a reader's scope, the saved token."""
    from tantra.cli import main as cli_main

    node = require("node")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        unavailable("playwright-core is not installed (bash .ci/install-test-tools)")
    auth = tmp_path / "auth.json"
    tokens = {}
    for name, args in (
        ("reader", ["--kind", "reader", "--scope", "farm-1/*"]),
        ("farm-1", ["--kind", "device"]),
        ("farm-2", ["--kind", "device"]),
    ):
        assert cli_main(["token", "add", "--auth", str(auth), *args, name]) == 0
        tokens[name] = json.loads(capsys.readouterr().out)["token"]
    hub = HubProcess.start(tmp_path / "hub", "--auth", str(auth))
    shots = tmp_path / "screenshots"
    try:
        done = subprocess.run(
            [
                node,
                str(BROWSER / "dashboard_auth.js"),
                str(hub.ports["http"]),
                str(hub.ports["tcp"]),
                str(shots),
                tokens["reader"],
                tokens["farm-1"],
                tokens["farm-2"],
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.splitlines()[-1])
        assert summary["offsite"] == [] and summary["pageErrors"] == []
        assert summary["stored"] is True and summary["storedAfterLogout"] is False
        assert summary["withToken"] == [
            "header /api/v1/aggregate",
            "header /api/v1/openapi.json",
            "header /stats",
            "socket",
        ]
        for name in ("dashboard-login", "dashboard-signed-in"):
            assert (shots / f"{name}.png").stat().st_size > 1000
        shutil.copy(shots / "dashboard-login.png", "/tmp/tantra-dashboard-login.png")
    finally:
        hub.stop()
    log = hub.log_text()
    for token in tokens.values():
        assert token not in log
