"""The real ``twistd -n tantra --mqtt`` on the real Mosquitto, with clients nobody here wrote.

``mosquitto_pub`` plays the devices, ``mosquitto_sub`` the late subscriber,
paho the MQTT clients that watch replies and readings, ``websockets`` the
dashboard. Each test has its own topic prefix and clears its retained
messages.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from tests.support.broker import (
    HOST,
    PORT,
    Collector,
    clear_retained,
    need_broker,
    random_prefix,
)
from tests.support.clients import TcpDevice, dashboard, drain, wait_for
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration


def pub(topic: str, payload: str, *extra: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", HOST, "-p", str(PORT), "-V", "5", "-q", "1",
         "-t", topic, "-m", payload, *extra],
        check=True, timeout=10,
    )  # fmt: skip


def scrape_metrics(hub) -> dict[str, dict[tuple, float]]:
    """``GET /metrics`` of a running hub, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{hub.host}:{hub.ports['http']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def bridged(tmp_path):
    need_broker()
    prefix = random_prefix()
    watcher = Collector(f"{prefix}/#", f"homeassistant/+/{prefix}/#")
    hub = HubProcess.start(
        tmp_path, "--mqtt", f"mqtt://{HOST}:{PORT}", "--mqtt-prefix", prefix, "--mqtt-discovery"
    )
    try:
        deadline_ok = False
        for _ in range(100):
            if hub.stats()["mqtt"]["state"] == "connected":
                deadline_ok = True
                break
            __import__("time").sleep(0.05)
        assert deadline_ok, hub.log_text()
        yield hub, prefix, watcher
    finally:
        try:
            hub.stop()
        finally:
            watcher.close()
            clear_retained(prefix)


def test_devices_in_readings_out_retained_discovery_acks_and_errors(bridged):
    hub, prefix, watcher = bridged
    with dashboard(hub.ws_url) as ws:
        pub(f"{prefix}/in/esp-1", '{"sensor":"temp","value":21.5,"unit":"C","seq":1}')
        pub(f"{prefix}/in/esp-1/hum", "55", "-D", "publish", "user-property", "unit", "%")
        pub(f"{prefix}/in/esp-1/door", "true", "-D", "publish", "user-property", "seq", "2")
        got = {(m["sensor"], m["value"]) for m in (wait_for(ws, lambda m: True)[0] for _ in "123")}
        assert got == {("temp", 21.5), ("hum", 55), ("door", True)}

    acks = watcher.wait(f"{prefix}/ack/esp-1", 2)
    assert sorted(json.loads(m.payload)["ack"] for m in acks) == [1, 2]
    readings = watcher.wait(f"{prefix}/reading/esp-1/", 3)
    by_topic = {m.topic: json.loads(m.payload) for m in readings}
    assert by_topic[f"{prefix}/reading/esp-1/hum"]["unit"] == "%"
    assert by_topic[f"{prefix}/reading/esp-1/temp"]["value"] == 21.5
    configs = watcher.wait("homeassistant/", 3)
    assert {m.topic for m in configs} == {
        f"homeassistant/sensor/{prefix}/esp-1_temp/config",
        f"homeassistant/sensor/{prefix}/esp-1_hum/config",
        f"homeassistant/binary_sensor/{prefix}/esp-1_door/config",
    }
    assert all(m.retain for m in watcher.on("homeassistant/")) is False  # live, not replayed

    # A late subscriber (mosquitto_sub) gets the last value of each sensor: retained.
    late = subprocess.run(
        ["mosquitto_sub", "-h", HOST, "-p", str(PORT), "-t", f"{prefix}/reading/#",
         "-C", "3", "-W", "5", "-v", "--retained-only"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert sorted(line.split(" ", 1)[0] for line in late) == sorted(by_topic)
    late_configs = subprocess.run(
        ["mosquitto_sub", "-h", HOST, "-p", str(PORT), "-t", f"homeassistant/+/{prefix}/#",
         "-C", "3", "-W", "5", "--retained-only"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert {json.loads(c)["state_topic"] for c in late_configs} == set(by_topic)
    stats = hub.stats()["mqtt"]
    assert stats["acks_sent"] == 2
    assert hub.readyz()[1]["checks"]["broker"] == {"ok": True, "reason": ""}
    metrics = scrape_metrics(hub)
    assert metrics["tantra_mqtt_up"][()] == 1
    assert metrics["tantra_mqtt_acks_sent_total"][()] == 2
    assert metrics["tantra_mqtt_readings_published_total"][()] == 3
    assert metrics["tantra_connections"][(("transport", "mqtt"),)] == 1
    assert stats["readings_published"] == 3
    assert stats["discovery_published"] == 3


def test_invalid_payloads_get_errors_and_a_good_device_alongside_loses_nothing(bridged):
    hub, prefix, watcher = bridged
    tcp = TcpDevice(hub.host, hub.ports["tcp"])
    with dashboard(hub.ws_url) as ws:
        bad = [
            (f"{prefix}/in/esp-2", "not json"),
            (f"{prefix}/in/esp-2", '{"sensor":"t"}'),
            (f"{prefix}/in/esp-2", '{"sensor":"t","value":1,"device":"someone-else"}'),
            (f"{prefix}/in/esp-2/t", '"hot"'),
            (f"{prefix}/in/esp-2/t/extra", "1"),
            (f"{prefix}/in/bad%name", "1"),
        ]
        for n, (topic, payload) in enumerate(bad):
            pub(topic, payload)
            tcp.send(b'{"device":"good","sensor":"s%d","value":%d,"seq":%d}\n' % (n, n, n + 1))
            assert tcp.reply() == {"ack": n + 1}
        pub(f"{prefix}/in/esp-2", '{"sensor":"ok","value":1,"seq":9}')
        watcher.wait(f"{prefix}/ack/esp-2", 1)
        received = drain(ws, quiet=0.5)
    errors = watcher.wait(f"{prefix}/error/esp-2", 4)
    assert [json.loads(m.payload)["error"] for m in errors] == [
        "invalid_json",
        "invalid_reading",
        "invalid_reading",
        "invalid_reading",
    ]
    assert "disagrees" in json.loads(errors[2].payload)["detail"]
    assert watcher.on(f"{prefix}/error/bad") == []  # no valid device: nowhere to answer
    assert sorted((m["device"], m["sensor"]) for m in received) == sorted(
        [("good", f"s{n}") for n in range(len(bad))] + [("esp-2", "ok")]
    )
    stats = hub.stats()
    assert stats["mqtt"]["rejected"] == {
        "invalid_json": 1,
        "invalid_reading": 3,
        "invalid_topic": 2,
    }
    assert stats["mqtt"]["errors_sent"] == 4
    assert stats["accepted"] == len(bad) + 1
