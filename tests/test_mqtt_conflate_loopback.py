"""A flood of readings through the real hub to the real Mosquitto: every retained topic ends newest.

The hub (``twistd -n tantra --mqtt``) gets far more readings per turn than its
QoS 1 window (100) takes, over TCP and over MQTT; ``mosquitto_sub`` (a late,
retained-only subscriber) and a paho subscriber must then see, for every
sensor, the last value sent, and the MQTT device every ack, in order. Each
test has its own topic prefix and clears its retained messages. Loops are
bounded by deadlines.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.support.broker import HOST, PORT, Collector, clear_retained, need_broker, random_prefix
from tests.support.clients import TcpDevice
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

SENSORS = ("t0", "t1", "t2", "t3")
#: Readings per batch: each batch (one hub turn) is four times the window.
PER_SENSOR = 100


def wait_until(condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def batch(first: int, *, device: str | None = None, seq: int | None = None) -> bytes:
    """``PER_SENSOR`` readings of each sensor, values ``first``, ``first + 1``, ... in order."""
    readings = []
    for n in range(PER_SENSOR):
        for sensor in SENSORS:
            reading = {"sensor": sensor, "value": first + n}
            if device is not None:
                reading["device"] = device
            readings.append(reading)
    if seq is not None:
        readings[-1]["seq"] = seq
    return json.dumps(readings, separators=(",", ":")).encode()


def retained(prefix: str, count: int) -> dict[str, dict]:
    lines = subprocess.run(
        ["mosquitto_sub", "-h", HOST, "-p", str(PORT), "-t", f"{prefix}/reading/#",
         "-C", str(count), "-W", "10", "-v", "--retained-only"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout.splitlines()  # fmt: skip
    return {topic: json.loads(payload) for topic, payload in (line.split(" ", 1) for line in lines)}


@pytest.fixture
def flooded_hub(tmp_path):
    need_broker()
    prefix = random_prefix()
    hub = HubProcess.start(
        tmp_path, "--mqtt", f"mqtt://{HOST}:{PORT}", "--mqtt-prefix", prefix, "--store", "none"
    )
    try:
        wait_until(lambda: hub.stats()["mqtt"]["state"] == "connected", 10, hub.log_text())
        yield hub, prefix
    finally:
        try:
            hub.stop()
        finally:
            clear_retained(prefix)


def test_a_tcp_flood_leaves_every_retained_topic_on_its_last_value(flooded_hub):
    hub, prefix = flooded_hub
    live = Collector(f"{prefix}/reading/#")
    try:
        device = TcpDevice(hub.host, hub.ports["tcp"])
        batches = 50
        device.send(b"".join(batch(b * PER_SENSOR, device="flood") + b"\n" for b in range(batches)))
        total = batches * PER_SENSOR * len(SENSORS)
        last = batches * PER_SENSOR - 1

        def drained() -> bool:
            stats = hub.stats()
            return stats["accepted"] == total and stats["mqtt"]["readings_held"] == 0

        wait_until(drained, 60, "all readings accepted and nothing held")
        topics = {f"{prefix}/reading/flood/{s}" for s in SENSORS}
        # The live subscriber's last message per topic is the newest value...
        wait_until(
            lambda: (
                {m.topic: json.loads(m.payload)["value"] for m in live.on(f"{prefix}/reading/")}
                == dict.fromkeys(topics, last)
            ),
            20,
            "the live subscriber's last values",
        )
        # ... each topic's values arrived in order (conflated, never reordered) ...
        for topic in topics:
            values = [json.loads(m.payload)["value"] for m in live.on(topic)]
            assert values == sorted(values) and values[-1] == last
        # ... and a late subscriber gets it retained.
        assert {t: r["value"] for t, r in retained(prefix, len(SENSORS)).items()} == dict.fromkeys(
            topics, last
        )
        stats = hub.stats()["mqtt"]
        # Each batch was four windows' worth: most readings were conflated, none lost.
        assert stats["readings_conflated"] > total // 2
        assert stats["readings_published"] + stats["readings_conflated"] == total
        assert stats["publish_dropped"] == {}
        device.close()
    finally:
        live.close()


def test_an_mqtt_flood_gets_every_ack_in_order_and_the_newest_values(flooded_hub):
    hub, prefix = flooded_hub
    watcher = Collector(f"{prefix}/ack/#", f"{prefix}/reading/#")
    try:
        batches = 40
        for b in range(batches):
            watcher.client.publish(
                f"{prefix}/in/mq", batch(b * PER_SENSOR, seq=b + 1), qos=1
            ).wait_for_publish(10)
        acks = watcher.wait(f"{prefix}/ack/mq", batches, timeout=30)
        # Every ack, each its own message, in order: replies are never conflated.
        assert [json.loads(m.payload)["ack"] for m in acks] == [[b + 1] for b in range(batches)]
        last = batches * PER_SENSOR - 1
        wait_until(lambda: hub.stats()["mqtt"]["readings_held"] == 0, 30, "nothing held")
        topics = {f"{prefix}/reading/mq/{s}" for s in SENSORS}
        assert {t: r["value"] for t, r in retained(prefix, len(SENSORS)).items()} == dict.fromkeys(
            topics, last
        )
        stats = hub.stats()["mqtt"]
        assert stats["acks_sent"] == batches
        assert stats["readings_conflated"] > 0
        assert stats["publish_dropped"] == {}
    finally:
        watcher.close()
