"""The WAMP router over loopback with autobahn-python clients (every serializer it offers).

The hub runs in-process (``tantra.tap.build_service``) on 127.0.0.1 port 0;
every test stops it, which says GOODBYE to WAMP clients and closes sockets.
``running_hub`` and ``Client`` are also used by ``test_wamp_js.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import (
    WampWebSocketClientFactory,
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import create_transport_serializer
from autobahn.wamp.types import (
    ComponentConfig,
    PublishOptions,
    RegisterOptions,
    SubscribeOptions,
)
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol

from tantra.tap import TantraService
from tests.support.inprocess import start_hub

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
SERIALIZERS = ["json", "msgpack", "cbor", "json.batched", "msgpack.batched", "cbor.batched"]


def within(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def eventually(condition: Callable[[], Any], seconds: float = TIMEOUT) -> Any:
    """Poll (bounded) until ``condition()`` is truthy; returns its value."""
    for _ in range(int(seconds / 0.02)):
        value = condition()
        if value:
            return value
        await sleep(0.02)
    raise AssertionError(f"condition not met within {seconds}s")


@attrs.define
class RunningHub:
    service: TantraService
    clients: list[Client] = attrs.Factory(list)
    dashboards: list[Dashboard] = attrs.Factory(list)

    def port(self, kind: str) -> int:
        [listener] = [lst for lst in self.service.listeners if lst.kind == kind]
        return int(listener.address.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port('http')}/wamp"

    async def join(self, serializer: str = "json", realm: str = "tantra") -> Client:
        client = await self.connect(serializer, realm)
        return await within(client.joined)

    async def connect(self, serializer: str = "json", realm: str = "tantra") -> Client:
        made: list[Client] = []

        def make() -> Client:
            made.append(Client(ComponentConfig(realm)))
            return made[-1]

        factory = WampWebSocketClientFactory(
            make, url=self.url, serializers=[create_transport_serializer(serializer)]
        )
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{self.port('http')}")
        await within(endpoint.connect(factory))
        await eventually(lambda: made)
        self.clients.append(made[0])
        return made[0]

    async def dashboard(self, query: str = "") -> Dashboard:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.port('http')}/{query}")
        factory.protocol = Dashboard
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{self.port('http')}")
        protocol = await within(endpoint.connect(factory))
        await within(protocol.opened)
        self.dashboards.append(protocol)
        return protocol

    async def device_sends(self, line: bytes) -> None:
        """A raw TCP device: connect, send one line, hang up."""
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{self.port('tcp')}")
        protocol = await within(endpoint.connect(Factory.forProtocol(Protocol)))
        protocol.transport.write(line + b"\n")
        protocol.transport.loseConnection()


class Left(Exception):
    def __init__(self, details):
        super().__init__(f"{details.reason}: {details.message}")
        self.reason = details.reason
        self.message = details.message


class Client(ApplicationSession):
    """An autobahn-python session with Deferreds for joined and disconnected."""

    def __init__(self, config):
        super().__init__(config)
        self.joined: defer.Deferred = defer.Deferred()
        self.gone: defer.Deferred = defer.Deferred()

    def onJoin(self, details):
        self.joined.callback(self)

    def onLeave(self, details):
        if not self.joined.called:
            self.joined.errback(Left(details))
        super().onLeave(details)

    def onDisconnect(self):
        if not self.gone.called:
            self.gone.callback(None)


class Dashboard(WebSocketClientProtocol):
    """A plain WebSocket dashboard, as the Node.js relay's clients are."""

    def __init__(self):
        super().__init__()
        self.opened: defer.Deferred = defer.Deferred()
        self.gone: defer.Deferred = defer.Deferred()
        self.received: list[dict] = []

    def onOpen(self):
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.received.append(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        if not self.gone.called:
            self.gone.callback(code)


async def run_hub(**overrides) -> RunningHub:
    service, _ = await start_hub(**overrides)
    return RunningHub(service)


async def stop_hub(hub: RunningHub) -> None:
    await within(defer.maybeDeferred(hub.service.stopService))
    waiting = [c.gone for c in hub.clients if c.is_connected() or not c.gone.called]
    waiting += [d.gone for d in hub.dashboards]
    await within(defer.DeferredList(waiting))


@pytest_twisted.async_yield_fixture
async def hub():
    running = await run_hub()
    try:
        yield running
    finally:
        await stop_hub(running)


class Inbox:
    """Events a subscription handler received."""

    def __init__(self):
        self.events: list[tuple[tuple, dict, Any]] = []

    def __call__(self, *args, details=None, **kwargs):
        self.events.append((args, kwargs, details))

    async def count(self, n: int) -> list:
        await eventually(lambda: len(self.events) >= n)
        return self.events


# -- tests ------------------------------------------------------------


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.ensureDeferred
async def test_patterns_device_readings_retained_and_latest(hub, serializer):
    client = await hub.join(serializer)
    inboxes = {}
    for name, topic, match in [
        ("exact", "tantra.reading.farm-1.soilMoisture", "exact"),
        ("prefix", "tantra.reading.farm-1", "prefix"),
        ("wildcard", "tantra.reading..soilMoisture", "wildcard"),
    ]:
        inboxes[name] = Inbox()
        await within(
            client.subscribe(
                inboxes[name], topic, options=SubscribeOptions(match=match, details=True)
            )
        )
    await hub.device_sends(
        b'{"device": "farm-1", "sensor": "soilMoisture", "value": 42, "unit": "%"}'
    )
    for name, inbox in inboxes.items():
        [(args, kwargs, details)] = await inbox.count(1)
        assert args[0]["value"] == 42 and args[0]["unit"] == "%" and kwargs == {}
        assert details.topic == "tantra.reading.farm-1.soilMoisture", name

    # A device that is not farm-1, and a sensor no wildcard wants.
    await hub.device_sends(
        b'[{"device": "farm-2", "sensor": "rpm", "value": 1200},'
        b' {"device": "farm-1", "sensor": "rpm", "value": 900}]'
    )
    prefix_events = await inboxes["prefix"].count(2)
    assert prefix_events[1][0][0]["sensor"] == "rpm"
    assert len(inboxes["wildcard"].events) == 1

    # Retained events on a *prefix* subscription come from the hub's last-value cache.
    late = await hub.join(serializer)
    retained = Inbox()
    await within(
        late.subscribe(
            retained,
            "tantra.reading.farm-1",
            options=SubscribeOptions(match="prefix", get_retained=True, details=True),
        )
    )
    events = await retained.count(2)
    assert sorted(details.topic for _, _, details in events) == [
        "tantra.reading.farm-1.rpm",
        "tantra.reading.farm-1.soilMoisture",
    ]
    assert all(details.retained for _, _, details in events)

    latest = await within(late.call("tantra.latest", device="farm-1"))
    assert {(r["sensor"], r["value"]) for r in latest} == {("soilMoisture", 42), ("rpm", 900)}
    assert await within(late.call("tantra.latest", None, "rpm")) == [
        r.to_dict() for r in hub.service.hub.latest() if r.sensor == "rpm"
    ]
    sensors = await within(late.call("tantra.sensors"))
    assert {(s["device"], s["sensor"]) for s in sensors} == {
        ("farm-1", "soilMoisture"),
        ("farm-2", "rpm"),
        ("farm-1", "rpm"),
    }


@pytest.mark.parametrize("serializer", ["json", "msgpack.batched", "cbor"])
@pytest_twisted.ensureDeferred
async def test_a_wamp_reading_reaches_dashboards_and_subscribers_once(hub, serializer):
    dashboard = await hub.dashboard("?device=farm-9")
    publisher = await hub.join(serializer)
    watcher = await hub.join("json")
    inbox = Inbox()
    await within(
        watcher.subscribe(inbox, "tantra.reading", options=SubscribeOptions(match="prefix"))
    )
    own = Inbox()
    await within(publisher.subscribe(own, "tantra.reading.farm-9.soilMoisture"))
    publication = await within(
        publisher.publish(
            "tantra.reading.farm-9.soilMoisture",
            {"value": 17.5, "unit": "%", "seq": 3},
            options=PublishOptions(acknowledge=True),
        )
    )
    assert publication.id
    await eventually(lambda: dashboard.received)
    assert dashboard.received[0]["device"] == "farm-9"
    assert dashboard.received[0]["value"] == 17.5 and dashboard.received[0]["seq"] == 3
    [(args, _, _)] = await inbox.count(1)
    assert args[0] == dashboard.received[0]
    # As kwargs, with exclude_me=False: the publisher gets its own reading, once.
    await within(
        publisher.publish(
            "tantra.reading.farm-9.soilMoisture",
            value=18,
            options=PublishOptions(acknowledge=True, exclude_me=False),
        )
    )
    await eventually(lambda: len(dashboard.received) == 2)
    await own.count(1)
    await sleep(0.1)
    assert len(own.events) == 1 and len(inbox.events) == 2 and len(dashboard.received) == 2

    with pytest.raises(ApplicationError) as refused:
        await within(
            publisher.publish(
                "tantra.reading.farm-9.soilMoisture",
                {"value": "wet"},
                options=PublishOptions(acknowledge=True),
            )
        )
    assert refused.value.error == "wamp.error.invalid_argument"
    assert "finite number" in refused.value.args[0]
    assert hub.service.hub.stats.rejected["invalid_reading"] == 1


@pytest_twisted.ensureDeferred
async def test_plain_pubsub_between_clients_with_retain_and_exclusions(hub):
    alice = await hub.join("cbor")
    bob = await hub.join("msgpack")
    inbox = Inbox()
    await within(
        bob.subscribe(inbox, "app.chat", options=SubscribeOptions(match="prefix", details=True))
    )
    await within(alice.publish("app.chat.room1", "hi", options=PublishOptions(acknowledge=True)))
    [(args, _, details)] = await inbox.count(1)
    assert args == ("hi",) and details.topic == "app.chat.room1"
    await within(
        alice.publish(
            "app.chat.room1",
            "not for bob",
            options=PublishOptions(acknowledge=True, exclude=[bob._session_id]),
        )
    )
    await within(
        alice.publish(
            "app.chat.room2", "kept", options=PublishOptions(acknowledge=True, retain=True)
        )
    )
    await inbox.count(2)
    assert [e[0] for e in inbox.events] == [("hi",), ("kept",)]
    carol = await hub.join("json")
    retained = Inbox()
    await within(
        carol.subscribe(
            retained, "app.chat", options=SubscribeOptions(match="prefix", get_retained=True)
        )
    )
    [(args, _, _)] = await retained.count(1)
    assert args == ("kept",)


@pytest_twisted.ensureDeferred
async def test_rpc_between_clients_and_a_callee_that_leaves(hub):
    callee = await hub.join("msgpack")
    caller = await hub.join("cbor.batched")
    registration = await within(callee.register(lambda a, b: a + b, "app.add"))
    assert await within(caller.call("app.add", 2, 3)) == 5

    never: defer.Deferred = defer.Deferred()
    await within(callee.register(lambda: never, "app.hang"))
    pending = caller.call("app.hang")
    await sleep(0.1)
    callee.leave()
    with pytest.raises(ApplicationError) as failed:
        await within(pending)
    assert failed.value.error == "wamp.error.canceled"
    with pytest.raises(ApplicationError) as unknown:
        await within(caller.call("app.add", 1, 1))
    assert unknown.value.error == "wamp.error.no_such_procedure"
    assert registration.id
    with pytest.raises(ApplicationError) as taken:
        await within(caller.register(lambda: None, "tantra.latest"))
    assert taken.value.error == "wamp.error.procedure_already_exists"
    with pytest.raises(ApplicationError):
        await within(
            caller.register(lambda: None, "app.x", options=RegisterOptions(match="prefix"))
        )


@pytest_twisted.ensureDeferred
async def test_unknown_realm_is_aborted(hub):
    client = await hub.connect("json", realm="nowhere")
    with pytest.raises(Left) as left:
        await within(client.joined)
    assert left.value.reason == "wamp.error.no_such_realm"
    await within(client.gone)


class RawWamp(WebSocketClientProtocol):
    """Speaks the WAMP subprotocol but sends whatever a test wants."""

    def __init__(self):
        super().__init__()
        self.opened: defer.Deferred = defer.Deferred()
        self.gone: defer.Deferred = defer.Deferred()
        self.received: list[Any] = []
        self.close_code: int | None = None

    def onOpen(self):
        self.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.received.append(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        self.close_code = code
        if not self.gone.called:
            self.gone.callback(code)


@pytest.mark.parametrize(
    ("first", "then", "detail"),
    [
        (b"this is not json", None, "invalid serialization"),
        (b'[1, "tantra", {}]', None, "roles"),  # HELLO without roles
        (b'[32, 1, {}, "a.b"]', None, "before HELLO"),  # SUBSCRIBE first
        (b'[1, "tantra", {"roles": {"subscriber": {}}}]', b"[36, 1, 2, {}]", "EVENT"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_protocol_violations_are_aborted(hub, first, then, detail):
    factory = WebSocketClientFactory(hub.url, protocols=["wamp.2.json"])
    factory.protocol = RawWamp
    endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{hub.port('http')}")
    raw = await within(endpoint.connect(factory))
    await within(raw.opened)
    raw.sendMessage(first)
    if then is not None:
        await eventually(lambda: raw.received)
        assert raw.received[0][0] == 2  # WELCOME
        raw.sendMessage(then)
    await within(raw.gone)
    abort = raw.received[-1]
    assert abort[0] == 3 and abort[2] == "wamp.error.protocol_violation"
    assert detail in abort[1]["message"]
    assert raw.close_code == 1000
    assert hub.service.components["wamp"].router.stats.protocol_violations == 1


@pytest_twisted.ensureDeferred
async def test_hub_stop_says_goodbye_and_cleans_up(hub):
    client = await hub.join("json")
    await within(client.subscribe(Inbox(), "a.b"))
    await within(client.register(lambda: 1, "app.one"))
    router = hub.service.components["wamp"].router
    assert len(router.sessions) == 1
    await within(defer.maybeDeferred(hub.service.stopService))
    await within(client.gone)
    assert router.sessions == {} and len(router.broker.subscriptions) == 0
    assert "app.one" not in router.dealer.procedures


@pytest_twisted.ensureDeferred
async def test_a_stalled_wamp_subscriber_is_bounded_and_dropped():
    hub = await run_hub(**{"stall-timeout": 0.5})
    try:
        client = await hub.join("json")
        inbox = Inbox()
        await within(
            client.subscribe(inbox, "tantra.reading", options=SubscribeOptions(match="prefix"))
        )
        # Small socket buffers on both ends, and a client that stops reading:
        # the server's transport soon says "pause" to the session's outbox.
        [server] = hub.service.components["wamp"].connections
        server.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client_transport = client._transport.transport
        client_transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client_transport.pauseProducing()
        core = hub.service.hub
        for turn in range(30):
            batch = [
                {"device": f"d{turn % 3}", "sensor": f"s{n}", "value": turn, "unit": "x" * 16}
                for n in range(100)
            ]
            core.ingest(json.dumps(batch).encode(), default_device="x")
            await sleep(0.001)
        stats = core.stats
        assert stats.conflated > 0  # held: one event per sensor while paused
        assert server._outbox.backlog <= 300
        await eventually(lambda: stats.clients_dropped["stalled"] == 1)
        client_transport.resumeProducing()
        await within(client.gone)
        assert hub.service.components["wamp"].router.sessions == {}
        assert len(inbox.events) < 3000
    finally:
        await stop_hub(hub)


class AckingDevice(Protocol):
    """A TCP device that sends its next reading when the last one is acked, and notes,
    per ack, whether the hub was still sending some client's retained events."""

    def __init__(self, sending_retained: Callable[[], bool]):
        self.sending_retained = sending_retained
        self.acks: list[tuple[int, bool]] = []
        self.buffer = b""
        self.seq = 0

    def connectionMade(self):
        self.send_next()

    def send_next(self):
        self.seq += 1
        line = {"sensor": "ping", "value": self.seq, "unit": "x", "seq": self.seq}
        self.transport.write(json.dumps(line).encode() + b"\n")

    def dataReceived(self, data):
        self.buffer += data
        *whole, self.buffer = self.buffer.split(b"\n")
        for line in whole:
            self.acks.append((json.loads(line)["ack"], self.sending_retained()))
            self.send_next()


@pytest_twisted.ensureDeferred
async def test_a_large_get_retained_reaches_a_real_subscriber_while_a_device_is_acked():
    """6 000 retained readings to autobahn-python, paced over reactor turns: the
    subscriber gets each once, and a TCP device's acks keep coming meanwhile."""
    hub = await run_hub()
    try:
        core, sensors = hub.service.hub, 6000
        for start in range(0, sensors, 500):
            batch = [
                {"device": f"d{n % 60}", "sensor": f"s{n}", "value": n, "unit": "%"}
                for n in range(start, start + 500)
            ]
            core.ingest(json.dumps(batch).encode(), default_device="x")
        await eventually(lambda: len(core.latest()) >= sensors)
        broker = hub.service.components["wamp"].router.broker
        client = await hub.join("json")
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{hub.port('tcp')}")
        device = await within(
            endpoint.connect(
                Factory.forProtocol(lambda: AckingDevice(lambda: bool(broker._pacers)))
            )
        )
        await eventually(lambda: len(device.acks) >= 1)
        inbox = Inbox()
        await within(
            client.subscribe(
                inbox,
                "tantra.reading.",
                options=SubscribeOptions(match="prefix", get_retained=True, details=True),
            )
        )
        retained = lambda: [d.topic for _, _, d in inbox.events if d.retained]  # noqa: E731
        await eventually(lambda: len(retained()) >= sensors, seconds=60.0)
        await eventually(lambda: not broker._pacers)
        topics = retained()
        assert len(topics) == len(set(topics))  # each once
        assert {f"tantra.reading.d{n % 60}.s{n}" for n in range(sensors)} <= set(topics)
        during = [seq for seq, sending in device.acks if sending]
        assert len(during) >= 2  # the device was served between chunks
        assert [seq for seq, _ in device.acks] == list(range(1, len(device.acks) + 1))
        device.transport.loseConnection()
    finally:
        await stop_hub(hub)
