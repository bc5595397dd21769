"""One Counters object: every part counts into it, and /stats serves it."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.counters import Counters
from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory
from tantra.wamp import build_wamp
from tantra.web.site import StatsResource


def test_every_part_counts_into_the_object_it_was_given():
    counters, clock = Counters(), Clock()
    hub = Hub(clock, counters=counters)
    wamp, _ = build_wamp(hub, clock, realm="tantra")
    parts = [
        DashboardFactory(hub, clock),
        DeviceLineFactory(hub, clock, max_line=100, idle_timeout=1),
        DeviceDatagramProtocol(hub, clock, error_rate=1),
        wamp,
    ]
    assert hub.stats is counters.hub
    assert wamp.router.stats is counters.wamp
    assert all(part.counters is counters for part in parts)
    hub.ingest(b'{"sensor":"a","value":"x"}', default_device="d")
    assert counters.hub.rejected == {"invalid_reading": 1}


def test_as_dict_is_the_hub_section_with_the_others_by_name():
    counters = Counters()
    counters.hub.accepted = 3
    counters.wamp.calls = 2
    out = counters.as_dict()
    assert out["accepted"] == 3 and out["rejected_total"] == 0
    assert out["wamp"]["calls"] == 2 and out["wamp"]["errors_sent"] == {}


def test_stats_serves_the_counters_and_the_live_gauges():
    clock = Clock()
    hub = Hub(clock)
    hub.counters.wamp.sessions_opened = 4
    resource = StatsResource(hub, DashboardFactory(hub, clock))
    body = json.loads(resource.render(DummyRequest([b""])))
    assert body["wamp"]["sessions_opened"] == 4
    assert body["dashboards"] == 0 and body["subscribers"] == 0 and body["accepted"] == 0
