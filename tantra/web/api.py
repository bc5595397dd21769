"""The history REST API under ``/api/v1``: sensors, readings (pages or streams), aggregates.

Owns: HTTP for the history: parameter checking (400 ``bad_parameter`` naming
the parameter), content negotiation, cursor pages, and streaming a whole
range in bounded memory (:class:`ReadingStream`, a push producer that asks
the store for the next page only when the socket has taken the last one).

Does not own: SQL or threads (every query goes through ``Store.query``, which
runs on the store's read pool), nor the parsing rules (``tantra.web.params``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from tantra.hub import Filter
from tantra.security.http import scope_of
from tantra.security.scopes import Scope
from tantra.security.web import form_decoded
from tantra.store.query import ReadingsQuery, SeriesFilter, StoredReading
from tantra.store.writer import Store
from tantra.web import params
from tantra.web.openapi import openapi_document
from tantra.web.params import BadParameter

_log = Logger()

#: Rows fetched per page while streaming CSV or NDJSON.
STREAM_PAGE = 5000

FORMATS = {
    "json": b"application/json",
    "csv": b"text/csv; charset=utf-8",
    "ndjson": b"application/x-ndjson",
}
CSV_COLUMNS = ("id", "ts", "time", "device", "sensor", "value", "unit", "seq")


#: The 500 of an answer the hub failed to encode (logged with its traceback).
_NOT_ENCODED = {
    "error": "internal_error",
    "detail": "the answer could not be encoded (see the hub's log)",
}


def _json(request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-cache")
    return orjson.dumps(body)


def _args(request, allowed: Sequence[str]) -> dict[str, list[str]]:
    """The query string as text; unknown parameters and bad UTF-8 are 400s."""
    out: dict[str, list[str]] = {}
    raw_args = dict(request.args or {})
    # Twisted's parser drops a parameter without "=" (``?device``); taken as an
    # empty value, it meets the same checks as ``?device=`` instead of
    # silently meaning "no filter".
    for segment in request.uri.partition(b"?")[2].split(b"&"):
        if segment and b"=" not in segment:
            raw_args.setdefault(form_decoded(segment), []).append(b"")
    for raw_name, raw_values in raw_args.items():
        try:
            name = raw_name.decode("utf-8")
            values = [value.decode("utf-8") for value in raw_values]
        except UnicodeDecodeError:
            raise BadParameter(repr(raw_name)[2:-1], "is not valid UTF-8") from None
        if name not in allowed:
            raise BadParameter(name, f"unknown parameter; known: {', '.join(allowed)}")
        out[name] = values
    return out


_one = params.one


class _Endpoint(Resource):
    """A GET-only leaf that needs the store; subclasses implement :meth:`answer`."""

    isLeaf = True
    allowed: tuple[str, ...] = ()

    def __init__(self, store: Store | None, reactor: Any):
        super().__init__()
        self.store = store
        self.reactor = reactor

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def render_GET(self, request) -> bytes | int:
        if request.postpath not in ([], [b""]):  # a leaf answers its own path only
            return _json(request, 404, {"error": "not_found", "detail": "no such API path"})
        if self.store is None:
            return _json(request, 503, {"error": "no_store", "detail": "this hub keeps no history"})
        try:
            return self.answer(request, _args(request, self.allowed))
        except BadParameter as error:
            return _json(request, 400, {"error": "bad_parameter", "detail": str(error)})

    def answer(self, request, args: dict[str, list[str]]) -> bytes | int:
        raise NotImplementedError

    def respond(self, request, deferred, render: Callable[[Any], Any]) -> int:
        """Finish ``request`` with ``render(result)`` as JSON when the query is done."""
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(result: Any) -> None:
            if gone:
                return
            try:
                body = _json(request, 200, render(result))
            except Exception:
                # A bug, not the store: answered and logged, never a request left hanging.
                _log.failure("history answer could not be encoded")
                body = _json(request, 500, _NOT_ENCODED)
            request.write(body)
            request.finish()

        def failed(reason: Failure) -> None:
            _log.failure("history query failed", reason)
            if not gone:
                request.write(
                    _json(
                        request,
                        503,
                        {"error": "store_unavailable", "detail": reason.getErrorMessage()},
                    )
                )
                request.finish()

        deferred.addCallbacks(done, failed)
        return NOT_DONE_YET

    def series_filter(self, request, args: dict[str, list[str]]) -> SeriesFilter:
        """The series asked for, within the scope of the request's token (if it has one)."""
        return within_scope(params.series_filter(args), scope_of(request))


