"""The HTTP tree: status page, /stats, WebSocket routing and query filters."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.hub import Filter, Hub
from tantra.model import Reading
from tantra.transports.dashboard import DashboardFactory, encode_text_frames, filter_from_query
from tantra.web.site import build_site, is_websocket_upgrade


@pytest.fixture
def site():
    clock = Clock()
    hub = Hub(clock)
    return build_site(hub, DashboardFactory(hub, clock))


def render(site, path: bytes, headers: dict[bytes, bytes] | None = None):
    request = DummyRequest(path.strip(b"/").split(b"/") if path != b"/" else [b""])
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    resource = site.getResourceFor(request)
    return resource, request


def test_browser_gets_status_page_at_root(site):
    resource, request = render(site, b"/")
    body = resource.render(request)
    assert b"Tantra telemetry hub" in body
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]


def test_stats_are_json(site):
    resource, request = render(site, b"/stats")
    stats = json.loads(resource.render(request))
    assert stats["accepted"] == 0 and stats["dashboards"] == 0 and "version" in stats


def test_unknown_path_is_404_but_websocket_on_any_path(site):
    resource, request = render(site, b"/nope")
    resource.render(request)
    assert request.responseCode == 404
    upgrade = {b"upgrade": b"websocket"}
    ws_root, _ = render(site, b"/", upgrade)
    ws_other, _ = render(site, b"/legacy/path", upgrade)
    from autobahn.twisted.resource import WebSocketResource

    assert isinstance(ws_root, WebSocketResource)
    assert ws_other is ws_root


def test_upgrade_header_is_case_insensitive():
    request = DummyRequest([b""])
    request.requestHeaders.setRawHeaders(b"upgrade", [b"WebSocket"])
    assert is_websocket_upgrade(request)


def test_query_filters():
    assert filter_from_query({}) == Filter()
    assert filter_from_query({"device": ["farm-1", "farm-2"], "sensor": ["soil"]}) == Filter(
        frozenset({"farm-1", "farm-2"}), frozenset({"soil"})
    )
    with pytest.raises(ValueError, match="unknown query parameter"):
        filter_from_query({"devcie": ["x"]})
    with pytest.raises(ValueError, match="device filter 'a b' must be"):
        filter_from_query({"device": ["a b"]})
    with pytest.raises(ValueError, match="sensor filter '' must be"):
        filter_from_query({"sensor": [""]})


def test_frames_are_plain_text_frames_one_per_reading():
    readings = [Reading("d", "s", 1, 5), Reading("d", "t", 2, 5)]
    data = encode_text_frames(readings)
    first = readings[0].json
    assert data[0] == 0x81 and data[1] == len(first) and data[2 : 2 + len(first)] == first
    second = data[2 + len(first) :]
    assert second[0] == 0x81 and second[2:] == readings[1].json


def test_stats_sections_are_added_by_name():
    from tantra.web.site import StatsResource

    clock = Clock()
    hub = Hub(clock)
    resource = StatsResource(hub, DashboardFactory(hub, clock), {"wamp": lambda: {"calls": 3}})
    request = DummyRequest([b""])
    assert json.loads(resource.render(request))["wamp"] == {"calls": 3}


def test_compact_send_queue_keeps_fifo_order():
    from tantra.transports.dashboard import _SendQueue

    queue = _SendQueue()
    queue.append((b"a", False))
    queue.append((b"b", True))
    assert len(queue) == 2
    assert queue.popleft() == (b"a", False)
    assert queue.popleft() == (b"b", True)
    assert len(queue) == 0
