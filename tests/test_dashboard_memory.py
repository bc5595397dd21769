"""The dashboard socket in memory: handshake filters, replies, closing, pings on the test clock."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure

from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tests.support.wire import BufferedTransport, client_frame, close_code, handshake, server_frames


@pytest.fixture
def hub(clock):
    return Hub(clock)


def open_socket(factory, path="/", peer="10.0.0.9"):
    protocol = factory.buildProtocol(IPv4Address("TCP", peer, 4444))
    transport = BufferedTransport(peer)
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake(path))
    return protocol, transport


@pytest.fixture
def factory(hub, clock):
    return DashboardFactory(hub, clock, reply_buffer=4096, ping_interval=0, close_timeout=5.0)


@pytest.mark.parametrize(
    "query", ["?device=", "?device", "?sensor=&device=", "?device=a&device=", "?sensor"]
)
def test_blank_or_valueless_filter_is_refused_not_everything(factory, hub, clock, query):
    _refused, refusing = open_socket(factory, "/" + query)
    head = refusing.value()
    assert head.startswith(b"HTTP/1.1 400")
    assert b"filter '' must be" in head
    assert hub.stats.rejected["bad_subscription"] == 1
    assert hub.subscriber_count == 0
    # A dashboard with a real filter alongside gets its reading.
    _good, receiving = open_socket(factory, "/?device=a", "10.0.0.10")
    receiving.drain()
    hub.ingest(b'{"device":"a","sensor":"s","value":1}', default_device="x")
    clock.advance(0)
    assert [json.loads(p)["value"] for _, p in server_frames(receiving.drain())] == [1]


def test_sender_gets_replies_alone_and_readings_reach_every_dashboard(factory, hub, clock):
    sender, sending = open_socket(factory)
    _watcher, watching = open_socket(factory, "/?sensor=t", "10.0.0.10")
    sending.drain(), watching.drain()
    sender.dataReceived(client_frame(b'[{"sensor":"t","value":1,"seq":4},{"sensor":"t"}]'))
    replies = [json.loads(p) for _, p in server_frames(sending.drain())]
    assert replies[0] == {"ack": [4]} and replies[1]["index"] == 1
    clock.advance(0)
    assert [json.loads(p)["value"] for _, p in server_frames(watching.drain())] == [1]
    assert [json.loads(p)["sensor"] for _, p in server_frames(sending.drain())] == ["t"]


def test_go_away_reaches_a_slow_dashboard_behind_its_backlog(factory, hub, clock):
    slow, slowing = open_socket(factory)
    slowing.drain()
    for value in range(300):  # fills its buffer; the rest is conflated
        hub.ingest(b'{"sensor":"s%d","value":%d}' % (value % 50, value), default_device="d")
        clock.advance(0)
    assert slow._sender.paused and slow._sender.backlog > 0
    closed = slow.go_away()
    assert slow._sender.backlog == 0  # the conflated backlog is dropped, not sent first
    # The close frame is the last thing written and waits behind the buffer:
    # no abort before the stop deadline (Autobahn's 1 s default would abort).
    clock.advance(4.5)
    assert not slowing.aborted and not slowing.disconnecting
    frames = server_frames(slowing.drain())
    assert frames[-1][0] == 8 and close_code(frames[-1][1]) == 1001
    assert all(opcode == 1 for opcode, _ in frames[:-1])
    slow.connectionLost(Failure(ConnectionError()))
    assert closed.called and hub.subscriber_count == 0


def test_go_away_aborts_only_after_the_deadline(factory, hub, clock):
    stuck, sticking = open_socket(factory)
    sticking.drain()
    stuck.go_away()
    clock.advance(4.0)
    assert not sticking.disconnecting
    clock.advance(1.5)
    assert sticking.disconnecting  # Autobahn dropped it after the close timeout


def test_ping_timeout_runs_on_the_injected_clock_and_is_counted(hub, clock):
    factory = DashboardFactory(hub, clock, ping_interval=30, ping_timeout=10)
    _quiet, quieting = open_socket(factory)
    quieting.drain()
    clock.advance(30.5)
    assert [op for op, _ in server_frames(quieting.drain())] == [9]  # a ping
    clock.advance(10.5)
    assert hub.stats.clients_dropped["ping_timeout"] == 1


def test_an_open_dashboard_keeps_only_what_differs_and_still_closes_cleanly(factory, hub, clock):
    # Issue 14: what every open dashboard holds alike lives on the class
    # (tantra.transports.compact), so an idle one costs a small __dict__.
    protocol, transport = open_socket(factory, "/?device=a")
    assert len(vars(protocol)) < 42  # a dict of at most 42 entries is 832 bytes, not 3.3 KB
    assert "maxMessagePayloadSize" not in vars(protocol)  # the factory's option, on its class
    assert protocol.maxMessagePayloadSize == factory.maxMessagePayloadSize
    assert protocol.state == protocol.STATE_OPEN and not protocol.wasClean
    # nothing only the handshake needed: its raw bytes, headers, transport details
    assert protocol.http_request_data is None and protocol._transport_details is None
    assert protocol._wskey is None and protocol.http_request_uri is None
    assert "websocket_protocols" not in vars(protocol)  # the shared empty offer, on the class
    assert len(vars(protocol)) < 30
    assert protocol.peer  # what a dashboard still reads of the connection, kept apart
    transport.drain()
    hub.ingest(b'{"device":"a","sensor":"s","value":7}', default_device="x")
    clock.advance(0)
    assert [json.loads(p)["value"] for _, p in server_frames(transport.drain())] == [7]
    # the state it shares starts changing per connection when it closes
    protocol.dataReceived(client_frame(b"\x03\xe8", opcode=8))
    frames = server_frames(transport.drain())
    assert frames[-1][0] == 8 and close_code(frames[-1][1]) == 1000
    assert protocol.state != protocol.STATE_OPEN
    assert type(protocol).state == protocol.STATE_OPEN  # the class's default is untouched


def test_factories_with_different_options_keep_them_apart(hub, clock):
    small = DashboardFactory(hub, clock, reply_buffer=4096, max_message_size=100, ping_interval=0)
    large = DashboardFactory(hub, clock, reply_buffer=4096, max_message_size=5000, ping_interval=0)
    a, _ = open_socket(small)
    b, _ = open_socket(large, peer="10.0.0.11")
    assert (a.maxMessagePayloadSize, b.maxMessagePayloadSize) == (100, 5000)
