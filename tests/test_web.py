"""The HTTP tree: status page, /stats, WebSocket routing and query filters."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
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


# -- the deadline on a request's headers (tantra.web.deadline) -----------------


def open_http(clock):
    """A hub's site and one HTTP connection to it on a StringTransport, on ``clock``."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    hub = Hub(clock)
    site = build_site(hub, DashboardFactory(hub, clock))
    channel = site.buildProtocol(IPv4Address("TCP", "10.0.0.9", 40000))
    channel.callLater = clock.callLater
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 40000))
    transport.protocol = channel  # as on a TCP transport: a WebSocket upgrade takes it over
    channel.makeConnection(transport)
    return hub, channel, transport


def test_headers_trickled_to_dodge_the_idle_timeout_meet_the_header_deadline():
    """Slowloris: a byte every 10 s keeps Twisted's 60 s idle timer alive for ever."""
    from tantra.web.deadline import HEADER_DEADLINE

    clock = Clock()
    hub, channel, transport = open_http(clock)
    channel.dataReceived(b"GET /stats HTTP/1.1\r\n")
    for _ in range(int(HEADER_DEADLINE // 10) - 1):
        clock.advance(10)
        channel.dataReceived(b"X")
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(10)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert json.loads(body) == {
        "error": "request_timeout",
        "detail": f"the request's headers did not arrive within {HEADER_DEADLINE:g} s",
    }
    assert transport.disconnecting
    assert hub.stats.clients_dropped == {"header_timeout": 1}


def test_a_prompt_request_and_an_idle_keep_alive_are_not_cut_by_the_header_deadline():
    from tantra.web.deadline import HEADER_DEADLINE
    from tantra.web.site import HTTP_IDLE_TIMEOUT

    clock = Clock()
    hub, channel, transport = open_http(clock)
    channel.dataReceived(b"GET /stats HTTP/1.1\r\nHost: hub\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    transport.clear()
    clock.advance(HEADER_DEADLINE + 1)  # idle between requests: the idle timeout's business
    assert not transport.disconnecting
    channel.dataReceived(b"GET /stats HTTP/1.1\r\n")  # the next request starts its own deadline
    clock.advance(HEADER_DEADLINE - 1)
    channel.dataReceived(b"Host: hub\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    clock.advance(HTTP_IDLE_TIMEOUT - 1)
    assert not transport.disconnecting and hub.stats.clients_dropped == {}
    assert clock.getDelayedCalls() and all(
        call.getTime() == clock.seconds() + 1 for call in clock.getDelayedCalls()
    ), "only the idle timer is left"


def test_a_websocket_is_not_cut_by_the_header_deadline():
    """The upgrade request's headers end the deadline; the socket is the dashboard's then."""
    from tantra.web.deadline import HEADER_DEADLINE

    clock = Clock()
    hub, channel, transport = open_http(clock)
    channel.dataReceived(
        b"GET / HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101 Switching Protocols")
    clock.advance(HEADER_DEADLINE * 3)
    assert hub.stats.clients_dropped == {}
    assert b"408" not in transport.value()


@pytest_twisted.inlineCallbacks
def test_a_trickling_client_on_a_real_socket_gets_408_and_others_are_served():
    """On the real reactor and TCP: the slow client is answered and closed, a prompt one served."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import (
        TCP4ClientEndpoint,
        TCP4ServerEndpoint,
        connectProtocol,
    )

    from tests.support.loopback import Keeper, until

    hub = Hub(reactor)
    site = build_site(hub, DashboardFactory(hub, reactor))
    site.header_deadline = 0.3
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    slow, prompt = Keeper(), Keeper()
    lost = []
    slow.connectionLost = lost.append
    try:
        yield connectProtocol(endpoint, slow)
        slow.transport.write(b"GET /stats HTTP/1.1\r\nHost: hub\r\n")
        yield connectProtocol(endpoint, prompt)
        prompt.transport.write(b"GET /stats HTTP/1.1\r\nHost: hub\r\n\r\n")
        yield until(lambda: lost and b"\r\n\r\n" in prompt.received, timeout=5)
        assert bytes(slow.received).startswith(b"HTTP/1.1 408 Request Timeout")
        assert lost, "the slow client was not disconnected"
        assert bytes(prompt.received).startswith(b"HTTP/1.1 200 OK")
        assert hub.stats.clients_dropped == {"header_timeout": 1}
    finally:
        for client in (slow, prompt):
            if client.transport is not None:
                client.transport.loseConnection()
        yield port.stopListening()


UPGRADE = (
    b"Host: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (b"?device=f%C3%BCr", "400 device filter 'f\u00fcr' must be 1-64 characters"),
        (b"?device=%FF", "400 device filter '\ufffd' must be 1-64 characters"),
        (b"?token=secret&sensor=%C3%A9", "400 sensor filter '\u00e9' must be 1-64 characters"),
    ],
)
def test_a_non_ascii_query_value_is_refused_like_any_bad_name_not_a_500(query, status):
    """urllib re-encoded the query as ASCII and raised: HTTP 500 and a logged traceback."""
    clock = Clock()
    hub, channel, transport = open_http(clock)
    channel.dataReceived(b"GET /" + query + b" HTTP/1.1\r\n" + UPGRADE)
    assert transport.value().decode("utf-8", "replace").startswith("HTTP/1.1 " + status)
    assert hub.stats.rejected == {"bad_subscription": 1}
