"""Clients that send but never read their replies: the hub stops reading them, memory stays bounded.

In memory: ``BufferedTransport`` signals the producer exactly as Twisted's
TCP transport does, so these tests check the hub's reaction (stop reading,
hold at most one read, resume once drained, drop a stuck device) and that a
well-behaved device and dashboard alongside lose nothing.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address

from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceLineFactory
from tests.support.fakes import RecordingSink
from tests.support.wire import BufferedTransport, client_frame, handshake, server_frames

REPLY_BUFFER = 4096
BAD_LINE = b"[1,2,3,4,5,6,7,8,9,10]\n"  # ten error replies (~800 bytes) for 23 bytes in


@pytest.fixture
def hub(clock):
    return Hub(clock)


@pytest.fixture
def dashboard(hub):
    sink = RecordingSink()
    hub.subscribe(sink)
    return sink


def tcp_device(factory, peer="10.0.0.7"):
    protocol = factory.buildProtocol(IPv4Address("TCP", peer, 5555))
    transport = BufferedTransport(peer)
    protocol.makeConnection(transport)
    return protocol, transport


def send_while_read(protocol, transport, chunk: bytes, times: int) -> int:
    """Send ``chunk`` up to ``times`` times, but only while the hub reads (like a socket)."""
    sent = 0
    while sent < times and transport.reading and not transport.aborted:
        protocol.dataReceived(chunk)
        sent += 1
    return sent


def tcp_factory(hub, clock):
    return DeviceLineFactory(
        hub, clock, max_line=65536, idle_timeout=300.0, reply_buffer=REPLY_BUFFER, stall_timeout=30
    )


def test_tcp_device_that_never_reads_is_not_read_and_held_input_is_one_read(hub, clock, dashboard):
    factory = tcp_factory(hub, clock)
    flooder, flooding = tcp_device(factory)
    chunk = BAD_LINE * 50  # one read of 1150 bytes earns ~40 KB of errors
    sent = send_while_read(flooder, flooding, chunk, 1000)

    assert sent == 1, "the first read's replies pass the bound: the hub stops reading"
    assert not flooding.reading
    # Unwritten: the bound plus the replies of the one line that passed it;
    # the rest of that one read is held, unhandled.
    one_line_of_errors = 1000
    assert REPLY_BUFFER < flooding.unwritten <= REPLY_BUFFER + one_line_of_errors
    handled = hub.stats.rejected["invalid_reading"] // 10
    assert handled + len(flooder._held) == 50 and len(flooder._held) > 40

    # A well-behaved device alongside is read and answered as usual.
    good, good_transport = tcp_device(factory, "10.0.0.8")
    good.dataReceived(b'{"sensor":"t","value":1,"seq":5}\n')
    assert json.loads(good_transport.value()) == {"ack": 5}
    clock.advance(0)
    assert [r.sensor for r in dashboard.readings] == ["t"]

    # The flooder reads: its held lines are answered (in order), then the
    # hub stops again at the bound, until it has read them all.
    replies = []
    while flooder._held or not flooding.reading:
        replies += flooding.drain().splitlines()
    replies += flooding.drain().splitlines()
    assert flooding.reading
    assert len(replies) == 50 * 10
    assert hub.stats.rejected["invalid_reading"] == 500
    assert hub.stats.clients_dropped["stalled"] == 0


def test_tcp_device_stuck_for_the_stall_timeout_is_dropped_and_counted(hub, clock, dashboard):
    factory = tcp_factory(hub, clock)
    flooder, flooding = tcp_device(factory)
    send_while_read(flooder, flooding, BAD_LINE * 50, 10)
    assert not flooding.reading
    clock.advance(29)
    assert not flooding.aborted
    good, good_transport = tcp_device(factory, "10.0.0.8")
    clock.advance(1)
    assert flooding.aborted
    assert hub.stats.clients_dropped["stalled"] == 1
    flooder.connectionLost(None)
    assert flooder not in factory.connections and flooder._held == []
    good.dataReceived(b'{"sensor":"t","value":1,"seq":6}\n')
    assert json.loads(good_transport.value()) == {"ack": 6}


def test_tcp_acks_for_a_million_readings_stay_within_the_bound(hub, clock):
    """The measured case of issue 8: readings with seq, acks never read."""
    factory = tcp_factory(hub, clock)
    flooder, flooding = tcp_device(factory)
    line = b'{"sensor":"s","value":1,"seq":%d}\n'
    chunk = b"".join(line % seq for seq in range(200))
    sent = send_while_read(flooder, flooding, chunk, 5000)
    assert sent < 5
    assert flooding.unwritten <= REPLY_BUFFER + 100


# -- WebSocket -----------------------------------------------------------------


def dashboard_socket(hub, clock, path="/", peer="10.0.0.9"):
    factory = DashboardFactory(hub, clock, reply_buffer=REPLY_BUFFER)
    protocol = factory.buildProtocol(IPv4Address("TCP", peer, 4444))
    transport = BufferedTransport(peer)
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake(path))
    assert transport.value().startswith(b"HTTP/1.1 101")
    transport.drain()
    return factory, protocol, transport


def test_websocket_client_sending_bad_batches_without_reading_stops_being_read(hub, clock):
    _, flooder, flooding = dashboard_socket(hub, clock)
    bad_batch = client_frame(json.dumps(list(range(200))).encode())
    sent = send_while_read(flooder, flooding, bad_batch, 1000)
    assert sent == 1
    assert not flooding.reading
    assert flooding.unwritten <= REPLY_BUFFER + 200 * 100

    # A dashboard alongside still gets the readings of a good publisher.
    _, watcher, watching = dashboard_socket(hub, clock, "/?sensor=t", "10.0.0.10")
    watcher.dataReceived(client_frame(b'{"sensor":"t","value":2}'))
    clock.advance(0)
    assert [json.loads(p)["value"] for _, p in server_frames(watching.drain())] == [2]

    # Once the flooder reads, it is read again.
    errors = server_frames(flooding.drain())
    assert len(errors) == 200 and flooding.reading
    assert send_while_read(flooder, flooding, bad_batch, 1000) == 1


def test_websocket_client_that_only_lags_behind_broadcasts_is_still_read(hub, clock):
    """Pongs and close frames must get in: a slow reader that sends nothing is read."""
    _, slow, slowing = dashboard_socket(hub, clock)
    for value in range(200):
        hub.ingest(b'{"sensor":"s%d","value":1}' % value, default_device="d")
        clock.advance(0)
    assert slow._sender.paused  # conflating
    assert slowing.reading
