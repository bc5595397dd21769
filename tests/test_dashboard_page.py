"""The dashboard's files: served from the package, right types, hashed URLs, vendored uPlot."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

import pytest
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tantra.hub import Hub
from tantra.transports.dashboard import DashboardFactory
from tantra.web.assets import IMMUTABLE, Assets
from tantra.web.site import build_site

STATIC = resources.files("tantra.web").joinpath("static")


@pytest.fixture
def site():
    clock = Clock()
    hub = Hub(clock)
    return build_site(hub, DashboardFactory(hub, clock))


def get(site, path: str, headers: dict[bytes, bytes] | None = None):
    path, _, query = path.partition("?")
    request = DummyRequest(path.strip("/").encode().split(b"/") if path != "/" else [b""])
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        request.addArg(key.encode(), value.encode())
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    resource = site.getResourceFor(request)
    body = resource.render(request)
    return request.responseCode or 200, request, body


def header(request, name: bytes) -> bytes:
    return request.responseHeaders.getRawHeaders(name)[0]


def test_page_names_its_files_by_content_hash_and_nothing_off_origin(site):
    status, request, body = get(site, "/")
    assert status == 200
    assert header(request, b"content-type") == b"text/html; charset=utf-8"
    assert header(request, b"cache-control") == b"no-cache"
    urls = re.findall(rb'(?:src|href)="([^"]+)"', body)
    assert set(urls) >= {
        f"/static/{name}?h={Assets().files[name].digest}".encode()
        for name in ("app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")
    }
    assert not [url for url in urls if url.startswith((b"http:", b"https:", b"//"))]
    assert b"{{" not in body  # every placeholder filled


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", b"text/javascript; charset=utf-8"),
        ("app.css", b"text/css; charset=utf-8"),
        ("vendor/uPlot.iife.min.js", b"text/javascript; charset=utf-8"),
        ("vendor/uPlot.min.css", b"text/css; charset=utf-8"),
        ("vendor/uPlot.LICENSE", b"text/plain; charset=utf-8"),
    ],
)
def test_static_files_have_their_type_and_are_cached_by_hash(site, name, content_type):
    asset = Assets().files[name]
    status, request, body = get(site, f"/static/{name}?h={asset.digest}")
    assert status == 200 and body == STATIC.joinpath(name).read_bytes()
    assert header(request, b"content-type") == content_type
    assert header(request, b"x-content-type-options") == b"nosniff"
    assert header(request, b"cache-control") == IMMUTABLE
    _, request, _ = get(site, f"/static/{name}?h=stale")  # an old URL: revalidate
    assert header(request, b"cache-control") == b"no-cache"
    status, _, body = get(site, f"/static/{name}", {b"if-none-match": asset.etag})
    assert (status, body) == (304, b"")


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/../site.py", "/static/vendor", "/static/"]
)
def test_only_shipped_files_are_served(site, path):
    status, _, body = get(site, path)
    assert status == 404 and body == b"not found\n"


def test_vendored_uplot_is_the_version_recorded():
    record = json.loads(STATIC.joinpath("vendor/VENDORED.json").read_text())["uplot"]
    script = STATIC.joinpath("vendor/uPlot.iife.min.js").read_bytes()
    assert script.startswith(
        f"/*! https://github.com/leeoniya/uPlot (v{record['version']}) */".encode()
    )
    for name, digest in record["sha256"].items():
        assert hashlib.sha256(STATIC.joinpath(f"vendor/{name}").read_bytes()).hexdigest() == digest
    assert b"MIT License" in STATIC.joinpath("vendor/uPlot.LICENSE").read_bytes()


def test_page_weight_stays_small():
    """Everything a browser downloads for / (uncompressed): the page is meant to be light."""
    assets = Assets()
    names = ["app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"]
    total = len(assets.page()) + sum(len(assets.files[name].body) for name in names)
    assert total < 100_000, total
