"""The HTTP port: one twisted.web site for dashboards, WebSocket, and (later) WAMP and APIs.

Owns: the resource tree. ``/`` answers a WebSocket upgrade with the dashboard
WebSocket and a plain GET with the dashboard page (``tantra.web.assets``,
its files under ``/static``); ``/stats`` serves the hub's counters as JSON.
A WebSocket upgrade on any other unclaimed path is also the dashboard
WebSocket, because the Node.js relay accepted any path and its clients must
keep working. ``/wamp`` and ``/api`` slot in as children.

Does not own: WebSocket behaviour (``tantra.transports.dashboard``) or the hub.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping

import orjson
from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from zope.interface import provider

from tantra import __version__
from tantra.hub import Hub
from tantra.security.web import TokenTakingResource
from tantra.transports.dashboard import DashboardFactory
from tantra.web.assets import Assets, AssetsResource, DashboardPage
from tantra.web.deadline import HEADER_DEADLINE, DeadlineChannel


def is_websocket_upgrade(request) -> bool:
    upgrade = request.getHeader(b"upgrade") or b""
    return upgrade.lower() == b"websocket"


class StatsResource(Resource):
    """``GET /stats``: every counter (``tantra.counters``) and the live gauges as JSON."""

    isLeaf = True

    def __init__(
        self,
        hub: Hub,
        dashboards: DashboardFactory,
        sections: Mapping[str, Callable[[], dict]] | None = None,
    ):
        super().__init__()
        self._hub = hub
        self._dashboards = dashboards
        self._sections = dict(sections or {})

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        body = {
            "version": __version__,
            "dashboards": len(self._dashboards.clients),
            "subscribers": self._hub.subscriber_count,
            "sensors": self._hub.sensor_count(),
            **self._hub.counters.as_dict(),
        }
        for name, counters in self._sections.items():
            body[name] = counters()
        return orjson.dumps(body)


class RootResource(Resource):
    """Routes ``/`` and unclaimed paths between the WebSocket and the status page."""

    def __init__(self, websocket: IResource, page: IResource):
        super().__init__()
        self._websocket = websocket
        self._page = page

    def getChild(self, path: bytes, request) -> IResource:
        if is_websocket_upgrade(request):
            return self._websocket
        if path == b"":
            return self._page
        return notFound()


#: Seconds an HTTP connection may idle between requests (Twisted's default is 12 hours);
#: a WebSocket, once upgraded, is no longer an HTTP request and keeps its own timers.
HTTP_IDLE_TIMEOUT = 60.0

_SECRET_PARAMETER = re.compile(rb"(?i)([?&](?:token|access_token|ticket)=)[^&#\s]*")


def redact(uri: bytes) -> bytes:
    """``uri`` with the value of every ``token=`` parameter replaced (never logged)."""
    return _SECRET_PARAMETER.sub(rb"\1REDACTED", uri)


class _Redacted:
    """A request as the access log sees it: the same, but the URI without secrets."""

    def __init__(self, request) -> None:
        self._request = request
        self.uri = redact(request.uri)

    def __getattr__(self, name: str):
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def redacting_log_formatter(timestamp: str, request) -> str:
    """Twisted's combined access log line, with ``?token=`` values redacted.

    ``Authorization`` headers never appear in that format; the query string
    does, and browsers can only put a WebSocket token there.
    """
    return combinedLogFormatter(timestamp, _Redacted(request))


class TantraSite(Site):
    """Twisted's Site with a deadline on each request's headers (``tantra.web.deadline``).

    Plain HTTP/1.1 channels: the hub serves no HTTP/2 (it would need the
    ``h2`` package and TLS with ALPN), so Twisted's protocol-switching
    wrapper has nothing to switch to.
    """

    protocol = DeadlineChannel  # type: ignore[assignment]

    def __init__(self, root: IResource, *, clients_dropped: Counter[str], **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.header_deadline = HEADER_DEADLINE
        #: Where a channel counts a client it dropped (the hub's ``clients_dropped``).
        self.clients_dropped = clients_dropped


def build_site(
    hub: Hub,
    dashboards: DashboardFactory,
    children: Mapping[bytes, IResource] | None = None,
    stats_sections: Mapping[str, Callable[[], dict]] | None = None,
) -> Site:
    """The whole HTTP tree on one port.

    ``children`` mounts more resources (``b"wamp"``, later ``b"api"``);
    ``stats_sections`` adds named groups to ``/stats`` beside the hub's
    :class:`~tantra.counters.Counters` (which already holds ``"wamp"``).
    """
    assets = Assets()
    root = RootResource(TokenTakingResource(dashboards), DashboardPage(assets))
    root.putChild(b"static", AssetsResource(assets))
    root.putChild(b"stats", StatsResource(hub, dashboards, stats_sections))
    for name, child in (children or {}).items():
        root.putChild(name, child)
    site = TantraSite(
        root,
        clients_dropped=hub.stats.clients_dropped,
        logFormatter=redacting_log_formatter,
        timeout=HTTP_IDLE_TIMEOUT,
    )
    site.displayTracebacks = False
    return site
