"""The history REST API over real HTTP on loopback, against a real SQLite store.

Clients are Twisted's own HTTP client (Agent), so these tests see status codes,
headers and chunked streams exactly as curl or Grafana would.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from tantra.model import Reading
from tantra.store import backend_for
from tantra.store.query import HOUR_MS, MINUTE_MS, ReadingsQuery
from tantra.store.writer import Store
from tantra.web import api
from tantra.web.api import ReadingStream, build_api, encode_ndjson

pytestmark = [
    pytest.mark.integration,
    # Agent's response transport under readBody; not ours to fix
    pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning"),
]

T0 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS


class Server:
    def __init__(self, store: Store | None):
        self.store = store
        root = Resource()
        root.putChild(b"api", build_api(store, reactor))
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.agent = Agent(reactor)

    async def get(self, path: str, accept: str | None = None) -> tuple[int, Any, bytes]:
        headers = Headers({b"accept": [accept.encode()]}) if accept else None
        response = await self.agent.request(b"GET", (self.base + path).encode(), headers)
        body = await readBody(response)
        return response.code, response.headers, body

    async def json(self, path: str) -> tuple[int, Any]:
        code, _, body = await self.get(path)
        return code, json.loads(body)


READINGS = [
    Reading("farm-1", "moisture", 40 + i % 5, T0 + i * 1000, "%", i) for i in range(300)
] + [Reading("farm-2", "rpm", 1000.5 + i, T0 + i * 1000) for i in range(300)]


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    store = Store(backend_for(f"sqlite:{tmp_path / 'h.sqlite3'}"), reactor)
    store.start()
    await store.submit(READINGS)
    running = Server(store)
    yield running
    await running.port.stopListening()
    await store.stop()


@pytest_twisted.ensureDeferred
async def test_readings_pages_follow_next_until_null_and_see_every_reading_once(server):
    seen: list[dict] = []
    path = "/api/v1/readings?device=farm-1&limit=70&order=desc"
    pages = 0
    while path:
        code, body = await server.json(path)
        assert code == 200
        pages += 1
        seen.extend(body["readings"])
        path = (
            f"/api/v1/readings?device=farm-1&limit=70&order=desc&cursor={body['next']}"
            if body["next"]
            else ""
        )
    assert pages == 5 and [row["seq"] for row in seen] == list(range(299, -1, -1))
    assert seen[0] == {
        "id": 300, "device": "farm-1", "sensor": "moisture", "value": 44, "unit": "%",
        "ts": T0 + 299_000, "seq": 299,
    }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_readings_filters_and_every_time_form(server):
    iso = "2025-11-24T16:00:10Z"  # T0 is 2025-11-24T16:00:00Z
    assert T0 == 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS
    for start in (str(T0 + 10_000), iso, "2025-11-24T16:00:10"):
        code, body = await server.json(
            f"/api/v1/readings?sensor=rpm&sensor=moisture&device=farm-2&from={start}&to={T0 + 13_000}"
        )
        assert code == 200, body
        assert [row["value"] for row in body["readings"]] == [1010.5, 1011.5, 1012.5]
        assert body["next"] is None
    code, body = await server.json("/api/v1/readings?from=-15m")  # T0 is long ago
    assert code == 200 and body == {"readings": [], "next": None}


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("readings?limit=0", "limit: '0' is not a whole number from 1 to 10000"),
        ("readings?limit=10001", "limit: '10001' is not a whole number from 1 to 10000"),
        ("readings?order=up", "order: 'up' is not asc or desc"),
        ("readings?order=", "order: '' is not asc or desc"),
        ("readings?device=" + "&device=".join(["a"] * 101), "device: at most 100 values"),
        ("readings?from=yesterday", "from: 'yesterday' is not a time"),
        ("readings?to=-3x", "to: '-3x' is not a time"),
        ("readings?rssi=3", "rssi: unknown parameter"),
        ("readings?cursor=zzz", "cursor: not a cursor this API returned"),
        ("readings?device=a.b", "device: 'a.b' is not a name"),
        ("readings?limit=5&limit=6", "limit: given more than once"),
        ("readings?format=xml", "format: 'xml' is not one of json, csv, ndjson"),
        ("readings?format=csv&limit=5", "limit: a csv export streams the whole range"),
        ("readings?from=2000&to=1000", "to: is before from"),
        ("aggregate?every=1ms&from=-7d", "every: 1ms gives 604800000 buckets"),
        ("aggregate?every=0m", "every: '0m' is not a duration"),
        ("aggregate?every=", "every: '' is not a duration"),
        ("aggregate?fn=median", "fn: 'median' is not one of avg, min"),
        ("aggregate?points=0", "points: '0' is not a whole number from 1 to 10000"),
        ("aggregate?every=1m&points=5", "points: only goes with every=auto"),
        ("aggregate?from=-1h&to=-2h", "to: must be after from"),
        ("sensors?device=%ff", "device: is not valid UTF-8"),
        # Without "=": Twisted's parser drops these, which made them mean "no filter".
        ("readings?device", "device: '' is not a name"),
        ("readings?device&device=farm-1", "device: '' is not a name"),
        ("readings?foo", "foo: unknown parameter"),
        ("readings?limit", "limit: '' is not a whole number"),
        ("aggregate?every", "every: '' is not a duration"),
        ("sensors?bogus", "bogus: unknown parameter"),
        ("readings?from=-99999999999d", "from: '-99999999999d' is outside 1970-01-01"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_parameter_is_a_400_that_names_it(server, query, detail):
    code, body = await server.json(f"/api/v1/{query}")
    assert code == 400
    assert body["error"] == "bad_parameter"
    assert body["detail"].startswith(detail), body["detail"]


@pytest_twisted.ensureDeferred
async def test_relative_zero_is_now_and_a_path_below_an_endpoint_is_not_found(server):
    code, body = await server.json("/api/v1/readings?to=-0ms&limit=1")
    assert code == 200 and len(body["readings"]) == 1
    code, body = await server.json("/api/v1/readings/extra")
    assert code == 404 and body["error"] == "not_found"
    code, _ = await server.json("/api/v1/readings/")
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_a_cursor_only_continues_its_own_order(server):
    _, first = await server.json("/api/v1/readings?limit=1")
    code, body = await server.json(f"/api/v1/readings?order=desc&cursor={first['next']}")
    assert code == 400 and "continues order=asc" in body["detail"]


@pytest_twisted.ensureDeferred
async def test_csv_and_ndjson_stream_the_whole_range_in_pages(server, monkeypatch):
    monkeypatch.setattr(api, "STREAM_PAGE", 64)  # 600 rows: ten pages
    code, headers, body = await server.get("/api/v1/readings?format=csv")
    assert code == 200 and headers.getRawHeaders(b"content-type") == [b"text/csv; charset=utf-8"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    order = [(int(row["ts"]), int(row["id"])) for row in rows]
    assert len(rows) == 600 and order == sorted(order) and len(set(order)) == 600
    assert rows[0] == {
        "id": "1", "ts": str(T0), "time": "2025-11-24T16:00:00.000Z", "device": "farm-1",
        "sensor": "moisture", "value": "40", "unit": "%", "seq": "0",
    }  # fmt: skip
    assert rows[1]["device"] == "farm-2" and rows[1]["unit"] == "" and rows[1]["seq"] == ""
    code, headers, body = await server.get(
        "/api/v1/readings?device=farm-2&order=desc", accept="application/x-ndjson"
    )
    assert headers.getRawHeaders(b"content-type") == [b"application/x-ndjson"]
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["value"] for line in lines] == [1000.5 + i for i in range(299, -1, -1)]


@pytest_twisted.ensureDeferred
async def test_aggregate_buckets_are_epoch_aligned_and_auto_respects_points(server):
    code, body = await server.json(
        f"/api/v1/aggregate?device=farm-1&from={T0 + 30_000}&to={T0 + 5 * MINUTE_MS}"
        "&every=1m&fn=count,avg,first,last"
    )
    assert code == 200, body
    assert body["step"] == MINUTE_MS and body["from"] == T0 and body["to"] == T0 + 5 * MINUTE_MS
    (series,) = body["series"]
    assert (series["device"], series["sensor"], series["unit"]) == ("farm-1", "moisture", "%")
    assert series["buckets"][0] == {"t": T0, "count": 60, "avg": 42.0, "first": 40, "last": 44}
    assert [b["t"] for b in series["buckets"]] == [T0 + i * MINUTE_MS for i in range(5)]
    code, body = await server.json(
        f"/api/v1/aggregate?from={T0}&to={T0 + HOUR_MS}&every=auto&points=7"
    )
    assert code == 200 and body["step"] == 10 * MINUTE_MS
    assert all(len(s["buckets"]) <= 7 for s in body["series"]) and len(body["series"]) == 2


@pytest_twisted.ensureDeferred
async def test_sensors_lists_every_series_with_its_last_reading(server):
    code, body = await server.json("/api/v1/sensors?device=farm-2")
    assert code == 200
    assert body == [
        {
            "device": "farm-2", "sensor": "rpm", "unit": None, "count": 300,
            "first_ts": T0, "last_ts": T0 + 299_000,
            "last": {"id": 600, "device": "farm-2", "sensor": "rpm", "value": 1299.5,
                     "ts": T0 + 299_000},
        }
    ]  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_without_a_store_the_api_says_no_store_but_still_describes_itself():
    server = Server(None)
    try:
        for path in ("readings", "aggregate", "sensors"):
            code, body = await server.json(f"/api/v1/{path}")
            assert code == 503 and body["error"] == "no_store"
        code, doc = await server.json("/api/v1/openapi.json")
        assert code == 200 and doc["openapi"].startswith("3.1")
        assert {"/api/v1/readings", "/api/v1/aggregate", "/api/v1/sensors"} <= set(doc["paths"])
    finally:
        await server.port.stopListening()


class SlowReader:
    """A request whose client stopped reading: records writes, never finishes by itself."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.finished = False
        self._finish: defer.Deferred = defer.Deferred()

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        return self._finish

    def write(self, data):
        self.written.append(data)
        self.producer.pauseProducing()  # the transport's buffer is full at once

    def finish(self):
        self.finished = True


