"""Tokens, scopes and origins on the history API and the operator pages, over real HTTP.

A real SQLite store behind the real resources (``/api`` from ``build_api``,
``/stats``-like and ``/readyz`` resources) guarded by :class:`HttpGate` on a
loopback port; clients are Twisted's Agent. Every refusal's exact status and
body, and that a reader sees exactly its scope on every endpoint and export.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from tantra.counters import Counters
from tantra.health import Readiness
from tantra.model import Reading
from tantra.security.gate import Auth
from tantra.security.http import HttpGate
from tantra.security.tokens import Token, TokenTable, hash_secret, new_secret
from tantra.store import backend_for
from tantra.store.query import HOUR_MS
from tantra.store.writer import Store
from tantra.web.api import build_api
from tantra.web.health import ReadyzResource

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning"),
]

T0 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS
ORIGIN = "https://farm.example"

READINGS = [
    Reading(device, sensor, i, T0 + i * 1000, None, i)
    for device in ("farm-1", "farm-2", "barn")
    for sensor in ("temp", "rpm")
    for i in range(50)
]


class Stats(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        return b'{"accepted": 0}'


class Secrets:
    def __init__(self):
        self.admin, self.farm1, self.rpm, self.everything, self.device = (
            new_secret() for _ in range(5)
        )
        self.tokens = [
            Token(name="admin", kind="admin", hash=hash_secret(self.admin)),
            Token(name="f1", kind="reader", hash=hash_secret(self.farm1), scopes=("farm-1/*",)),
            Token(name="rpm", kind="reader", hash=hash_secret(self.rpm), scopes=("*/rp?",)),
            Token(name="prom", kind="reader", hash=hash_secret(self.everything), scopes=("*",)),
            Token(name="barn", kind="device", hash=hash_secret(self.device), device="barn"),
        ]


class Server:
    def __init__(self, store: Store, gate: HttpGate, readiness: Readiness):
        root = Resource()
        root.putChild(b"api", gate.guard(build_api(store, reactor)))
        root.putChild(b"stats", gate.guard(Stats(), operator=True))
        details = gate.may_see_details if gate.auth is not None else None
        root.putChild(b"readyz", ReadyzResource(readiness, details))
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.agent = Agent(reactor)

    async def get(
        self, path: str, token: str | None = None, origin: str | None = None
    ) -> tuple[int, Any, bytes]:
        headers = Headers()
        if token is not None:
            headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
        if origin is not None:
            headers.addRawHeader(b"origin", origin.encode())
        response = await self.agent.request(b"GET", (self.base + path).encode(), headers)
        return response.code, response.headers, await readBody(response)

    async def json(self, path: str, token: str | None = None, **kw) -> tuple[int, Any]:
        code, _, body = await self.get(path, token, **kw)
        return code, json.loads(body)


@pytest.fixture
def secrets():
    return Secrets()


@pytest.fixture
def counters():
    return Counters()


@pytest.fixture
def readiness():
    readiness = Readiness()
    readiness.add("store", lambda: (False, "postgresql://db.internal:5432 unreachable"))
    return readiness


@pytest_twisted.async_yield_fixture
async def store(tmp_path):
    store = Store(backend_for(f"sqlite:{tmp_path / 'h.sqlite3'}"), reactor)
    store.start()
    await store.submit(READINGS)
    yield store
    await store.stop()


@pytest_twisted.async_yield_fixture
async def server(store, secrets, counters, readiness):
    auth = Auth(TokenTable(secrets.tokens), counters)
    running = Server(store, HttpGate(auth, (ORIGIN,), counters.auth), readiness)
    yield running
    await running.port.stopListening()


def series(rows) -> set[tuple[str, str]]:
    return {(row["device"], row["sensor"]) for row in rows}


@pytest_twisted.ensureDeferred
async def test_no_token_or_a_bad_one_is_a_401_with_a_json_body(server, secrets, counters):
    code, headers, body = await server.get("/api/v1/readings")
    assert code == 401
    assert json.loads(body) == {
        "error": "unauthorized",
        "detail": "a token is needed: Authorization: Bearer TOKEN (or ?token=TOKEN)",
    }
    assert headers.getRawHeaders(b"www-authenticate") == [b'Bearer realm="tantra"']
    code, body = await server.json("/api/v1/sensors", "tantra_" + "x" * 64)
    assert (code, body) == (401, {"error": "unauthorized", "detail": "unknown or revoked token"})
    code, body = await server.json(f"/api/v1/sensors?token={secrets.admin}")
    assert code == 200 and len(body) == 6, "?token= is taken, not an unknown parameter"
    assert dict(counters.auth.refused) == {"http:no_token": 1, "http:bad_token": 1}
    assert counters.auth.logins["http"] == 1


@pytest_twisted.ensureDeferred
async def test_a_reader_sees_only_its_scope_on_every_endpoint(server, secrets):
    code, body = await server.json("/api/v1/sensors", secrets.farm1)
    assert code == 200 and series(body) == {("farm-1", "rpm"), ("farm-1", "temp")}
    code, body = await server.json("/api/v1/readings?limit=1000", secrets.farm1)
    assert code == 200 and series(body["readings"]) == {("farm-1", "rpm"), ("farm-1", "temp")}
    assert len(body["readings"]) == 100
    code, body = await server.json("/api/v1/readings?device=farm-2", secrets.farm1)
    assert (code, body) == (200, {"readings": [], "next": None}), "asked for what it may not see"
    code, body = await server.json(
        f"/api/v1/aggregate?from={T0}&to={T0 + HOUR_MS}&every=1h", secrets.farm1
    )
    assert code == 200 and series(body["series"]) == {("farm-1", "rpm"), ("farm-1", "temp")}
    code, _, raw = await server.get("/api/v1/readings?format=csv&sensor=temp", secrets.farm1)
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert code == 200 and series(rows) == {("farm-1", "temp")} and len(rows) == 50


@pytest_twisted.ensureDeferred
async def test_a_glob_scope_pages_exactly_and_a_device_token_sees_its_device(server, secrets):
    seen: list[dict] = []
    path = "/api/v1/readings?limit=40"
    while path:
        code, body = await server.json(path, secrets.rpm)
        assert code == 200
        assert len(body["readings"]) == 40 or body["next"] is None, "pages stay full"
        seen.extend(body["readings"])
        path = f"/api/v1/readings?limit=40&cursor={body['next']}" if body["next"] else ""
    assert series(seen) == {("farm-1", "rpm"), ("farm-2", "rpm"), ("barn", "rpm")}
    assert len(seen) == 150 and len({row["id"] for row in seen}) == 150
    code, body = await server.json("/api/v1/sensors", secrets.device)
    assert series(body) == {("barn", "rpm"), ("barn", "temp")}
    code, body = await server.json("/api/v1/sensors", secrets.admin)
    assert len(body) == 6


@pytest_twisted.ensureDeferred
async def test_operator_pages_need_an_admin_or_an_everything_reader(server, secrets, counters):
    code, body = await server.json("/stats")
    assert code == 401 and body["error"] == "unauthorized"
    for token in (secrets.farm1, secrets.device):
        code, body = await server.json("/stats", token)
        assert (code, body) == (
            403,
            {
                "error": "forbidden",
                "detail": "needs an admin token or a reader token whose scope is *",
            },
        )
    for token in (secrets.admin, secrets.everything):
        assert await server.json("/stats", token) == (200, {"accepted": 0})
    assert counters.auth.refused["http:wrong_kind"] == 2


@pytest_twisted.ensureDeferred
async def test_readyz_answers_probes_but_shows_reasons_to_operators_only(server, secrets):
    assert await server.json("/readyz") == (
        503,
        {"status": "not_ready", "checks": {"store": {"ok": False}}},
    )
    assert await server.json("/readyz", secrets.farm1) == (
        503,
        {"status": "not_ready", "checks": {"store": {"ok": False}}},
    )
    code, body = await server.json("/readyz", secrets.admin)
    assert code == 503
    assert body["checks"]["store"]["reason"] == "postgresql://db.internal:5432 unreachable"


@pytest_twisted.ensureDeferred
async def test_allowed_origins_apply_to_the_api_before_the_token(server, secrets, counters):
    code, body = await server.json("/api/v1/sensors", secrets.admin, origin="https://evil.example")
    assert (code, body) == (403, {"error": "forbidden", "detail": "origin not allowed"})
    code, body = await server.json("/api/v1/sensors", secrets.admin, origin=ORIGIN)
    assert code == 200 and len(body) == 6
    code, _ = await server.json("/api/v1/sensors", origin="https://evil.example")
    assert code == 403, "no token does not make a foreign origin welcome"
    assert counters.auth.origin_refused == 2


@pytest_twisted.ensureDeferred
async def test_auth_off_origins_still_apply_and_everything_else_is_open(store, counters):
    readiness = Readiness()
    server = Server(store, HttpGate(None, (ORIGIN,), counters.auth), readiness)
    try:
        code, body = await server.json("/api/v1/sensors")
        assert code == 200 and len(body) == 6
        assert await server.json("/stats") == (200, {"accepted": 0})
        code, _ = await server.json("/api/v1/sensors", origin="https://evil.example")
        assert code == 403
        gate = HttpGate(None, (), counters.auth)
        resource = build_api(store, reactor)
        assert gate.guard(resource) is resource, "nothing to check: nothing in the way"
    finally:
        await server.port.stopListening()


def test_metrics_carry_the_auth_section_with_transport_and_reason_labels():
    from twisted.internet.task import Clock

    from tantra.hub import Hub
    from tantra.web.metrics import HubCollector, MetricsResource
    from tests.test_operations import scrape

    counters = Counters()
    resource = MetricsResource(
        HubCollector(counters, Hub(Clock(), counters=counters)), process=False
    )
    assert scrape(resource)["tantra_auth_forbidden_total"][()] == 0
    auth = counters.auth
    auth.logins["tcp"] += 3
    auth.refused["websocket:bad_token"] += 2
    auth.refused["http:wrong_kind"] += 1
    auth.wamp_denied["subscribe"] += 4
    auth.forbidden, auth.rate_limited, auth.replayed, auth.origin_refused = 5, 6, 7, 8
    samples = scrape(resource)
    assert samples["tantra_auth_logins_total"] == {(("transport", "tcp"),): 3}
    assert samples["tantra_auth_refused_total"] == {
        (("reason", "bad_token"), ("transport", "websocket")): 2,
        (("reason", "wrong_kind"), ("transport", "http")): 1,
    }
    assert samples["tantra_auth_wamp_denied_total"] == {(("action", "subscribe"),): 4}
    assert [
        samples[f"tantra_auth_{name}_total"][()]
        for name in ("forbidden", "rate_limited", "replayed", "origin_refused")
    ] == [5, 6, 7, 8]
