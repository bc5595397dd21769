"""Listeners are Twisted endpoint strings: TLS and UNIX sockets work as the README says,
and ``twist tantra`` runs the same plugin as ``twistd``."""

from __future__ import annotations

import datetime
import json
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.client import connect, unix_connect

from tests.support.clients import TcpDevice
from tests.support.hubproc import twistd_path

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"(http|tcp|udp) listening on (\S+)")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost (key.pem, cert.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def start(runner: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{runner}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [runner, *args], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    deadline = time.monotonic() + 20
    while b"Ready to receive" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(log.read_text(errors="replace"))
        time.sleep(0.05)
    return process, log


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(15)


def test_tls_and_unix_listeners_serve_the_same_dashboards(tmp_path):
    key, cert = self_signed(tmp_path)
    sock = tmp_path / "tantra.sock"
    process, log = start(
        twistd_path(), tmp_path, "-n", "--pidfile=", "tantra",
        "--http", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--http", f"unix:{sock}",
        "--tcp", "tcp:0:interface=127.0.0.1", "--udp", "none",
    )  # fmt: skip
    try:
        found = LISTENING.findall(log.read_text())
        (tls_address,) = [address for kind, address in found if kind == "http" and ":" in address]
        (tcp_address,) = [address for kind, address in found if kind == "tcp"]
        tls_port = int(tls_address.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with (
            connect(f"wss://127.0.0.1:{tls_port}/", ssl=context, open_timeout=5) as secure,
            unix_connect(str(sock), "ws://localhost/", open_timeout=5) as local,
        ):
            device = TcpDevice("127.0.0.1", int(tcp_address.rsplit(":", 1)[1]))
            device.send(b'{"device":"tls-test","sensor":"a","value":7}\n')
            assert json.loads(secure.recv(timeout=5))["value"] == 7
            assert json.loads(local.recv(timeout=5))["value"] == 7
            device.close()
    finally:
        status = stop(process)
    assert status in (0, -signal.SIGTERM)


def test_twist_runs_the_same_plugin(tmp_path):
    twist = str(Path(twistd_path()).with_name("twist"))
    process, log = start(
        # twist writes JSON log lines when its output is not a terminal
        twist, tmp_path, "--log-format=text", "tantra", "--http", "tcp:0:interface=127.0.0.1",
        "--tcp", "tcp:0:interface=127.0.0.1", "--udp", "none",
    )  # fmt: skip
    (http,) = [address for kind, address in LISTENING.findall(log.read_text()) if kind == "http"]
    with connect(f"ws://{http}/", open_timeout=5) as ws:
        ws.send('{"device":"twist-test","sensor":"a","value":1}')
        assert json.loads(ws.recv(timeout=5))["device"] == "twist-test"
    status = stop(process)
    assert status in (0, -signal.SIGTERM)
    assert "Traceback" not in log.read_text()
