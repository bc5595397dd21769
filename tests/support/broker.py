"""The MQTT broker of the loopback tests: Mosquitto on 127.0.0.1:1883, or a private one.

Each test takes its own random topic prefix, so tests never see each other's
messages on the shared broker, and clears the retained messages it left.
A test that must restart a broker starts a private ``mosquitto`` on a free
port (:class:`PrivateBroker`), never the shared one.
"""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.clients import require

HOST = "127.0.0.1"
PORT = 1883


def broker_up(port: int = PORT) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def need_broker() -> None:
    """Fail (not skip): ``.ci/run`` starts Mosquitto, so a missing broker is a broken setup."""
    require("mosquitto_pub")
    if not broker_up():
        pytest.fail(
            "no MQTT broker on 127.0.0.1:1883: run"
            " `mosquitto -d -c /etc/mosquitto/mosquitto.conf` (.ci/run does)"
        )


def random_prefix() -> str:
    return f"test-{secrets.token_hex(4)}"


class Collector:
    """A paho client (threaded: it is the test's client, not the hub's) that records messages."""

    def __init__(self, *topics: str, port: int = PORT, no_local: bool = False):
        self.messages: list[paho.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self._topics = topics
        self.client.on_connect = lambda *args: self.client.subscribe([(t, 1) for t in topics])
        self.client.connect(HOST, port)
        self.client.loop_start()
        if topics and not self._subscribed.wait(5):
            raise AssertionError("the collector could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(message)

    def on(self, prefix: str) -> list[paho.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def wait(self, prefix: str, count: int, timeout: float = 10.0) -> list[paho.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.on(prefix)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        found = self.on(prefix)
        raise AssertionError(f"{len(found)} of {count} messages on {prefix} within {timeout}s")

    def publish(self, topic: str, payload: bytes, **kwargs) -> None:
        self.client.publish(topic, payload, qos=1, **kwargs).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def clear_retained(prefix: str, port: int = PORT) -> None:
    """Remove the retained messages under ``prefix/#`` and the discovery configs of node ``prefix``."""
    topics = [f"{prefix}/#", f"homeassistant/+/{prefix.replace('/', '_')}/#"]
    found = subprocess.run(
        ["mosquitto_sub", "-h", HOST, "-p", str(port), "--retained-only", "-W", "1", "-v",
         "-F", "%t", "-t", topics[0], "-t", topics[1]],
        capture_output=True, text=True, timeout=10,
    ).stdout.split()  # fmt: skip
    for topic in found:
        subprocess.run(
            ["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", topic, "-r", "-n"], timeout=5
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class PrivateBroker:
    """A ``mosquitto`` of this test only, on a free port, with persistence so it can restart."""

    def __init__(self, workdir: Path):
        self.binary = require("mosquitto")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\n"
            # As root mosquitto drops to user "mosquitto", which cannot write
            # the test's directory: no persistence, sessions lost on restart.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while not broker_up(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("the private mosquitto did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"
