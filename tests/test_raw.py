"""Raw TCP lines and UDP datagrams, in memory: replies, limits, keep-alives."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tantra.hub import Hub
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory
from tests.support.fakes import RecordingSink


@pytest.fixture
def hub(clock):
    return Hub(clock)


@pytest.fixture
def dashboard(hub):
    sink = RecordingSink()
    hub.subscribe(sink)
    return sink


class TcpTransport(StringTransport):
    """StringTransport plus the half-close a real TCP transport has."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


def connect_tcp(hub, clock, *, max_line=200, idle_timeout=300.0):
    factory = DeviceLineFactory(hub, clock, max_line=max_line, idle_timeout=idle_timeout)
    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.7", 5555))
    transport = TcpTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 5555))
    protocol.makeConnection(transport)
    return factory, protocol, transport


def lines(transport) -> list[dict]:
    return [json.loads(line) for line in transport.value().splitlines()]


def test_tcp_line_becomes_reading_with_peer_device(hub, clock, dashboard):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"soil","value":42,"unit":"%","seq":1}\r\n')
    clock.advance(0)
    assert lines(transport) == [{"ack": 1}]
    (reading,) = dashboard.readings
    assert (reading.device, reading.sensor, reading.value) == ("ip-10-0-0-7", "soil", 42)


def test_tcp_split_and_joined_lines(hub, clock, dashboard):
    _, protocol, _ = connect_tcp(hub, clock)
    for chunk in [
        b'{"sensor":"a",',
        b'"value":1}\n{"sensor":"b","value":2}\n{"sen',
        b'sor":"c","value":3}\n',
    ]:
        protocol.dataReceived(chunk)
    clock.advance(0)
    assert [r.sensor for r in dashboard.readings] == ["a", "b", "c"]


def test_tcp_empty_lines_are_keepalives(hub, clock, dashboard):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b"\n\r\n   \n\t\r\n")
    assert transport.value() == b""
    assert hub.stats.rejected == {}


def test_tcp_bad_line_gets_error_and_keeps_connection(hub, clock, dashboard):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(
        b'{"sensor":"a","value":NaN}\n\xff\xfe\n{"sensor":"b","value":2,"seq":9}\n'
    )
    clock.advance(0)
    assert lines(transport) == [
        {
            "error": "invalid_reading",
            "detail": "value must be a finite number or boolean",
            "index": 0,
        },
        {"error": "invalid_utf8", "detail": "payload is not valid UTF-8 (byte 0)"},
        {"ack": 9},
    ]
    assert not transport.disconnecting
    assert [r.sensor for r in dashboard.readings] == ["b"]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("length", [100, 101])
def test_tcp_max_line_counts_the_line_not_its_ending(hub, clock, dashboard, ending, length):
    """Exactly ``--max-line`` bytes are taken and one more refused, with either ending."""
    _, protocol, transport = connect_tcp(hub, clock, max_line=100)
    line = b'{"sensor":"edge","value":1}'
    line = line[:-1] + b" " * (length - len(line)) + b"}"
    protocol.dataReceived(
        b'{"sensor":"a","value":1}\n' + line + ending + b'{"sensor":"b","value":1}\n'
    )
    clock.advance(0)
    if length == 100:
        assert lines(transport) == [] and not transport.disconnecting
        assert [r.sensor for r in dashboard.readings] == ["a", "edge", "b"]
    else:
        assert lines(transport) == [
            {
                "error": "line_too_long",
                "detail": "line longer than 100 bytes; closing the connection",
            }
        ]
        assert transport.disconnecting and [r.sensor for r in dashboard.readings] == ["a"]


def test_tcp_overlong_line_closes_after_an_error(hub, clock, dashboard):
    _, protocol, transport = connect_tcp(hub, clock, max_line=100)
    protocol.dataReceived(b'{"sensor":"a","value":1}\n' + b"x" * 150)
    clock.advance(0)
    replies = lines(transport)
    assert replies == [
        {"error": "line_too_long", "detail": "line longer than 100 bytes; closing the connection"}
    ]
    assert transport.disconnecting
    assert [r.sensor for r in dashboard.readings] == ["a"], "the good line before it counts"
    assert hub.stats.rejected == {"line_too_long": 1}
    protocol.dataReceived(b'{"sensor":"late","value":1}\n')
    clock.advance(0)
    assert [r.sensor for r in dashboard.readings] == ["a"]


