"""The WAMP hardening over loopback: a raw client sends what the spec forbids, real clients
(autobahn-python, a WebSocket dashboard) alongside lose nothing; large results arrive.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.exception import PayloadExceededError
from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.wamp.types import CallOptions, SubscribeOptions
from test_wamp_loopback import (
    Inbox,
    RawWamp,
    RunningHub,
    eventually,
    run_hub,
    stop_hub,
    within,
)
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString

pytestmark = pytest.mark.integration


@pytest_twisted.async_yield_fixture
async def running():
    hub = await run_hub()
    try:
        yield hub
    finally:
        await stop_hub(hub)


async def raw_joined(hub: RunningHub) -> RawWamp:
    factory = WebSocketClientFactory(hub.url, protocols=["wamp.2.json"])
    factory.protocol = RawWamp
    endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{hub.port('http')}")
    raw = await within(endpoint.connect(factory))
    await within(raw.opened)
    raw.sendMessage(b'[1, "tantra", {"roles": {"subscriber": {}, "publisher": {}, "caller": {}}}]')
    await eventually(lambda: raw.received)
    assert raw.received.pop(0)[0] == 2  # WELCOME
    return raw


@pytest_twisted.ensureDeferred
async def test_invalid_uris_get_error_over_the_wire_and_others_lose_nothing(running):
    hub = running
    good = await hub.join("cbor")
    inbox = Inbox()
    await within(good.subscribe(inbox, "tantra.reading.", options=SubscribeOptions(match="prefix")))
    dashboard = await hub.dashboard()
    raw = await raw_joined(hub)
    bad = [
        [32, 1, {}, "a b"],
        [16, 2, {"acknowledge": True}, "com..x", [1]],
        [48, 3, {}, "x y"],
        [64, 4, {}, "x..y"],
        [32, 5, {}, "a." * 300 + "b"],
    ]
    for message in bad:
        raw.sendMessage(json.dumps(message).encode())
    await eventually(lambda: len(raw.received) == len(bad))
    assert [m[:5] for m in raw.received] == [
        [8, kind, request, {}, "wamp.error.invalid_uri"] for kind, request, *_ in bad
    ]
    raw.received.clear()
    raw.sendMessage(b'[32, 6, {}, "com.example.fine"]')  # the session is still open
    await eventually(lambda: raw.received)
    assert raw.received[0][:2] == [33, 6] and raw.close_code is None

    await hub.device_sends(b'{"device": "farm-1", "sensor": "probe", "value": 1, "unit": "%"}')
    [(args, _, _)] = await inbox.count(1)
    assert args[0]["sensor"] == "probe"
    readings = await eventually(
        lambda: [m for m in dashboard.received if m.get("sensor") == "probe"]
    )
    assert len(readings) == 1


@pytest_twisted.ensureDeferred
async def test_tantra_latest_beyond_64k_is_answered_whole_in_pages_and_in_pieces():
    hub = await run_hub(**{"wamp-max-outgoing": 65536})
    try:
        lines = [
            {"device": f"d{n % 10}", "sensor": f"s{n}", "value": n, "unit": "%"}
            for n in range(1500)
        ]
        for start in range(0, len(lines), 250):  # each line within --max-line
            await hub.device_sends(json.dumps(lines[start : start + 250]).encode())
        client = await hub.join("msgpack")
        await eventually(lambda: len(hub.service.hub.latest()) == 1500)

        # autobahn-python maps wamp.error.payload_size_exceeded to its PayloadExceededError.
        with pytest.raises(PayloadExceededError, match="over the limit of 65536 bytes"):
            await within(client.call("tantra.latest"))

        pieces: list = []
        final = await within(
            client.call("tantra.latest", options=CallOptions(on_progress=pieces.append))
        )
        whole = [r for piece in pieces for r in piece] + final
        assert len(pieces) >= 1 and len(whole) == 1500

        page = await within(client.call("tantra.latest", limit=1000))
        rest = await within(
            client.call(
                "tantra.latest", limit=1000, after=f"{page[-1]['device']}.{page[-1]['sensor']}"
            )
        )
        assert len(page) == 1000 and len(rest) == 500
        assert client.is_connected()
    finally:
        await stop_hub(hub)
