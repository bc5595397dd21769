"""The hub's per-client broadcast loop: compiled (``tantra._fanout``) and pure Python alike.

Unit tests drive the compiled loop with fakes (no sockets: a fake line's
``fileno()`` is -1, so a send the loop makes fails with EBADF and comes back
through ``hand_back``, which shows which sinks it sent for). The integration
tests run real loopback connections through a real hub with each loop and
compare what the clients receive.
"""

from __future__ import annotations

import errno

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from tantra import fanout
from tantra.counters import Counters
from tantra.hub import Batch, Hub
from tantra.outbox import Outbox
from tantra.transports.sendnow import line_for, writer_for
from tests.support.loopback import close, connections, until

compiled = pytest.mark.skipif(
    fanout.extension is None, reason="tantra._fanout not built or TANTRA_NO_EXTENSION set"
)


# -- pure-Python selection and fallback -------------------------------------------


class Sink:
    def __init__(self, log: list, name: str, fail: bool = False):
        self.log, self.name, self.fail = log, name, fail

    def deliver(self, batch):
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("broken sink")


def test_python_loop_a_failing_sink_costs_only_itself():
    log: list = []
    events: list = []
    sinks = [Sink(log, "a"), Sink(log, "b", fail=True), Sink(log, "c")]
    globalLogPublisher.addObserver(events.append)
    try:
        assert fanout.deliver_each_python(sinks, Batch([])) == 1
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert log == ["a", "b", "c"]
    failures = [e for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["log_namespace"] == "tantra.hub"


def test_no_extension_is_honoured(monkeypatch):
    monkeypatch.setenv(fanout.NO_EXTENSION, "1")
    assert fanout._load_extension() is None
    monkeypatch.setenv(fanout.NO_EXTENSION, "0")
    assert fanout._load_extension() is not None or fanout.extension is None


def test_registering_without_the_extension_keeps_the_python_loop(monkeypatch):
    monkeypatch.setattr(fanout, "extension", None)
    monkeypatch.setattr(fanout, "deliver_each", fanout.deliver_each_python)
    fanout.register(Outbox, lambda sink, data, result: None)
    assert fanout.deliver_each is fanout.deliver_each_python


def test_hand_back_failure_costs_only_that_sink():
    def broken(sink, data, result):
        raise OSError("gone")

    guarded = fanout._guarded(broken)
    assert guarded(object(), b"x", 0) == 1
    assert fanout._guarded(lambda sink, data, result: None)(object(), b"x", 0) == 0


# -- the compiled loop with fakes ---------------------------------------------------


class Line:
    """What the loop reads of a ``tcp.Connection`` (the outboxes' ``_fd`` -1 makes a send fail, EBADF)."""

    dataBuffer = b""
    _writeDisconnected = False

    def __init__(self):
        self.connected = 1
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0


class SlottedOutbox:
    """The fields the loop reads, as ``__slots__`` (read at their offsets) like Outbox's."""

    __slots__ = ("_direct", "_encode", "_fd", "_line", "name")

    def __init__(self, name, encode, line=None, direct=True):
        self.name, self._encode, self._line, self._direct = name, encode, line, direct
        self._fd = -1

    def deliver(self, batch):
        raise AssertionError("the loop calls slow(), not deliver()")


class PlainOutbox:
    """The same fields in an instance dict (read through getattr)."""

    def __init__(self, name, encode, line=None, direct=True):
        self.name, self._encode, self._line, self._direct = name, encode, line, direct
        self._fd = -1


class Recorder:
    def __init__(self):
        self.calls: list[tuple] = []
        self.fail: set[str] = set()

    def slow(self, sink, batch):
        self.calls.append(("slow", sink.name))
        return 1 if sink.name in self.fail else 0

    def hand_back(self, sink, data, result):
        self.calls.append(("sent", sink.name, data, result))
        return 1 if sink.name in self.fail else 0


def encode(readings):
    return b"frames:" + bytes(len(readings))


@compiled
@pytest.mark.parametrize("kind", [SlottedOutbox, PlainOutbox])
def test_compiled_loop_sends_only_for_direct_outboxes_of_idle_lines(kind):
    busy_buffer, busy_temp, half_closed, lost = Line(), Line(), Line(), Line()
    lost.connected = 0
    busy_buffer.dataBuffer = b"held"
    busy_temp._tempDataBuffer.append(b"held")  # what FileDescriptor.write does
    busy_temp._tempDataLen += 4
    half_closed._writeDisconnected = True

    class Subclass(kind):  # type: ignore[misc,valid-type]
        pass

    sinks = [
        kind("direct", encode, Line()),
        kind("paused", encode, Line(), direct=False),
        kind("no-line", encode, None),
        kind("data-buffer", encode, busy_buffer),
        kind("temp-buffer", encode, busy_temp),
        kind("half-closed", encode, half_closed),
        kind("lost", encode, lost),
        Subclass("subclass", encode, Line()),
        kind("direct-2", encode, Line()),
    ]
    recorder = Recorder()
    batch = Batch([object(), object()])  # type: ignore[list-item]
    failed = fanout.extension.deliver(kind, recorder.slow, recorder.hand_back, sinks, batch)
    assert failed == 0
    data = encode(batch.readings)
    assert recorder.calls == [
        ("sent", "direct", data, -errno.EBADF),
        ("slow", "paused"),
        ("slow", "no-line"),
        ("slow", "data-buffer"),
        ("slow", "temp-buffer"),
        ("slow", "half-closed"),
        ("slow", "lost"),
        ("slow", "subclass"),
        ("sent", "direct-2", data, -errno.EBADF),
    ]


@compiled
def test_compiled_loop_encodes_once_per_encoder_and_counts_failures():
    calls: list[int] = []

    def counting(readings):
        calls.append(len(readings))
        return b"counted"

    def other(readings):
        return b"other"

    sinks = [SlottedOutbox(f"s{i}", counting if i % 3 else other, Line()) for i in range(9)]
    recorder = Recorder()
    recorder.fail = {"s1", "s4"}
    batch = Batch([object()])  # type: ignore[list-item]
    assert (
        fanout.extension.deliver(SlottedOutbox, recorder.slow, recorder.hand_back, sinks, batch)
        == 2
    )
    assert calls == [1], "batch.encoded memoises; the loop asks once per encoder"
    assert [c[2] for c in recorder.calls] == [
        b"other" if i % 3 == 0 else b"counted" for i in range(9)
    ]


@compiled
def test_compiled_loop_hands_odd_encodings_and_errors_to_the_slow_path():
    def not_bytes(readings):
        return "text"

    def broken(readings):
        raise ValueError("cannot encode")

    sinks = [SlottedOutbox("str", not_bytes, Line()), SlottedOutbox("raises", broken, Line())]
    recorder = Recorder()
    batch = Batch([object()])  # type: ignore[list-item]
    assert (
        fanout.extension.deliver(SlottedOutbox, recorder.slow, recorder.hand_back, sinks, batch)
        == 0
    )
    assert recorder.calls == [("slow", "str"), ("slow", "raises")]


@compiled
def test_compiled_loop_reads_each_sink_on_its_own_turn_whatever_python_did_before():
    """The loop reads ahead (prefetch) but decides nothing ahead.

    Python called for one sink may drop a later sink's transport, pause it, or
    shorten the list; the later sink is judged as it is when its turn comes,
    and a shortened list ends the loop early, without reading past its end.
    """
    lines = [Line() for _ in range(8)]
    sinks = [SlottedOutbox(f"s{i}", encode, lines[i]) for i in range(8)]
    sinks[0]._direct = False  # the slow path, where Python runs mid-loop

    recorder = Recorder()

    def slow(sink, batch):
        recorder.slow(sink, batch)
        if sink.name == "s0":
            sinks[1]._line = None  # dropped: nothing to send on
            sinks[2]._direct = False  # paused
            lines[3].connected = 0  # lost
            lines[4]._tempDataLen = 9  # a write queued behind
            del lines[:]  # the only other references to the transports
            del sinks[6:]  # unsubscribed
        return 0

    batch = Batch([object()])  # type: ignore[list-item]
    assert fanout.extension.deliver(SlottedOutbox, slow, recorder.hand_back, sinks, batch) == 0
    data = encode(batch.readings)
    assert recorder.calls == [
        ("slow", "s0"),
        ("slow", "s1"),
        ("slow", "s2"),
        ("slow", "s3"),
        ("slow", "s4"),
        ("sent", "s5", data, -errno.EBADF),
    ]


@compiled
def test_compiled_loop_lets_what_slow_raises_propagate():
    class Stop(Exception):
        pass

    def slow(sink, batch):
        raise Stop

    with pytest.raises(Stop):
        fanout.extension.deliver(SlottedOutbox, slow, None, [object()], Batch([]))
    with pytest.raises(TypeError):
        fanout.extension.deliver(SlottedOutbox, slow, None, (object(),), Batch([]))


# -- real loopback connections through a hub, both loops --------------------------------


def frames(readings) -> bytes:
    return b"".join(f"{r.sensor}={r.value};".encode() for r in readings)


def outbox_for(transport, counters, encode=frames) -> Outbox:
    return Outbox(
        write=writer_for(transport),
        encode=encode,
        clock=reactor,
        stall_timeout=60,
        on_give_up=lambda reason: None,
        counters=counters,
        line=line_for(transport),
    )


LOOPS = [
    pytest.param("compiled", marks=compiled),
    pytest.param("python"),
]


@pytest.fixture(params=LOOPS)
def loop(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(fanout, "deliver_each", fanout.deliver_each_python)
    else:
        assert fanout.deliver_each is not fanout.deliver_each_python
    return request.param


def send(hub: Hub, sensor: str, value) -> None:
    hub.ingest(f'{{"sensor":"{sensor}","value":{value}}}'.encode(), default_device="dev")


@pytest.mark.integration
@pytest_twisted.inlineCallbacks
def test_every_client_gets_the_bytes_in_order_and_a_closed_peer_costs_only_itself(loop):
    servers, clients, port = yield connections(6)
    counters = Counters()
    hub = Hub(reactor, counters=counters)
    outboxes = [outbox_for(keeper.transport, counters) for keeper in servers]

    class Broken:
        def deliver(self, batch):
            raise RuntimeError("broken sink")

    try:
        for outbox in outboxes[:3]:
            hub.subscribe(outbox)
        hub.subscribe(Broken())
        for outbox in outboxes[3:]:
            hub.subscribe(outbox)
        clients[1].transport.abortConnection()  # its hub side now fails to send (RST/EPIPE)
        yield until(lambda: not servers[1].transport.connected, 2)
        expected = b""
        for turn in range(30):
            send(hub, "a", turn)
            send(hub, "b", turn * 2)
            expected += f"a={turn};b={turn * 2};".encode()
            hub.flush()
        live = [c for i, c in enumerate(clients) if i != 1]
        yield until(lambda: all(len(c.received) >= len(expected) for c in live))
        assert [bytes(c.received) for c in live] == [expected] * 5
        # Each turn: two readings to 6 outboxes (the closed one's send is handed to
        # Twisted, which drops it: not a failure) and none to the broken sink.
        assert hub.stats.delivered == 30 * 2 * 6
    finally:
        yield close(clients, port)


@pytest.mark.integration
@pytest_twisted.inlineCallbacks
def test_a_full_socket_gets_the_remainder_whole_and_in_order(loop):
    servers, clients, port = yield connections(2)
    counters = Counters()
    hub = Hub(reactor, counters=counters)

    def big(readings):  # 200 KB a reading: a few turns overfill any socket buffer
        return frames(readings) * 20_000

    slow, fast = (outbox_for(keeper.transport, counters, big) for keeper in servers)
    try:
        hub.subscribe(slow)
        hub.subscribe(fast)
        clients[0].transport.pauseProducing()  # stops reading: its socket fills
        expected = b""
        held = []
        for turn in range(60):  # 12 MB
            send(hub, f"s{turn}", turn)
            expected += f"s{turn}={turn};".encode() * 20_000
            hub.flush()
            transport = servers[0].transport
            held.append(bool(transport._tempDataBuffer or transport.dataBuffer))
        assert any(held), "some remainder waited in Twisted's buffer"
        clients[0].transport.resumeProducing()
        yield until(lambda: all(len(c.received) >= len(expected) for c in clients))
        assert bytes(clients[0].received) == expected
        assert bytes(clients[1].received) == expected
    finally:
        yield close(clients, port)


@pytest.mark.integration
@pytest_twisted.inlineCallbacks
def test_paused_and_snapshotting_outboxes_are_left_to_python(loop):
    servers, clients, port = yield connections(3)
    counters = Counters()
    hub = Hub(reactor, counters=counters)
    direct, paused, snapshotting = (outbox_for(k.transport, counters) for k in servers)
    try:
        for outbox in (direct, paused, snapshotting):
            hub.subscribe(outbox, snapshot=False)
        paused.pauseProducing()
        snapshotting.pauseProducing()
        for i in range(600):  # over SNAPSHOT_CHUNK: a snapshot sent chunk by chunk
            send(hub, f"old{i}", i)
        hub.flush()  # the direct one takes them live, the paused two hold them
        snapshot_readings = hub.latest()
        assert len(snapshot_readings) == 600
        snapshotting.send_snapshot(snapshot_readings)
        assert snapshotting.sending_snapshot and not snapshotting._direct
        send(hub, "x", 1)
        send(hub, "x", 2)
        hub.flush()
        assert len(clients[1].received) == len(clients[2].received) == 0
        assert paused.backlog == 601, "held, newest per sensor"
        paused.resumeProducing()
        snapshotting.resumeProducing()
        live = frames(snapshot_readings) + b"x=1;x=2;"
        conflated = frames(snapshot_readings) + b"x=2;"
        snap = frames(snapshot_readings)
        yield until(lambda: len(clients[2].received) >= len(snap) + len(conflated))
        yield until(lambda: len(clients[1].received) >= len(conflated))
        assert bytes(clients[0].received) == live
        assert bytes(clients[1].received) == conflated
        assert bytes(clients[2].received) == snap + conflated
    finally:
        yield close(clients, port)