def test_tcp_idle_connection_is_closed(hub, clock):
    _, protocol, transport = connect_tcp(hub, clock, idle_timeout=300)
    clock.advance(299)
    protocol.dataReceived(b"\n")  # a keep-alive resets the timer
    clock.advance(299)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting
    assert lines(transport)[0]["error"] == "idle_timeout"
    assert hub.stats.clients_dropped == {"idle_timeout": 1}
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_tcp_go_away_half_closes_ignores_late_lines_and_waits(hub, clock, dashboard):
    factory, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n')
    closed = factory.go_away()
    assert transport.value() == b'{"ack":1}\n'
    assert transport.write_closed and not transport.disconnecting, "only our side is shut"
    protocol.dataReceived(b'{"sensor":"late","value":2,"seq":2}\n')
    clock.advance(0)
    assert transport.value() == b'{"ack":1}\n', "a line after the stop is neither taken nor acked"
    assert [r.sensor for r in dashboard.readings] == ["a"]
    assert not closed.called
    protocol.readConnectionLost()  # the device closes its side
    assert transport.disconnecting
    protocol.connectionLost(None)
    assert closed.called
    assert factory.connections == set()


class FakeDatagramTransport:
    def __init__(self):
        self.sent: list[tuple[bytes, tuple]] = []

    def write(self, data, addr):
        self.sent.append((data, addr))


@pytest.fixture
def udp(hub, clock):
    protocol = DeviceDatagramProtocol(hub, clock, error_rate=10)
    protocol.transport = FakeDatagramTransport()
    return protocol


SOURCE = ("192.168.4.2", 4210)


def test_udp_reading_acked_to_source(udp, clock, dashboard):
    udp.datagramReceived(b'{"sensor":"rpm","value":1200,"seq":3}', SOURCE)
    clock.advance(0)
    assert udp.transport.sent == [(b'{"ack":3}', SOURCE)]
    assert dashboard.readings[0].device == "ip-192-168-4-2"


def test_udp_batch_acks_and_errors_come_in_one_datagram_within_the_request(udp, clock, dashboard):
    datagram = b'[{"sensor":"a","value":1,"seq":1},{"sensor":"b","value":"x","seq":2},{"sensor":"c","value":3,"seq":3}]'
    udp.datagramReceived(datagram, SOURCE)
    clock.advance(0)
    [(data, to)] = udp.transport.sent
    replies = [json.loads(line) for line in data.split(b"\n")]
    assert to == SOURCE
    assert replies[0] == {"ack": [1, 3]}
    assert replies[1]["error"] == "invalid_reading" and replies[1]["index"] == 1
    assert len(data) <= len(datagram)
    assert [r.sensor for r in dashboard.readings] == ["a", "c"]
    assert udp.counters.udp.as_dict() == {"reply_datagrams": 1, "reply_bytes": len(data)}


def test_udp_bad_batches_get_one_reply_datagram_each(udp, clock, dashboard):
    """Issue 8: 20 requests of 8 KB used to get 968 reply datagrams."""
    bad_batch = b"[" + b",".join([b"1"] * 4000) + b"]"  # 8 KB, 4000 errors
    for _ in range(20):
        udp.datagramReceived(bad_batch, SOURCE)
    assert udp.counters.udp.reply_datagrams == 10  # one each, until the error rate limit
    assert all(len(data) <= len(bad_batch) for data, _ in udp.transport.sent)
    assert udp.counters.udp.reply_bytes <= 10 * len(bad_batch)
    # Errors that did not fit, and replies over the rate limit, are counted.
    assert udp.hub.stats.replies_suppressed == 20 * 4000 - sum(
        data.count(b"\n") + 1 for data, _ in udp.transport.sent
    )
    # A good device alongside is acked and delivered.
    udp.datagramReceived(b'{"sensor":"ok","value":1,"seq":9}', ("192.168.4.9", 1))
    clock.advance(0)
    assert udp.transport.sent[-1] == (b'{"ack":9}', ("192.168.4.9", 1))
    assert [r.sensor for r in dashboard.readings] == ["ok"]


def test_udp_datagram_up_to_the_maximum_is_read_whole(udp, clock, dashboard):
    from tantra.transports.raw import MAX_DATAGRAM, UDP_READ_SIZE

    assert UDP_READ_SIZE > MAX_DATAGRAM
    readings = b",".join(b'{"sensor":"s%d","value":%d}' % (i, i) for i in range(2000))
    datagram = (b"[" + readings + b"]").ljust(MAX_DATAGRAM)
    assert len(datagram) == MAX_DATAGRAM
    udp.datagramReceived(datagram, SOURCE)
    clock.advance(0)
    assert len(dashboard.readings) == 2000