class SensorsResource(_Endpoint):
    """``GET /api/v1/sensors[?device=]``."""

    allowed = ("device", "sensor")

    def answer(self, request, args):
        assert self.store is not None
        found = self.store.query("sensors", self.series_filter(request, args))
        return self.respond(request, found, list)


def _nothing_visible(device: str, sensor: str) -> bool:
    return False


def within_scope(asked: SeriesFilter, scope: Scope | None) -> SeriesFilter:
    """``asked`` ∩ ``scope``: a reader gets what it may see and asked for, never an error.

    The filter is narrowed as far as the scope's exact names allow (so the
    store's series lookup is an index search), and when the scope has globs
    each series is checked too (``SeriesFilter.visible``). Asking only for
    what the scope hides gives empty results, as on a dashboard.
    """
    if scope is None or scope.everything:
        return asked
    narrowed, check = scope.narrow(Filter.of(asked.devices, asked.sensors))
    if narrowed is None:
        return SeriesFilter(asked.devices, asked.sensors, visible=_nothing_visible)
    return SeriesFilter(
        tuple(sorted(narrowed.devices or ())),
        tuple(sorted(narrowed.sensors or ())),
        visible=scope.allows_uncached if check else None,
    )


def _negotiate(request, args: dict[str, list[str]]) -> str:
    chosen = _one(args, "format")
    if chosen is not None:
        if chosen not in FORMATS:
            raise BadParameter("format", f"{chosen!r} is not one of {', '.join(FORMATS)}")
        return chosen
    accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
    for name, mime in (("csv", "text/csv"), ("ndjson", "application/x-ndjson")):
        if mime in accept and "application/json" not in accept:
            return name
    return "json"


class ReadingsResource(_Endpoint):
    """``GET /api/v1/readings``: a JSON page with ``next``, or the whole range as CSV/NDJSON."""

    allowed = ("device", "sensor", "from", "to", "limit", "order", "cursor", "format")

    def answer(self, request, args):
        assert self.store is not None
        query = params.readings_query(args, self.now_ms())
        limit_text = _one(args, "limit")
        query = attrs.evolve(query, filter=within_scope(query.filter, scope_of(request)))
        order = query.order
        kind = _negotiate(request, args)
        if kind != "json":
            if limit_text is not None:
                raise BadParameter("limit", f"a {kind} export streams the whole range; drop limit")
            request.setHeader(b"content-type", FORMATS[kind])
            request.setHeader(b"cache-control", b"no-cache")
            encoder = encode_csv if kind == "csv" else encode_ndjson
            ReadingStream(
                request, self.store, query, encoder, header=kind == "csv", page=STREAM_PAGE
            ).start()
            return NOT_DONE_YET

        page = query.limit
        fetch = ReadingsQuery(query.filter, query.start, query.end, page + 1, order, query.after)

        def render(rows: list[StoredReading]) -> dict[str, Any]:
            more = len(rows) > page
            rows = rows[:page]
            last = rows[-1] if more else None
            return {
                "readings": [row.to_dict() for row in rows],
                "next": None if last is None else params.encode_cursor(order, last.ts, last.id),
            }

        return self.respond(request, self.store.query("readings", fetch), render)


