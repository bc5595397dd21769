"""Auth on every device transport, in memory: each case's exact reply, close, counters, and silence.

Every transport x {no token, bad token, revoked token, another device's token,
good token}; nothing unauthorized reaches a subscriber, and a well-behaved
device alongside loses nothing.
"""

from __future__ import annotations

import base64
import json

import pytest
from twisted.internet.address import IPv4Address

from tantra.dedupe import SeqWindow
from tantra.hub import Filter, Hub
from tantra.security import signing
from tantra.security.gate import Auth, Ingress
from tantra.security.replay import ReplayGuard
from tantra.security.tokens import Token, TokenTable, hash_secret, new_secret
from tantra.transports.dashboard import DashboardFactory
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory
from tests.support.fakes import RecordingSink
from tests.support.wire import BufferedTransport, client_frame, close_code, server_frames

PEER = "10.1.2.3"


class Keys:
    def __init__(self):
        self.farm1, self.farm2, self.reader, self.old = (new_secret() for _ in range(4))
        self.tokens = [
            Token(name="farm-1", kind="device", hash=hash_secret(self.farm1), device="farm-1"),
            Token(name="farm-2", kind="device", hash=hash_secret(self.farm2), device="farm-2"),
            Token(name="ro", kind="reader", hash=hash_secret(self.reader), scopes=("farm-1/*",)),
        ]
        self.revoked = Token(name="old", kind="device", hash=hash_secret(self.old), device="farm-1")


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def hub(clock):
    return Hub(clock)


@pytest.fixture
def auth(hub, keys):
    auth = Auth(TokenTable([*keys.tokens, keys.revoked]), hub.counters)
    auth.replace(TokenTable(keys.tokens))  # "old" revoked before anyone connects
    return auth


@pytest.fixture
def ingress(hub, auth):
    return Ingress(hub, auth=auth, replay=ReplayGuard(margin=1000))


@pytest.fixture
def watcher(hub):
    sink = RecordingSink()
    hub.subscribe(sink)
    return sink


def reading(sensor="t", value=1, **extra) -> bytes:
    return json.dumps({"sensor": sensor, "value": value, **extra}).encode()


# -- TCP -----------------------------------------------------------------------


class Tcp:
    def __init__(self, hub, clock, ingress):
        self.factory = DeviceLineFactory(
            hub, clock, max_line=65536, idle_timeout=300, ingress=ingress
        )
        self.protocol = self.factory.buildProtocol(IPv4Address("TCP", PEER, 1))
        self.transport = BufferedTransport(PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, line: bytes) -> list[dict]:
        self.protocol.dataReceived(line + b"\n")
        return [json.loads(x) for x in self.transport.drain().splitlines()]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


@pytest.mark.parametrize(
    "first",
    [
        b'{"sensor":"t","value":1}',  # no token: a reading first
        b'{"auth":"tantra_not-a-token"}',  # bad token
        b'{"auth":42}',
        b"not json",
        "revoked",
        "reader",  # a reader token may not send
    ],
)
def test_tcp_refused_logins_get_unauthorized_and_close(hub, clock, ingress, keys, watcher, first):
    if first == "revoked":
        first = json.dumps({"auth": keys.old}).encode()
    elif first == "reader":
        first = json.dumps({"auth": keys.reader}).encode()
    good = Tcp(hub, clock, ingress)
    assert good.send(json.dumps({"auth": keys.farm1}).encode()) == [
        {"ok": "auth", "device": "farm-1"}
    ]
    bad = Tcp(hub, clock, ingress)
    replies = bad.send(first)
    assert [r["error"] for r in replies] == ["unauthorized"]
    assert bad.closed
    assert bad.send(reading(seq=5)) == []  # nothing more is read
    assert good.send(reading(seq=1)) == [{"ack": 1}]
    clock.advance(0)
    assert [(r.device, r.seq) for r in watcher.readings] == [("farm-1", 1)]
    assert sum(hub.counters.auth.refused.values()) == 1


