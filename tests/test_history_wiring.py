"""History settings and wiring: --store/--commit-interval/--retention, and the real twistd hub."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from tantra.lifecycle import IGoodbye
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


def test_history_settings_live_in_the_store_table():
    settings = resolve({}, {"store": {"url": "none", "commit-interval": 5, "retention": "2w"}})
    assert settings.store is None and settings.commit_interval == 5.0
    assert settings.retention == 14 * 86_400_000


def test_the_store_is_a_child_service_counting_into_counters_only_when_configured(tmp_path):
    url = f"sqlite:{tmp_path / 'h.sqlite3'}"
    with_store = build_service(resolve({"udp": "none", "store": url}, {}), MemoryReactorClock())
    (store_service,) = [c for c in with_store if isinstance(c, StoreService)]
    assert store_service.store.counters is with_store.hub.counters.store
    assert with_store.hub.counters.as_dict()["store"]["where"].startswith("SQLite")
    assert with_store.http_root is not None and b"api" in with_store.http_root.children
    without = build_service(resolve({"udp": "none", "store": "none"}, {}), MemoryReactorClock())
    assert not any(isinstance(child, StoreService) for child in without)
    assert "store" not in without.hub.counters.as_dict()
    # With nothing to commit, an ack waits for the broadcast instead.
    assert without.hub.ingest(b'{"sensor":"a","value":1,"seq":1}', default_device="d").settled


@implementer(IGoodbye)
class LastWords:
    """A component whose client sends one more reading while it is let go of."""

    def __init__(self, hub):
        self.hub = hub

    def go_away(self):
        self.hub.ingest(b'{"sensor":"last","value":2}', default_device="bye")
        return defer.succeed(None)


@pytest_twisted.ensureDeferred
async def test_readings_pending_at_stop_and_sent_during_goodbyes_are_stored(tmp_path):
    url = f"sqlite:{tmp_path / 'h.sqlite3'}"
    settings = resolve({"http": "none", "tcp": "none", "udp": "none", "store": url}, {})
    top = build_service(settings, reactor)
    top.add_component("last-words", LastWords(top.hub))
    top.startService()
    top.hub.ingest(b'{"sensor":"pending","value":1}', default_device="bye")  # not yet flushed
    await top.stopService().addTimeout(10, reactor)
    with sqlite3.connect(tmp_path / "h.sqlite3") as conn:
        stored = conn.execute(
            "SELECT s.sensor FROM reading r JOIN series s ON s.id = r.series ORDER BY r.id"
        ).fetchall()
    assert stored == [("pending",), ("last",)]
    assert top.hub.counters.store.stored == 2 and top.hub.counters.store.state == "stopped"


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
