"""Small blocking clients for loopback tests: a WebSocket dashboard, a TCP and a UDP device.

The WebSocket side is the ``websockets`` library (nobody on this team wrote
it); TCP and UDP are plain sockets, as a device's firmware would use them.
Every call has a timeout, so a broken hub fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0


def unavailable(message: str) -> None:
    """Skip a test whose external client is missing locally; under CI that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install it: see .ci/run)")
    pytest.skip(message)


def require(tool: str) -> str:
    """Path of an external program, or skip/fail as :func:`unavailable` says."""
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed")
    return path


def dashboard(url: str) -> ClientConnection:
    return connect(url, open_timeout=TIMEOUT, close_timeout=2, max_size=2**22)


def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def drain(ws: ClientConnection, quiet: float = 0.3) -> list[dict]:
    """Everything the dashboard receives until it has been quiet for ``quiet`` seconds."""
    received = []
    while True:
        try:
            received.append(json.loads(ws.recv(timeout=quiet)))
        except TimeoutError:
            return received


def wait_for(ws: ClientConnection, predicate, timeout: float = TIMEOUT) -> tuple[dict, list[dict]]:
    """Receive until ``predicate(message)``; returns it and everything before it."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching message within {timeout}s; got {seen[-5:]}")
        message = recv_json(ws, remaining)
        if predicate(message):
            return message, seen
        seen.append(message)


class TcpDevice:
    """A device on raw TCP: send lines, read reply lines."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by hub; unread: {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def is_closed_by_peer(self, timeout: float = TIMEOUT) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self._buffer += chunk
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


class UdpDevice:
    def __init__(self, host: str, port: int):
        self.address = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.address)

    def reply(self, timeout: float = TIMEOUT) -> bytes:
        self.sock.settimeout(timeout)
        data, source = self.sock.recvfrom(65536)
        assert source == self.address
        return data

    def no_reply(self, timeout: float = 0.3) -> bool:
        try:
            self.reply(timeout)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()