def test_tcp_good_token_sends_as_its_device_only(hub, clock, ingress, keys, watcher):
    device = Tcp(hub, clock, ingress)
    device.send(json.dumps({"auth": keys.farm2}).encode())
    assert device.send(reading(seq=1)) == [{"ack": 1}]
    replies = device.send(reading(device="farm-1", seq=2))  # another device's name
    assert replies == [
        {"error": "forbidden", "detail": "this token sends as device farm-2 only", "index": 0}
    ]
    batch = b"[" + reading(seq=3) + b"," + reading(device="farm-1", seq=4) + b"]"
    assert device.send(batch) == [
        {"ack": [3]},
        {"error": "forbidden", "detail": "this token sends as device farm-2 only", "index": 1},
    ]
    assert not device.closed
    clock.advance(0)
    assert [(r.device, r.seq) for r in watcher.readings] == [("farm-2", 1), ("farm-2", 3)]
    assert hub.counters.auth.forbidden == 2
    assert hub.stats.rejected["forbidden"] == 2


def test_tcp_revoking_closes_the_connection(hub, clock, ingress, auth, keys, watcher):
    device = Tcp(hub, clock, ingress)
    other = Tcp(hub, clock, ingress)
    device.send(json.dumps({"auth": keys.farm1}).encode())
    other.send(json.dumps({"auth": keys.farm2}).encode())
    assert auth.open_connections("farm-1") == 1
    auth.replace(TokenTable([t for t in keys.tokens if t.name != "farm-1"]))
    assert [r["error"] for r in json_lines(device.transport.drain())] == ["unauthorized"]
    assert device.closed and not other.closed
    assert other.send(reading(seq=9)) == [{"ack": 9}]
    assert hub.counters.auth.revoked_closed == 1
    device.protocol.connectionLost(None)
    assert auth.open_connections("farm-1") == 0


def json_lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.splitlines()]


# -- UDP -----------------------------------------------------------------------


class FakeDatagramTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


class Udp:
    def __init__(self, hub, clock, ingress):
        self.protocol = DeviceDatagramProtocol(hub, clock, error_rate=100, ingress=ingress)
        self.protocol.transport = FakeDatagramTransport()

    def send(self, datagram: bytes) -> list[dict] | None:
        self.protocol.datagramReceived(datagram, (PEER, 1))
        sent, self.protocol.transport.sent = self.protocol.transport.sent, []
        if not sent:
            return None
        return [json.loads(line) for data, _ in sent for line in data.split(b"\n")]


def signed(key: str, **fields) -> bytes:
    return signing.sign(reading(**fields), key)


@pytest.mark.parametrize(
    "case,counter",
    [
        ("unsigned", "udp_unsigned"),
        ("bad", "udp_bad_signature"),
        ("revoked", "udp_bad_signature"),
        ("other", "udp_bad_signature"),
        ("nodevice", "udp_bad_signature"),
    ],
)
def test_udp_unauthenticated_datagrams_are_dropped_silently(
    hub, clock, ingress, keys, watcher, case, counter
):
    udp = Udp(hub, clock, ingress)
    datagram = {
        "unsigned": reading(device="farm-1", seq=1),
        "bad": signed("tantra_wrong" * 7, device="farm-1", seq=1),
        "revoked": signed(keys.old, device="farm-1", seq=1),
        "other": signed(keys.farm2, device="farm-1", seq=1),  # farm-2's key, farm-1's name
        "nodevice": signed(keys.farm1, seq=1),
    }[case]
    assert udp.send(datagram) is None
    assert udp.send(signed(keys.farm1, device="farm-1", seq=2)) == [{"ack": 2}]
    clock.advance(0)
    assert [(r.device, r.seq) for r in watcher.readings] == [("farm-1", 2)]
    assert getattr(hub.counters.auth, counter) == 1