def test_udp_datagram_over_the_maximum_gets_the_documented_error(udp, clock, dashboard):
    from tantra.transports.raw import MAX_DATAGRAM

    udp.datagramReceived(b'{"sensor":"s","value":1}'.ljust(MAX_DATAGRAM + 1), SOURCE)
    [(data, _)] = udp.transport.sent
    assert json.loads(data) == {
        "error": "datagram_too_long",
        "detail": f"datagram longer than {MAX_DATAGRAM} bytes",
    }
    assert udp.hub.stats.rejected == {"datagram_too_long": 1}
    clock.advance(0)
    assert dashboard.readings == []


def test_udp_small_bad_datagram_gets_a_shrunk_error(udp):
    udp.datagramReceived(b"{", SOURCE)
    assert udp.transport.sent == []  # even the bare error is longer than 1 byte
    assert udp.hub.stats.replies_suppressed == 1
    udp.datagramReceived(b"x" * 40, SOURCE)
    assert udp.transport.sent == [(b'{"error":"invalid_json"}', SOURCE)]


def test_udp_error_replies_are_rate_limited_per_source(udp, clock):
    junk = b"not json at all, certainly not a reading" * 3
    for _ in range(25):
        udp.datagramReceived(junk, SOURCE)
    assert len(udp.transport.sent) == 10
    udp.datagramReceived(junk, ("192.168.4.3", 1))
    assert len(udp.transport.sent) == 11
    clock.advance(1.0)
    for _ in range(25):
        udp.datagramReceived(junk, SOURCE)
    assert len(udp.transport.sent) == 21
    assert udp.hub.stats.rejected == {"invalid_json": 51}


def test_udp_acks_are_never_rate_limited(udp):
    for seq in range(30):
        udp.datagramReceived(b'{"sensor":"a","value":1,"seq":%d}' % seq, SOURCE)
    assert len(udp.transport.sent) == 30


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_without_a_store_the_ack_leaves_only_after_the_broadcast(hub, clock, dashboard, kind):
    """``--store none``: a kill -9 between an ack and its broadcast would lose an
    acked reading, so the ack waits for the hub's flush; errors do not wait."""
    hub.ack_after_broadcast()
    if kind == "udp":
        protocol = DeviceDatagramProtocol(hub, clock, error_rate=10)
        protocol.transport = FakeDatagramTransport()
        protocol.datagramReceived(b'{"sensor":"a","value":1,"seq":5}', SOURCE)
        protocol.datagramReceived(b'{"sensor":"a"}' + b" " * 100, SOURCE)  # room for the error

        def replies():
            return [json.loads(data) for data, _ in protocol.transport.sent]
    else:
        _, protocol, transport = connect_tcp(hub, clock)
        protocol.dataReceived(b'{"sensor":"a","value":1,"seq":5}\n{"sensor":"a"}\n')

        def replies():
            return lines(transport)

    expected_error = {
        "error": "invalid_reading",
        "detail": "missing required field 'value'",
        "index": 0,
    }
    if kind == "udp":  # a datagram's error goes at once; a line waits for the ack before it
        assert replies() == [expected_error]
    else:
        assert replies() == []
    assert dashboard.readings == []
    clock.advance(0)
    assert [r.seq for r in dashboard.readings] == [5]
    assert {"ack": 5} in replies() and expected_error in replies()


def test_udp_empty_datagram_is_ignored(udp):
    udp.datagramReceived(b"", SOURCE)
    udp.datagramReceived(b" \n", SOURCE)
    assert udp.transport.sent == []


def test_tcp_half_close_still_gets_replies_and_a_last_unterminated_line(hub, clock, dashboard):
    _, protocol, transport = connect_tcp(hub, clock)
    protocol.dataReceived(b'{"sensor":"a","value":1,"seq":1}\n{"sensor":"b","value":2,"seq":2}')
    protocol.readConnectionLost()
    clock.advance(0)
    assert lines(transport) == [{"ack": 1}, {"ack": 2}]
    assert transport.disconnecting
    assert [r.sensor for r in dashboard.readings] == ["a", "b"]
