"""Run the real ``twistd -n tantra`` as a subprocess on loopback ports chosen by the OS.

Integration tests talk to it with real clients, exactly as a user would. The
ports are read from the hub's own start-up log lines
(``http listening on 127.0.0.1:PORT``), so nothing here guesses a free port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LISTENING = re.compile(rb"\b(http|tcp|udp) listening on ([0-9.]+):(\d+)")
READY = b"Ready to receive"


def twistd_path() -> str:
    """The ``twistd`` script of the interpreter running the tests."""
    candidate = Path(sys.executable).with_name("twistd")
    return str(candidate) if candidate.exists() else "twistd"


class HubProcess:
    """A running hub subprocess with its ports, log and a clean way to stop it."""

    def __init__(self, process: subprocess.Popen, log_path: Path, ports: dict[str, int]):
        self.process = process
        self.log_path = log_path
        self.ports = ports
        self.host = "127.0.0.1"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *extra_args: str,
        ports: dict[str, int] | None = None,
        timeout: float = 20.0,
    ) -> HubProcess:
        """Start the hub; ``ports`` pins http/tcp/udp (e.g. to restart on the same ones)."""
        ports = ports or {}
        args = [
            twistd_path(),
            "-n",
            "--pidfile=",
            "tantra",
            "--http",
            f"tcp:{ports.get('http', 0)}:interface=127.0.0.1",
            "--tcp",
            f"tcp:{ports.get('tcp', 0)}:interface=127.0.0.1",
            "--udp",
            str(ports.get("udp", 0)),
            "--udp-interface",
            "127.0.0.1",
            *extra_args,
        ]
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / f"hub-{time.monotonic_ns()}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - the child owns it until it exits
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log_path.read_bytes()
            if READY in text:
                found = {kind.decode(): int(port) for kind, _, port in LISTENING.findall(text)}
                return cls(process, log_path, found)
            if process.poll() is not None:
                break
            time.sleep(0.05)
        process.kill()
        process.wait(5)
        raise RuntimeError(f"hub did not start:\n{log_path.read_text(errors='replace')}")

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ports['http']}/"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stats(self, token: str | None = None) -> dict:
        """The hub's counters from ``GET /stats`` (with ``--auth``: an operator ``token``)."""
        url = f"http://{self.host}:{self.ports['http']}/stats"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def readyz(self) -> tuple[int, dict]:
        """``GET /readyz``: the status code (200 or 503) and the JSON body."""
        url = f"http://{self.host}:{self.ports['http']}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def rss_kib(self) -> int:
        """Resident memory of the hub process, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit status (kills it if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise
        return self.process.returncode