def encode_ndjson(rows: Sequence[StoredReading]) -> bytes:
    return b"".join(orjson.dumps(row.to_dict()) + b"\n" for row in rows)


def _iso(ts: int) -> str:
    moment = datetime.fromtimestamp(ts / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def encode_csv(rows: Sequence[StoredReading]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        value = row.value
        writer.writerow(
            (
                row.id,
                row.ts,
                _iso(row.ts),
                row.device,
                row.sensor,
                ("true" if value else "false") if isinstance(value, bool) else value,
                row.unit or "",
                "" if row.seq is None else row.seq,
            )
        )
    return out.getvalue().encode()


@implementer(IPushProducer)
class ReadingStream:
    """Writes a whole range page by page; holds at most one page in memory.

    A push producer: the transport pauses it when its buffer is full, and the
    next page is only fetched (on the store's read pool) while it is not
    paused. A client that goes away stops the fetching. A store failure half
    way aborts the connection: a chunked response without its end is a
    visible error to every HTTP client, never a silently short file.
    """

    def __init__(
        self,
        request,
        store: Store,
        query: ReadingsQuery,
        encoder: Callable[[Sequence[StoredReading]], bytes],
        *,
        header: bool = False,
        page: int = STREAM_PAGE,
    ):
        self.request = request
        self.store = store
        self.query = ReadingsQuery(
            query.filter, query.start, query.end, page, query.order, query.after
        )
        self.encoder = encoder
        self.header = header
        self.page = page
        self.paused = False
        self.fetching = False
        self.done = False
        self.rows = 0

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        if self.header:
            self.request.write((",".join(CSV_COLUMNS) + "\n").encode())
        self._fetch()

    def _fetch(self) -> None:
        self.fetching = True
        # _got's own failure (a page it cannot encode) aborts the export too, never a hang.
        self.store.query("readings", self.query).addCallback(self._got).addErrback(self._failed)

    def _got(self, rows: list[StoredReading]) -> None:
        self.fetching = False
        if self.done:
            return
        if rows:
            self.rows += len(rows)
            last = rows[-1]
            q = self.query
            self.query = ReadingsQuery(
                q.filter, q.start, q.end, q.limit, q.order, (last.ts, last.id)
            )
            self.request.write(self.encoder(rows))
        if len(rows) < self.page:
            self.done = True
            self.request.unregisterProducer()
            self.request.finish()
        elif not self.paused:
            self._fetch()

    def _failed(self, reason: Failure) -> None:
        self.fetching = False
        _log.failure("history export failed after {rows} rows", reason, rows=self.rows)
        if not self.done:
            self.done = True
            self.request.unregisterProducer()
            self.request.channel.transport.abortConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if not self.fetching and not self.done:
            self._fetch()

    def stopProducing(self) -> None:
        self.done = True


class AggregateResource(_Endpoint):
    """``GET /api/v1/aggregate``: epoch-aligned buckets per series."""

    allowed = ("device", "sensor", "from", "to", "every", "points", "fn")

    def answer(self, request, args):
        assert self.store is not None
        query = params.aggregate_query(args, self.now_ms())
        query = attrs.evolve(query, filter=within_scope(query.filter, scope_of(request)))
        step, first, last = query.step, query.start, query.end
        return self.respond(
            request,
            self.store.query("aggregate", query),
            lambda series: {"step": step, "from": first, "to": last, "series": series},
        )


class OpenApiResource(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        return _json(request, 200, openapi_document())


def build_api(store: Store | None, reactor: Any) -> Resource:
    """``/api`` with ``v1`` below it; every history endpoint answers 503 without a store."""
    v1 = Resource()
    v1.putChild(b"sensors", SensorsResource(store, reactor))
    v1.putChild(b"readings", ReadingsResource(store, reactor))
    v1.putChild(b"aggregate", AggregateResource(store, reactor))
    v1.putChild(b"openapi.json", OpenApiResource())
    api = Resource()
    api.putChild(b"v1", v1)
    return api
