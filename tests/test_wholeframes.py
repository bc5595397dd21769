"""Whole single-frame messages without Autobahn's per-frame path: same behaviour as Autobahn.

The fast path (``tantra.transports.wholeframes``) must accept exactly what
Autobahn accepts and leave every other case to it. Checked differentially:
the same client bytes (any mix of text, binary, fragmented, control, unmasked,
reserved, oversized, non-minimal-length frames, valid and invalid UTF-8, split
into arbitrary reads) go to a plain Autobahn server protocol and to the same
protocol with the fast path; both must deliver the same messages and write
the same bytes (pongs, close frames with their codes). Plus unit checks of
unmasking, and real ``websockets`` clients against a running hub in
``test_integration_transports.py``-style: fragmented messages with a ping
between fragments, and invalid UTF-8 closing with 1007 while another client
is unaffected.
"""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from tantra.transports.wholeframes import WholeFrameReceiver, unmask
from tests.support.clients import dashboard, recv_json
from tests.support.wire import BufferedTransport, close_code, handshake, server_frames

LIMIT = 300


class Transport(BufferedTransport):
    def unregisterProducer(self):
        """Autobahn drops a connection by unregistering a producer it may never have had."""
        if self.producer is not None:
            super().unregisterProducer()


class Plain(WebSocketServerProtocol):
    def __init__(self):
        super().__init__()
        self.messages: list[tuple[bytes, bool]] = []

    def onMessage(self, payload, isBinary):
        self.messages.append((payload, isBinary))


class Fast(WholeFrameReceiver, Plain):
    frames_to_autobahn = 0

    def onFrameBegin(self):
        self.frames_to_autobahn += 1  # Autobahn's per-frame path was taken
        super().onFrameBegin()


class Batched(Fast):
    """Takes the whole messages of a pass as one list (``_onMessages``, as dashboards do)."""

    def _onMessages(self, payloads):
        self.messages.extend((payload, None) for payload in payloads)


def payloads(messages):
    return [payload for payload, _ in messages]


def connect(protocol_class):
    clock = task.Clock()
    factory = WebSocketServerFactory(reactor=clock)
    factory.protocol = protocol_class
    factory.setProtocolOptions(
        failByDrop=False, maxMessagePayloadSize=LIMIT, maxFramePayloadSize=LIMIT, autoPingInterval=0
    )
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake())
    transport.drain()
    return protocol, transport


def frame(payload: bytes, opcode=1, fin=True, mask=b"\x01\x02\x03\x04", rsv=0, wide=False) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    masked = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126 and not wide:
        head += bytes([masked | size])
    elif size < 65536:
        head += bytes([masked | 126]) + struct.pack("!H", size)
    else:
        head += bytes([masked | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def test_unmask_is_rfc6455_xor_and_its_own_inverse():
    payload, mask = bytes(range(256)) * 3 + b"xyz", b"\x9a\x01\xff\x42"
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert unmask(payload, mask) == expected
    assert unmask(expected, mask) == payload
    assert unmask(b"", mask) == b""
    for size in range(0, 300):  # both ways of repeating the key (up to 256 bytes, and beyond)
        data = bytes(i % 251 for i in range(size))
        assert unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data)), size


def run(protocol_class, reads):
    protocol, transport = connect(protocol_class)
    for data in reads:
        protocol.dataReceived(data)
    return protocol.messages, transport.value()


def test_a_read_does_not_build_autobahns_debug_line(monkeypatch):
    """Autobahn's ``dataReceived`` formats a debug line per read, debug on or off; ours skips it."""
    protocol, _transport = connect(Fast)

    def refuse(*args, **kwargs):
        raise AssertionError("debug arguments built on the receive path")

    monkeypatch.setattr("autobahn.twisted.websocket.hltype", refuse)
    monkeypatch.setattr("autobahn.twisted.websocket.hlval", refuse)
    protocol.dataReceived(frame(b'{"a":1}') + frame(b"tail", fin=False))
    protocol.dataReceived(frame(b"!", opcode=0))  # the continuation: Autobahn's own path
    assert protocol.messages == [(b'{"a":1}', False), (b"tail!", False)]
    # Without the override, Autobahn's own dataReceived would have called them.
    with pytest.raises(AssertionError, match="debug arguments"):
        Plain.dataReceived(protocol, frame(b"x"))


def test_whole_frames_are_delivered_in_order_and_the_rest_goes_to_autobahn():
    stream = (
        frame(b'{"a":1}')
        + frame(b"\x00\xffbin", opcode=2)
        + frame("grüße".encode())
        + frame(b"x" * 200)  # 16-bit length
        + frame(b"frag-", fin=False)
        + frame(b"ping", opcode=9)  # a control frame between fragments
        + frame(b"ment", opcode=0)
        + frame(b"last")
    )
    fast, fast_wire = run(Fast, [stream])
    plain, plain_wire = run(Plain, [stream])
    assert (
        fast
        == plain
        == [
            (b'{"a":1}', False),
            (b"\x00\xffbin", True),
            ("grüße".encode(), False),
            (b"x" * 200, False),
            (b"frag-ment", False),
            (b"last", False),
        ]
    )
    assert fast_wire == plain_wire and server_frames(fast_wire) == [(10, b"ping")]
    protocol, _ = connect(Fast)
    protocol.dataReceived(stream)
    assert protocol.frames_to_autobahn == 3  # the fragments and the ping; the whole ones not