class CountingStore:
    """Answers page queries from a list and counts them (what the stream asked for)."""

    def __init__(self, rows):
        self.rows = rows
        self.queries: list[ReadingsQuery] = []

    def query(self, name, query):
        self.queries.append(query)
        start = 0
        if query.after is not None:
            start = next(i for i, row in enumerate(self.rows) if row.id == query.after[1]) + 1
        return defer.succeed(self.rows[start : start + query.limit])


def test_a_stream_fetches_no_further_page_while_its_client_is_paused():
    from tantra.store.query import StoredReading

    rows = [StoredReading(i, "d", "s", i, None, i) for i in range(1, 26)]
    store = CountingStore(rows)
    request = SlowReader()
    stream = ReadingStream(request, store, ReadingsQuery(), encode_ndjson, page=10)
    stream.start()
    assert len(store.queries) == 1 and len(request.written) == 1  # paused after one page
    stream.resumeProducing()
    assert len(store.queries) == 2 and not request.finished
    stream.resumeProducing()
    assert len(store.queries) == 3 and request.finished and request.producer is None
    assert b"".join(request.written).count(b"\n") == 25


def test_a_stream_stops_fetching_when_its_client_goes_away():
    from tantra.store.query import StoredReading

    store = CountingStore([StoredReading(i, "d", "s", i, None, i) for i in range(1, 26)])
    request = SlowReader()
    stream = ReadingStream(request, store, ReadingsQuery(), encode_ndjson, page=10)
    stream.start()
    request._finish.errback(ConnectionError("gone"))
    stream.resumeProducing()
    assert len(store.queries) == 1 and not request.finished


