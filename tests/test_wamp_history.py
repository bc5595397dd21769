"""``tantra.history`` and ``tantra.aggregate`` over loopback with autobahn-python clients.

The in-process hub keeps its history in a SQLite file in a tmp dir; answers
are compared with the REST API's for the same question (same semantics).
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import threads

from tests.test_wamp_loopback import eventually, run_hub, stop_hub, within

pytestmark = pytest.mark.integration


async def api(hub, path: str):
    """GET from the REST API in a thread (the hub runs on this reactor)."""

    def get():
        url = f"http://127.0.0.1:{hub.port('http')}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    return await within(threads.deferToThread(get))


async def seeded(tmp_path, **overrides):
    hub = await run_hub(store=f"sqlite:{tmp_path / 'h.sqlite3'}", **overrides)
    lines = [{"device": "farm-1", "sensor": "t", "value": i, "seq": i} for i in range(30)]
    lines += [{"device": "farm-2", "sensor": "t", "value": 100 + i} for i in range(5)]
    await hub.device_sends(json.dumps(lines).encode())
    stats = hub.service.hub.counters.store
    await eventually(lambda: stats.stored >= 35)
    return hub


@pytest.mark.parametrize("serializer", ["json", "cbor"])
@pytest_twisted.ensureDeferred
async def test_history_pages_and_aggregates_answer_as_the_api_does(tmp_path, serializer):
    hub = await seeded(tmp_path)
    try:
        client = await hub.join(serializer)
        got, cursor, pages = [], None, 0
        while True:
            page = await within(
                client.call("tantra.history", "farm-1", None, limit=7, cursor=cursor)
            )
            got += page["readings"]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert pages == 5 and [r["value"] for r in got] == list(range(30))
        from_api = await api(hub, "/api/v1/readings?device=farm-1&limit=100")
        assert got == from_api["readings"]
        assert all(isinstance(r["id"], int) for r in got)

        both = await within(client.call("tantra.history", device=["farm-1", "farm-2"], limit=100))
        assert len(both["readings"]) == 35 and both["next"] is None
        newest = await within(client.call("tantra.history", "farm-2", order="desc", limit=1))
        assert newest["readings"][0]["value"] == 104

        buckets = await within(
            client.call("tantra.aggregate", "farm-1", "t", "-1h", every="1m", fn=["avg", "count"])
        )
        from_api = await api(
            hub, "/api/v1/aggregate?device=farm-1&sensor=t&from=-1h&every=1m&fn=avg,count"
        )
        assert buckets["series"] == from_api["series"] and buckets["step"] == 60_000
        assert sum(b["count"] for b in buckets["series"][0]["buckets"]) == 30

        latest = await within(client.call("tantra.latest", device="farm-1"))
        assert latest[0]["id"] == got[-1]["id"], "tantra.latest carries the id too"
    finally:
        await stop_hub(hub)


@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_invalid_argument_errors_naming_the_parameter(tmp_path):
    hub = await seeded(tmp_path)
    try:
        client = await hub.join()
        for kwargs, says in [
            ({"from": "yesterday"}, "from: 'yesterday' is not a time"),
            ({"limit": 0}, "limit: '0' is not a whole number from 1 to 10000"),
            ({"limit": True}, "limit True has the wrong type"),
            ({"device": "no/slash"}, "device: 'no/slash' is not a name"),
            ({"cursor": "junk"}, "cursor: not a cursor this API returned"),
            ({"colour": "red"}, "has no argument 'colour'"),
        ]:
            with pytest.raises(ApplicationError) as raised:
                await within(client.call("tantra.history", **kwargs))
            assert raised.value.error == "wamp.error.invalid_argument"
            assert says in raised.value.args[0]
        with pytest.raises(ApplicationError) as raised:
            await within(client.call("tantra.aggregate", every="1ms", **{"from": 0}))
        assert "every: 1ms gives" in raised.value.args[0]
        # the session is fine afterwards
        page = await within(client.call("tantra.history", "farm-2"))
        assert len(page["readings"]) == 5
    finally:
        await stop_hub(hub)


@pytest_twisted.ensureDeferred
async def test_a_page_is_cut_to_fit_the_outgoing_limit_and_says_where_to_go_on(tmp_path):
    hub = await seeded(tmp_path, **{"wamp-max-outgoing": 2048})
    try:
        client = await hub.join()
        got, cursor, pages = [], None, 0
        while True:
            page = await within(client.call("tantra.history", "farm-1", limit=1000, cursor=cursor))
            assert len(json.dumps(page, separators=(",", ":"))) < 2048
            got += page["readings"]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert pages > 1 and [r["value"] for r in got] == list(range(30))
    finally:
        await stop_hub(hub)


@pytest_twisted.ensureDeferred
async def test_without_a_store_the_history_procedures_say_so():
    hub = await run_hub()
    try:
        client = await hub.join()
        for procedure in ("tantra.history", "tantra.aggregate"):
            with pytest.raises(ApplicationError) as raised:
                await within(client.call(procedure))
            assert raised.value.error == "tantra.error.no_store"
        assert await within(client.call("tantra.sensors")) == []
    finally:
        await stop_hub(hub)
