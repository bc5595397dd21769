"""History settings and wiring: --store/--commit-interval/--retention, and the real twistd hub."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from twisted.internet.testing import MemoryReactorClock

from tantra.settings import SettingsError, resolve
from tantra.store.sink import StoreService
from tantra.tap import build_service
from tests.support.hubproc import HubProcess


def test_history_defaults_and_values():
    settings = resolve({}, {})
    assert settings.store == "sqlite:tantra.sqlite3"
    assert settings.commit_interval == 10.0 and settings.retention is None
    custom = resolve(
        {"store": "postgresql://u@db/h", "commit-interval": "25", "retention": "30d"}, {}
    )
    assert custom.store == "postgresql://u@db/h" and custom.commit_interval == 25.0
    assert custom.retention == 30 * 86_400_000
    assert resolve({"store": "none"}, {}).store is None
    assert resolve({}, {"retention": "12h"}).retention == 12 * 3_600_000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("store", "mysql://x", "--store: 'mysql://x' is not a store"),
        ("store", "sqlite:", "--store: 'sqlite:' is not a store"),
        ("retention", "30", "--retention: '30' is not a duration"),
        ("retention", "0d", "--retention: '0d' is not a duration"),
        ("commit-interval", "-1", "--commit-interval: '-1' must be at least 0"),
    ],
)
def test_bad_history_settings_name_the_option(name, value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        resolve({name: value}, {})


def test_the_store_is_a_child_service_only_when_configured():
    with_store = build_service(resolve({"udp": "none"}, {}), MemoryReactorClock())
    assert type(next(iter(with_store))) is StoreService  # opens before listeners
    without = build_service(resolve({"udp": "none", "store": "none"}, {}), MemoryReactorClock())
    assert not any(isinstance(child, StoreService) for child in without)


def get_json(hub: HubProcess, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.ports['http']}{path}", timeout=5) as r:
        return json.load(r)


@pytest.mark.integration
def test_twistd_stores_what_devices_send_and_serves_it_back(hub_process):
    assert "history stored in SQLite" in hub_process.log_text()
    with socket.create_connection(("127.0.0.1", hub_process.ports["tcp"]), timeout=5) as conn:
        conn.sendall(b'{"device":"hist-1","sensor":"t","value":21.5,"unit":"C","seq":1}\n')
        assert json.loads(conn.makefile().readline()) == {"ack": 1}
    deadline = time.monotonic() + 10
    while True:
        page = get_json(hub_process, "/api/v1/readings?device=hist-1")
        if page["readings"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (reading,) = page["readings"]
    assert {k: reading[k] for k in ("device", "sensor", "value", "unit", "seq")} == {
        "device": "hist-1", "sensor": "t", "value": 21.5, "unit": "C", "seq": 1,
    }  # fmt: skip
    stats = get_json(hub_process, "/stats")["store"]
    assert stats["state"] == "ok" and stats["stored"] >= 1 and stats["shed"] == 0
