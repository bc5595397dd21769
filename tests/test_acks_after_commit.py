"""Acks after commit on each transport, in memory: replies in payload order, none for what was not stored."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tantra.dedupe import SeqWindow
from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceDatagramProtocol
from tests.support.fakes import ControlledStore, RecordingSink
from tests.support.wire import BufferedTransport, client_frame, handshake, server_frames
from tests.test_raw import connect_tcp, lines


@pytest.fixture
def store():
    return ControlledStore()


@pytest.fixture
def hub(clock, store):
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    hub.commit_through(store)
    return hub


@pytest.fixture
def dashboard(hub):
    sink = RecordingSink()
    hub.subscribe(sink)
    return sink


def test_tcp_replies_wait_for_the_commit_and_keep_their_order(hub, clock, store, dashboard):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n{"sensor":"a","value":"x"}\n')
    assert transport.value() == b"", "the error waits behind the ack it follows"
    clock.advance(0)
    assert [r.seq for r in dashboard.readings] == [1], "broadcast at once"
    store.commit()
    assert lines(transport) == [
        {"ack": 1},
        {
            "error": "invalid_reading",
            "detail": "value must be a finite number or boolean",
            "index": 0,
        },
    ]


def test_tcp_gets_no_ack_for_what_was_not_stored_and_the_resend_is_stored(hub, clock, store):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n')
    clock.advance(0)
    store.shed()
    assert transport.value() == b""
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n')
    clock.advance(0)
    assert [r.seq for r in store.turns[-1][0]] == [1], "taken afresh, not as a duplicate"
    store.commit()
    assert lines(transport) == [{"ack": 1}]


def test_tcp_stop_writes_acks_that_wait_for_a_commit_before_hanging_up(hub, clock, store):
    factory, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":9}\n')
    clock.advance(0)
    gone = factory.go_away()
    assert not transport.write_closed, "the ack is still owed"
    store.commit()
    assert lines(transport) == [{"ack": 9}] and transport.write_closed
    protocol.connectionLost(None)
    assert gone.called


def test_udp_ack_after_commit_and_none_when_shed(hub, clock, store):
    udp = DeviceDatagramProtocol(hub, clock, error_rate=10)
    transport = StringTransport()
    sent = []
    transport.write = lambda data, addr=None: sent.append((data, addr))
    udp.makeConnection(transport)
    udp.datagramReceived(b'{"sensor":"a","value":1,"seq":3}', ("10.0.0.8", 4000))
    clock.advance(0)
    assert sent == []
    store.commit()
    assert sent == [(b'{"ack":3}', ("10.0.0.8", 4000))]
    udp.datagramReceived(b'{"sensor":"a","value":1,"seq":4}', ("10.0.0.8", 4000))
    clock.advance(0)
    store.shed()
    assert len(sent) == 1, "nothing for a reading that was not stored"


def open_websocket_device(hub, clock):
    factory = DashboardFactory(hub, clock, ping_interval=0)
    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 4444))
    transport = BufferedTransport("10.0.0.9")
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake("/"))
    transport.drain()
    return protocol, transport


def test_websocket_acks_wait_for_the_commit(hub, clock, store):
    protocol, transport = open_websocket_device(hub, clock)
    protocol.dataReceived(client_frame(b'{"sensor":"a","value":1,"seq":5}'))
    clock.advance(0)
    frames = [json.loads(p) for _, p in server_frames(transport.drain())]
    assert frames == [
        {"device": "ip-10-0-0-9", "sensor": "a", "value": 1, "ts": frames[0]["ts"], "seq": 5}
    ]
    store.commit()
    assert [json.loads(p) for _, p in server_frames(transport.drain())] == [{"ack": 5}]


def test_websocket_stops_reading_while_replies_wait_at_the_bound_and_others_are_not_held(
    hub, clock, store
):
    # As over TCP: refusals queue behind a pending commit without touching the
    # store, so the number of waiting payloads is what bounds them.
    from tantra.transports.ordered import MAX_WAITING

    flooder, transport = open_websocket_device(hub, clock)
    good, good_transport = open_websocket_device(hub, clock)
    flooder.dataReceived(client_frame(b'{"sensor":"a","value":1,"seq":1}'))
    clock.advance(0)
    bad = client_frame(b'{"sensor":"a","value":"x"}')
    flooder.dataReceived(bad * (MAX_WAITING + 10))  # one read: it is taken whole
    assert not transport.reading, "not read while its replies wait at the bound"
    assert flooder._replies.full and flooder._replies.waiting == MAX_WAITING + 11
    good.dataReceived(client_frame(b'{"sensor":"b","value":2,"seq":7}'))
    clock.advance(0)
    assert good_transport.reading
    store.commit(0)  # the flooder's turn
    store.commit(-1)  # the good device's
    replies = [json.loads(p) for _, p in server_frames(good_transport.drain())]
    assert {"ack": 7} in replies
    got = [json.loads(p) for _, p in server_frames(transport.drain())]
    answers = [m for m in got if "sensor" not in m]  # the broadcasts of readings aside
    assert answers[0] == {"ack": 1} and len(answers) == 1 + MAX_WAITING + 10
    assert all(m["error"] == "invalid_reading" for m in answers[1:])
    assert transport.reading, "read again once the replies are written"
    assert flooder._replies.waiting == 0 and not flooder._replies.full


def test_websocket_reads_again_only_when_both_the_gate_and_the_waiting_replies_allow(
    hub, clock, store
):
    from tantra.transports.ordered import MAX_WAITING

    protocol, transport = open_websocket_device(hub, clock)
    protocol.dataReceived(client_frame(b'{"sensor":"a","value":1,"seq":1}'))
    clock.advance(0)
    protocol.dataReceived(client_frame(b'{"sensor":"a","value":"x"}') * (MAX_WAITING + 1))
    assert not transport.reading
    protocol._gate._reading_paused = True  # the client does not read its replies either
    store.commit()
    assert not transport.reading, "the buffer reason still holds"
    protocol._gate.resume_reading()
    assert transport.reading


def test_ordered_replies_drain_up_to_the_first_pending_commit_only():
    from twisted.internet import defer

    from tantra.hub import IngestOutcome
    from tantra.transports.ordered import OrderedReplies

    written: list[list[dict]] = []
    ordered = OrderedReplies(written.append)
    first, second = defer.Deferred(), defer.Deferred()
    ordered.add(IngestOutcome([], [], [], [1], False, first))
    ordered.add_messages([{"m": 1}])
    ordered.add(IngestOutcome([], [], [], [2], False, second))
    ordered.add_messages([{"m": 2}])
    second.callback(None)
    assert written == [] and ordered.waiting == 4, "behind the first, still pending"
    first.callback(None)
    assert written == [[{"ack": 1}, {"m": 1}, {"ack": 2}, {"m": 2}]]
    assert ordered.waiting == 0


def test_tcp_stops_reading_while_replies_wait_at_the_bound_and_a_good_device_is_not_held(
    hub, clock, store
):
    from tantra.transports.ordered import MAX_WAITING

    _, flooder, transport = connect_tcp(hub, clock)
    _, good, good_transport = connect_tcp(hub, clock)
    bad = b'{"sensor":"a","value":"x"}\n'
    flooder.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n')
    clock.advance(0)
    for _ in range(5):  # five reads of 1000 bad lines each, as if the device kept sending
        flooder.dataReceived(bad * 1000)
        assert flooder._replies.waiting <= MAX_WAITING
    assert transport.producerState == "paused", "not read while its replies wait at the bound"
    assert flooder._replies.waiting == MAX_WAITING and flooder._replies.full
    assert transport.value() == b""

    good.dataReceived(b'{"sensor":"b","value":2,"seq":7}\n{"sensor":"b","value":"y"}\n')
    clock.advance(0)
    assert good_transport.producerState == "producing"
    store.commit(0)  # the flooder's turn
    store.commit(-1)  # the good device's
    assert lines(good_transport)[0] == {"ack": 7} and len(lines(good_transport)) == 2

    got = lines(transport)
    assert got[0] == {"ack": 1}
    assert len(got) == 5001 and all(m["error"] == "invalid_reading" for m in got[1:])
    assert transport.producerState == "producing", "read again once the replies are written"
    assert flooder._held == [] and flooder._replies.waiting == 0 and not flooder._replies.full


def test_tcp_reads_again_only_when_both_the_gate_and_the_waiting_replies_allow(hub, clock, store):
    from tantra.transports.ordered import MAX_WAITING

    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n')
    clock.advance(0)
    protocol.dataReceived(b'{"sensor":"a","value":"x"}\n' * (MAX_WAITING + 10))
    assert transport.producerState == "paused"
    protocol._gate.pauseProducing()  # the device does not read its replies either
    store.commit()
    assert transport.producerState == "paused", "the gate still holds"
    assert len(protocol._held) == 11, "held lines wait for the gate"
    protocol._gate.resumeProducing()
    assert transport.producerState == "producing" and protocol._held == []
    assert len(lines(transport)) == 1 + MAX_WAITING + 10