def test_udp_good_signature_then_replay(hub, clock, ingress, keys, watcher):
    udp = Udp(hub, clock, ingress)
    datagram = signed(keys.farm1, device="farm-1", seq=10)
    assert udp.send(datagram) == [{"ack": 10}]
    assert udp.send(datagram) == [{"ack": 10}]  # seen: acknowledged again, accepted once
    for seq in range(11, 80):
        udp.send(signed(keys.farm1, device="farm-1", seq=seq))
    # Now below the replay window, but still in the hub's de-dup window (1024):
    # the hub holds this very reading, so it is acknowledged, not accepted again.
    assert udp.send(datagram) == [{"ack": 10}]
    unused = signed(keys.farm1, device="farm-1", seq=9)  # below the window, never accepted
    assert udp.send(unused) == [
        {"error": "replayed", "detail": "seq 9 was used already", "index": 0}
    ]
    assert udp.send(signed(keys.farm1, device="farm-1")) == [
        {"error": "invalid_reading", "detail": "a signed reading needs seq", "index": 0}
    ]
    clock.advance(0)
    assert [r.seq for r in watcher.readings] == list(range(10, 80)), "each accepted once"
    assert (hub.counters.auth.replayed, hub.counters.auth.replayed_acked) == (1, 1)


def test_udp_replay_the_hub_forgot_is_refused(clock, keys):
    """Below both windows (the hub's de-dup window forgot it too): ``replayed``."""
    hub = Hub(clock, dedupe=SeqWindow(size=64, seconds=60))
    sink = RecordingSink()
    hub.subscribe(sink)
    auth = Auth(TokenTable(keys.tokens), hub.counters)
    udp = Udp(hub, clock, Ingress(hub, auth=auth, replay=ReplayGuard(margin=1000)))
    datagram = signed(keys.farm1, device="farm-1", seq=10)
    assert udp.send(datagram) == [{"ack": 10}]
    for seq in range(11, 80):
        udp.send(signed(keys.farm1, device="farm-1", seq=seq))
    assert udp.send(datagram) == [
        {"error": "replayed", "detail": "seq 10 was used already", "index": 0}
    ]
    clock.advance(0)
    assert [r.seq for r in sink.readings] == list(range(10, 80))
    assert (hub.counters.auth.replayed, hub.counters.auth.replayed_acked) == (1, 0)


def test_udp_seq_far_ahead_waits_for_the_state_file(hub, clock, ingress, keys):
    udp = Udp(hub, clock, ingress)
    assert udp.send(signed(keys.farm1, device="farm-1", seq=5)) == [{"ack": 5}]
    jump = signed(keys.farm1, device="farm-1", seq=(1 << 32) + 1)
    assert [r["error"] for r in udp.send(jump)] == ["retry"]
    guard = ingress.replay
    guard.saved(guard.snapshot())  # the state file was written
    assert udp.send(jump) == [{"ack": (1 << 32) + 1}]


# -- WebSocket -------------------------------------------------------------------


def ws_handshake(path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(b"0123456789abcdef").decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


class WebSocket:
    def __init__(self, hub, clock, ingress, path="/", headers=None, origins=()):
        factory = DashboardFactory(
            hub, clock, ping_interval=0, ingress=ingress, allowed_origins=origins
        )
        self.protocol = factory.buildProtocol(IPv4Address("TCP", PEER, 1))
        self.transport = BufferedTransport(PEER)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(ws_handshake(path, headers))
        self.head, _, self._rest = self.transport.drain().partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])

    def frames(self) -> list[tuple[int, bytes]]:
        data, self._rest = self._rest + self.transport.drain(), b""
        return server_frames(data) if data else []

    def readings(self) -> list[dict]:
        return [json.loads(p) for op, p in self.frames() if op == 1]

    def send(self, payload: bytes) -> list[dict]:
        self.protocol.dataReceived(client_frame(payload))
        return self.readings()


@pytest.mark.parametrize("case", ["none", "bad", "revoked", "bad-header", "basic"])
def test_websocket_refused_tokens_get_401(hub, clock, ingress, keys, watcher, case):
    path, headers = {
        "none": ("/", None),
        "bad": ("/?token=tantra_nope", None),
        "revoked": (f"/?token={keys.old}", None),
        "bad-header": ("/", {"Authorization": "Bearer tantra_nope"}),
        "basic": ("/", {"Authorization": "Basic " + keys.farm1}),
    }[case]
    client = WebSocket(hub, clock, ingress, path, headers)
    assert client.status == 401
    assert hub.subscriber_count == 1  # the watcher only
    assert sum(hub.counters.auth.refused.values()) == 1


