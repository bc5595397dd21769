"""autobahn-js (npm) joins a hub with ``--auth`` using WAMP-Ticket; anonymous and wrong tickets fail."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tantra.cli import main as cli_main
from tests.support.clients import TcpDevice
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

SCRIPT_DIR = Path(__file__).parent / "wamp_js"
NODE = shutil.which("node")


@pytest.mark.skipif(
    NODE is None or not (SCRIPT_DIR / "node_modules" / "autobahn").is_dir(),
    reason="needs node and autobahn-js: bash .ci/install-test-tools",
)
def test_autobahn_js_ticket(tmp_path, capsys):
    path = str(tmp_path / "auth.json")
    secrets = {}
    for args in (["--kind", "device", "pump"], ["--kind", "device", "other"],
                 ["--kind", "reader", "--scope", "pump/*", "ro"]):  # fmt: skip
        assert cli_main(["token", "add", "--auth", path, *args]) == 0
        added = json.loads(capsys.readouterr().out)
        secrets[added["name"]] = added["token"]
    hub = HubProcess.start(tmp_path, "--auth", path)
    try:
        for name in ("pump", "other"):
            device = TcpDevice(hub.host, hub.ports["tcp"])
            device.send(json.dumps({"auth": secrets[name]}).encode() + b"\n")
            device.reply()
            device.send(b'{"sensor":"flow","value":1,"seq":1}\n')
            assert device.reply() == {"ack": 1}
            device.close()
        url = f"ws://127.0.0.1:{hub.ports['http']}/wamp"
        done = subprocess.run(
            [NODE, "ticket.js", url, secrets["ro"]],
            cwd=SCRIPT_DIR,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout) == {
            "anonymous": "wamp.error.no_auth_method",
            "wrong": "wamp.error.authentication_failed",
            "authrole": "reader",
            "authid": "ro",
            "latest": ["pump"],
            "wide": "wamp.error.not_authorized",
        }
    finally:
        hub.stop()