@pytest.mark.parametrize(
    "bad, code",
    [
        (frame(b"ok\xff"), 1007),  # invalid UTF-8 in a text message
        (frame(b"\xed\xa0\x80"), 1007),  # an encoded surrogate
        (frame(b"\xc0\xaf"), 1007),  # overlong
        (frame(b"x" * (LIMIT + 1)), 1009),
        (frame(b"abc", mask=None), 1002),  # client frames must be masked
        (frame(b"abc", rsv=1), 1002),
        (frame(b"abc", wide=True), 1002),  # not the minimal length encoding
        (frame(b"abc", opcode=3), 1002),
        (frame(b"abc", opcode=0), 1002),  # continuation outside a message
    ],
)
def test_bad_frames_close_exactly_as_autobahn_does_after_the_good_ones(bad, code):
    stream = frame(b"before") + bad + frame(b"after")
    fast, fast_wire = run(Fast, [stream])
    plain, plain_wire = run(Plain, [stream])
    assert fast == plain == [(b"before", False)]
    assert fast_wire == plain_wire
    [(opcode, payload)] = server_frames(fast_wire)
    assert opcode == 8 and close_code(payload) == code


frames = st.one_of(
    st.builds(
        frame,
        st.one_of(st.binary(max_size=140), st.text(max_size=60).map(str.encode)),
        opcode=st.sampled_from([0, 1, 1, 1, 2, 2, 3, 9, 10]),
        fin=st.booleans() | st.just(True),
        mask=st.one_of(st.binary(min_size=4, max_size=4), st.just(b"\0\0\0\0"), st.none()),
        rsv=st.sampled_from([0, 0, 0, 0, 1, 4]),
        wide=st.booleans(),
    ),
    st.builds(lambda n: frame(b"y" * n), st.integers(min_value=LIMIT - 2, max_value=LIMIT + 2)),
    st.binary(min_size=1, max_size=12),  # garbage
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, max_size=8), st.data())
def test_fuzz_the_fast_path_behaves_exactly_like_autobahn(stream_frames, data):
    stream = b"".join(stream_frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    reads, last = [], 0
    for cut in [*cuts, len(stream)]:
        reads.append(stream[last:cut])
        last = cut
    fast, fast_wire = run(Fast, reads)
    plain, plain_wire = run(Plain, reads)
    assert fast == plain
    assert fast_wire == plain_wire
    batched, batched_wire = run(Batched, reads)
    assert payloads(batched) == payloads(plain), "the same messages, in the same order"
    assert batched_wire == plain_wire


def test_a_pass_of_whole_frames_is_one_batch_and_autobahn_keeps_the_rest():
    stream = (
        frame(b"a") + frame(b"b", opcode=2) + frame(b"frag-", fin=False) + frame(b"x", opcode=0)
    )
    protocol, _ = connect(Batched)
    calls = []
    protocol._onMessages = lambda batch: calls.append(list(batch))  # type: ignore[method-assign]
    protocol.dataReceived(stream + frame(b"c"))
    assert calls == [[b"a", b"b"], [b"c"]]  # the fragmented message went to Autobahn between
    assert protocol.messages == [(b"frag-x", False)]


# -- real clients against a running hub (twistd) ------------------------------------------------


@pytest.mark.integration
def test_real_clients_fragmented_messages_pings_and_invalid_utf8(hub_process):
    """``websockets`` clients: fragments with a ping between them, many whole frames per
    read, then invalid UTF-8 (close 1007) while a watcher alongside loses nothing."""
    device = f"wf-{uuid.uuid4().hex[:8]}"
    url = hub_process.ws_url + f"?device={device}"
    quiet = hub_process.ws_url + f"?device={device}-none"  # the sender sees only its replies
    with dashboard(url) as watcher, dashboard(quiet) as sender:
        sender.send(iter([f'{{"device":"{device}","sensor":"frag",', '"value":1,"seq":1}']))
        assert recv_json(sender) == {"ack": 1}
        assert recv_json(watcher)["sensor"] == "frag"
        assert sender.ping().wait(5)
        for n in range(2, 50):
            sender.send(json.dumps({"device": device, "sensor": "s", "value": n, "seq": n}))
        assert [recv_json(sender)["ack"] for _ in range(2, 50)] == list(range(2, 50))
        with sender.protocol_mutex:  # a frame the library would refuse to build as text
            sender.protocol.send_frame(Frame(Opcode.TEXT, b'{"sensor":"x","value":1}\xff'))
            sender.send_data()
        with pytest.raises(ConnectionClosed):
            while True:
                sender.recv(timeout=5)
        assert sender.protocol.close_rcvd is not None
        assert sender.protocol.close_rcvd.code == 1007
        assert [recv_json(watcher)["value"] for _ in range(2, 50)] == list(range(2, 50))