def test_websocket_device_token_sends_as_itself(hub, clock, ingress, keys, watcher):
    client = WebSocket(hub, clock, ingress, headers={"Authorization": f"Bearer {keys.farm2}"})
    assert client.status == 101
    assert client.send(reading(seq=1)) == [{"ack": 1}]
    assert client.send(reading(device="farm-1", seq=2)) == [
        {"error": "forbidden", "detail": "this token sends as device farm-2 only", "index": 0}
    ]
    clock.advance(0)
    assert [(r.device, r.seq) for r in watcher.readings] == [("farm-2", 1)]
    # A device token's dashboard sees its own device only.
    assert [r["device"] for r in client.readings()] == ["farm-2"]


def test_websocket_reader_sees_its_scope_and_may_not_send(hub, clock, ingress, keys, watcher):
    for device in ("farm-1", "farm-2"):
        hub.ingest(reading("old"), default_device=device)
    clock.advance(0)
    reader = WebSocket(hub, clock, ingress, f"/?token={keys.reader}&sensor=old&sensor=t")
    assert reader.status == 101
    assert [(r["device"], r["sensor"]) for r in reader.readings()] == [("farm-1", "old")]
    assert reader.send(reading(device="farm-1")) == [
        {"error": "forbidden", "detail": "a reader token may not send readings"}
    ]
    for device in ("farm-1", "farm-2"):
        hub.ingest(reading(), default_device=device)
    clock.advance(0)
    assert [(r["device"], r["sensor"]) for r in reader.readings()] == [("farm-1", "t")]
    outside = WebSocket(hub, clock, ingress, f"/?token={keys.reader}&device=farm-2")
    assert outside.status == 101 and outside.readings() == []


def test_websocket_revoking_closes_with_4003(hub, clock, ingress, auth, keys):
    client = WebSocket(hub, clock, ingress, f"/?token={keys.farm1}")
    assert client.status == 101
    client.readings()
    auth.replace(TokenTable([t for t in keys.tokens if t.name != "farm-1"]))
    ((opcode, payload),) = client.frames()
    assert opcode == 8 and close_code(payload) == 4003


def test_websocket_origin_list(hub, clock, ingress, keys):
    allowed = ("https://farm.example",)
    ok = WebSocket(hub, clock, ingress, f"/?token={keys.farm1}",
                   {"Origin": "https://farm.example"}, allowed)  # fmt: skip
    assert ok.status == 101
    bad = WebSocket(hub, clock, ingress, f"/?token={keys.farm1}",
                    {"Origin": "https://evil.example"}, allowed)  # fmt: skip
    assert bad.status == 403
    assert hub.counters.auth.origin_refused == 1


def test_rate_limit_per_device(hub, clock, watcher):
    limited = Ingress(hub, auth=None, device_rate=2)
    outcomes = [limited.ingest(reading(seq=i), default_device="d") for i in range(4)]
    assert [o.acks for o in outcomes] == [[0], [1], [], []]
    assert outcomes[2].errors[0].code == "rate_limited"
    assert limited.ingest(reading(seq=9), default_device="e").acks == [9]  # per device
    clock.advance(1)
    assert limited.ingest(reading(seq=5), default_device="d").acks == [5]
    assert hub.counters.auth.rate_limited == 2


def test_scoped_snapshot_and_filter_for_wildcard_scope(hub, clock, keys):
    from tantra.security.readers import latest_scoped, subscribe_scoped
    from tantra.security.scopes import Scope, parse_scope

    for device in ("farm-1", "farm-2", "barn"):
        for sensor in ("temp", "hum"):
            hub.ingest(reading(sensor), default_device=device)
    clock.advance(0)
    scope = Scope([parse_scope("farm-*/temp")])
    sink = RecordingSink()
    _, snapshot = subscribe_scoped(hub, sink, Filter(), scope)
    assert sorted(r.device for r in snapshot) == ["farm-1", "farm-2"]
    assert {r.sensor for r in latest_scoped(hub, Filter(), scope)} == {"temp"}
    for device in ("farm-3", "barn"):
        hub.ingest(reading("temp"), default_device=device)
    clock.advance(0)
    assert [r.device for r in sink.readings] == ["farm-3"]
