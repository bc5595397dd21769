"""WAMP with ``--auth``: autobahn-python's ticket client, roles, scope on subscribe/publish/call."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.twisted.websocket import (
    WampWebSocketClientFactory,
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import create_transport_serializer
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions
from test_wamp_loopback import Client, Inbox, Left, RunningHub, eventually, sleep, stop_hub, within
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString

from tantra.cli import main as cli_main
from tantra.security.scopes import Scope, parse_scope
from tantra.security.tokens import TokenTable, read_tokens
from tantra.security.wamp import subscription_within
from tests.support.inprocess import start_hub

pytestmark = pytest.mark.integration


class TicketClient(Client):
    """Joins with WAMP-Ticket (or anonymously when ``ticket`` is None)."""

    ticket: str | None = None

    def onConnect(self):
        if self.ticket is None:
            self.join(self.config.realm)
        else:
            self.join(self.config.realm, authmethods=["ticket"], authid="whoever")

    def onChallenge(self, challenge):
        assert challenge.method == "ticket"
        return self.ticket


class AuthHub(RunningHub):
    async def login(self, ticket: str | None, serializer: str = "json") -> TicketClient:
        made: list[TicketClient] = []

        def make() -> TicketClient:
            client = TicketClient(ComponentConfig("tantra"))
            client.ticket = ticket
            made.append(client)
            return client

        factory = WampWebSocketClientFactory(
            make, url=self.url, serializers=[create_transport_serializer(serializer)]
        )
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{self.port('http')}")
        await within(endpoint.connect(factory))
        await eventually(lambda: made)
        self.clients.append(made[0])
        return made[0]


@pytest.fixture
def tokens(tmp_path, capsys):
    path = str(tmp_path / "auth.json")

    def add(*args) -> str:
        assert cli_main(["token", "add", "--auth", path, *args]) == 0
        return json.loads(capsys.readouterr().out)["token"]

    return {
        "path": path,
        "pump": add("--kind", "device", "pump"),
        "other": add("--kind", "device", "other"),
        "reader": add("--kind", "reader", "--scope", "pump/*", "ro"),
        "admin": add("--kind", "admin", "root"),
    }


@pytest_twisted.async_yield_fixture
async def hub(tokens):
    service, _ = await start_hub(auth=tokens["path"])
    running = AuthHub(service)
    try:
        yield running
    finally:
        await stop_hub(running)


@pytest_twisted.ensureDeferred
async def test_anonymous_and_bad_tickets_are_refused(hub, tokens):
    for ticket, reason in [
        (None, "wamp.error.no_auth_method"),
        ("tantra_wrong", "wamp.error.authentication_failed"),
    ]:
        client = await hub.login(ticket)
        with pytest.raises(Left) as left:
            await within(client.joined)
        assert left.value.reason == reason
    refused = hub.service.hub.counters.auth.refused
    assert refused["wamp:no_token"] == 1 and refused["wamp:bad_token"] == 1


@pytest_twisted.ensureDeferred
async def test_ticket_roles_and_scoped_subscriptions(hub, tokens):
    reader = await within((await hub.login(tokens["reader"])).joined)
    assert (reader._authid, reader._authrole) == ("ro", "reader")
    device = await within((await hub.login(tokens["pump"], "msgpack")).joined)
    assert device._authrole == "device"
    admin = await within((await hub.login(tokens["admin"], "cbor")).joined)

    inbox = Inbox()
    await reader.subscribe(inbox, "tantra.reading.pump.", SubscribeOptions(match="prefix"))
    for topic, match in [
        ("tantra.reading", "prefix"),
        ("tantra.reading.pump", "prefix"),  # devices pump-2, pumpkin... too
        ("tantra.reading..flow", "wildcard"),
        ("tantra.reading.other.flow", "exact"),
        ("chat", "exact"),
    ]:
        with pytest.raises(ApplicationError) as refused:
            await reader.subscribe(inbox, topic, SubscribeOptions(match=match))
        assert refused.value.error == "wamp.error.not_authorized"
    # A reader may not publish; a device only as itself; the admin anywhere.
    with pytest.raises(ApplicationError):
        await reader.publish(
            "tantra.reading.pump.flow", {"value": 1}, options=PublishOptions(acknowledge=True)
        )
    with pytest.raises(ApplicationError) as refused:
        await device.publish(
            "tantra.reading.other.flow", {"value": 1}, options=PublishOptions(acknowledge=True)
        )
    assert "publishes as device pump only" in refused.value.args[0]
    await device.publish(
        "tantra.reading.pump.flow", {"value": 2}, options=PublishOptions(acknowledge=True)
    )
    await admin.publish(
        "tantra.reading.other.flow", {"value": 3}, options=PublishOptions(acknowledge=True)
    )
    events = await inbox.count(1)
    await sleep(0.2)
    assert [(e[0][0]["device"], e[0][0]["value"]) for e in events] == [("pump", 2)]
    # tantra.latest and tantra.sensors answer within the scope.
    assert [r["device"] for r in await reader.call("tantra.latest")] == ["pump"]
    assert [s["device"] for s in await reader.call("tantra.sensors")] == ["pump"]
    assert sorted(r["device"] for r in await admin.call("tantra.latest")) == ["other", "pump"]
    with pytest.raises(ApplicationError):
        await reader.register(lambda: 1, "com.example.x")
    denied = hub.service.hub.counters.auth.wamp_denied
    assert denied["subscribe"] == 5 and denied["publish"] == 2 and denied["register"] == 1


@pytest_twisted.ensureDeferred
async def test_revoking_a_token_ends_its_session(hub, tokens):
    reader = await within((await hub.login(tokens["reader"])).joined)
    admin = await within((await hub.login(tokens["admin"])).joined)
    table = read_tokens(tokens["path"])
    from tantra.security.tokens import write_tokens

    write_tokens(tokens["path"], TokenTable(t for t in table.by_name.values() if t.name != "ro"))
    await within(reader.gone, 3.0)
    assert admin.is_connected()


@pytest.mark.parametrize(
    "topic,match,allowed",
    [
        ("tantra.reading.farm-1.t", "exact", True),
        ("tantra.reading.farm-1", "prefix", False),  # farm-1x... too
        ("tantra.reading.farm-1.", "prefix", True),
        ("tantra.reading.farm-", "prefix", True),  # farm-* covers farm-anything
        ("tantra.reading.barn.t", "exact", False),
        ("tantra.reading..t", "wildcard", False),
        ("tantra.reading.farm-2.", "wildcard", True),
        ("tantra", "prefix", False),
        ("other.topic", "exact", False),
    ],
)
def test_subscription_within_scope(topic, match, allowed):
    scope = Scope([parse_scope("farm-*/*")])
    assert subscription_within(scope, topic, match) is allowed


class Probe(WebSocketClientProtocol):
    """Opens, then closes at once; remembers whether it opened."""

    opened = False

    def onOpen(self):
        self.opened = True
        self.sendClose()


@pytest_twisted.ensureDeferred
async def test_wamp_origin_list(tokens):

    service, ports = await start_hub(
        auth=tokens["path"], **{"allowed-origins": "https://ok.example"}
    )
    try:
        statuses = []
        for origin in ("https://ok.example", "https://evil.example"):
            factory = WebSocketClientFactory(
                f"ws://127.0.0.1:{ports['http']}/wamp", origin=origin, protocols=["wamp.2.json"]
            )
            factory.protocol = Probe
            endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{ports['http']}")
            protocol = await within(endpoint.connect(factory))
            await within(protocol.is_closed)
            statuses.append(protocol.opened)
        assert statuses == [True, False]
        assert service.hub.counters.auth.origin_refused == 1
    finally:
        await within(service.stopService())
