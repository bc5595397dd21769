"""Acks mean stored, on the real ``twistd -n tantra``: ``kill -9`` mid-stream loses no acked reading.

A device streams 10 000 readings with seq over raw TCP while a reader thread
collects the acks; the hub is killed with SIGKILL part-way. After a restart
on the same SQLite file, every acked seq is stored exactly once; the device
then re-sends everything (as a device that lost its acks would) and still
every seq is stored exactly once, since the de-duplication window is rebuilt
from the store at start-up. The window is set to cover all 10 000 seqs
(``--dedupe-size``): the guarantee for re-sends is "within the window".
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time

import pytest

from tests.support.hubproc import HubProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 10_000
DEVICE = "durable-1"


def line(seq: int) -> bytes:
    return b'{"device":"%s","sensor":"rpm","value":%d,"seq":%d}\n' % (DEVICE.encode(), seq, seq)


class Device:
    """One TCP connection: a sender and a thread that reads acks until the socket ends."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.acked: set[int] = set()
        self.errors: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *whole, buffer = buffer.split(b"\n")
            for raw in whole:
                reply = json.loads(raw)
                if "ack" in reply:
                    acks = reply["ack"]
                    self.acked.update(acks if isinstance(acks, list) else [acks])
                else:
                    self.errors.append(reply)

    def send(self, seqs, *, until=None) -> None:
        for start in range(0, len(seqs), 50):
            try:
                self.sock.sendall(b"".join(line(seq) for seq in seqs[start : start + 50]))
            except OSError:
                return
            if until is not None and until():
                return
            time.sleep(0.001)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self._reader.join(10)
        self.sock.close()


def stored_seqs(database) -> list[int]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT r.seq FROM reading r JOIN series s ON s.id = r.series WHERE s.device = ?",
            (DEVICE,),
        ).fetchall()
    return [seq for (seq,) in rows]


def test_kill_9_mid_stream_loses_no_acked_reading_and_resends_make_no_double(tmp_path):
    args = ("--store", "sqlite:history.sqlite3", "--dedupe-size", "16384")
    hub = HubProcess.start(tmp_path, *args)
    device = Device(hub.ports["tcp"])
    seqs = list(range(1, COUNT + 1))
    try:
        sender = threading.Thread(
            target=device.send, args=(seqs,), kwargs={"until": lambda: len(device.acked) >= 3000}
        )
        sender.start()
        device.wait_for(3000)
        hub.process.kill()  # kill -9, mid-stream: no goodbye, no flush
        hub.process.wait(10)
        sender.join(30)
    finally:
        device.close()
    acked_before_crash = set(device.acked)
    assert len(acked_before_crash) >= 3000, "the stream was under way when the hub died"
    assert not device.errors

    hub = HubProcess.start(tmp_path, *args)
    try:
        # Every reading acked before the crash is in the store, exactly once.
        stored = stored_seqs(tmp_path / "history.sqlite3")
        assert acked_before_crash <= set(stored)
        assert len(stored) == len(set(stored)), "no reading stored twice"

        # The device re-sends everything; the window rebuilt from the store keeps
        # what was stored from being stored again, and the rest is stored now.
        again = Device(hub.ports["tcp"])
        try:
            again.send(seqs)
            again.wait_for(COUNT, timeout=60)
        finally:
            again.close()
        assert again.acked == set(seqs)
        assert not again.errors
        assert hub.stats()["duplicates"] >= len(acked_before_crash)
    finally:
        assert hub.stop() in (0, -15, 143)
    stored = stored_seqs(tmp_path / "history.sqlite3")
    assert sorted(stored) == seqs, "every seq stored exactly once"