@pytest_twisted.ensureDeferred
async def test_a_64_bit_integer_comes_back_exactly_from_every_endpoint(server):
    await server.store.submit(
        [Reading("farm-9", "big", 2**64 - 1, T0, None, 1), Reading("farm-9", "odd", 2**53 + 1, T0)]
    )
    code, body = await server.json("/api/v1/readings?device=farm-9")
    assert code == 200 and [r["value"] for r in body["readings"]] == [2**64 - 1, 2**53 + 1]
    code, body = await server.json("/api/v1/sensors?device=farm-9")
    assert code == 200 and {s["last"]["value"] for s in body} == {2**64 - 1, 2**53 + 1}
    code, _, body = await server.get("/api/v1/readings?device=farm-9&format=ndjson")
    assert [json.loads(line)["value"] for line in body.splitlines()] == [2**64 - 1, 2**53 + 1]


class OneAnswerStore:
    """Answers every query with the same rows (a store returning what cannot be encoded)."""

    def __init__(self, rows):
        self.rows = rows

    def query(self, name, *args):
        return defer.succeed(self.rows)


@pytest_twisted.ensureDeferred
async def test_an_answer_that_cannot_be_encoded_is_a_500_not_a_hang():
    from tantra.store.query import StoredReading

    unencodable = [StoredReading(1, "d", "s", 2**70, None, T0)]  # beyond any JSON integer here
    running = Server(OneAnswerStore(unencodable))  # type: ignore[arg-type]
    try:
        code, body = await defer.Deferred.fromCoroutine(
            running.json("/api/v1/readings")
        ).addTimeout(5, reactor)
        assert code == 500 and body["error"] == "internal_error"
    finally:
        await running.port.stopListening()


def test_a_page_that_cannot_be_encoded_aborts_the_stream():
    from tantra.store.query import StoredReading

    class Channel:
        class transport:
            aborted = False

            @classmethod
            def abortConnection(cls):
                cls.aborted = True

    store = CountingStore([StoredReading(1, "d", "s", 2**70, None, 1)])
    request = SlowReader()
    request.channel = Channel  # type: ignore[attr-defined]
    stream = ReadingStream(request, store, ReadingsQuery(), encode_ndjson, page=10)
    stream.start()
    assert Channel.transport.aborted and not request.finished and request.producer is None
