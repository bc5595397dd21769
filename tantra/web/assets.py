"""The dashboard's files, served from the package: ``/`` and ``/static/...``.

Owns: :class:`Assets`, every file under ``tantra/web/static`` read once at
start-up (the page, its script and style, the vendored uPlot), each with its
content type and a content hash; :class:`AssetsResource` serving them; and
:class:`DashboardPage`, ``index.html`` with each ``{{static:NAME}}`` replaced
by ``/static/NAME?h=HASH``.

Why hashed URLs: a URL that names the content can be cached for a year
(``immutable``), and a new release changes the URL, so a browser never mixes
an old script with a new page. A request without the right hash gets
``no-cache`` plus an ``ETag`` (revalidated, 304 when unchanged). Only files
that exist in the package are served (no directory listing, no ``..``).

Does not own: what the page does (``static/app.js``) or the rest of the tree
(``tantra.web.site``).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.resources.abc import Traversable

from twisted.web.resource import Resource

from tantra import __version__

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
    ".txt": b"text/plain; charset=utf-8",
}
#: Files without a known extension (the vendored LICENSE) are served as text.
DEFAULT_TYPE = b"text/plain; charset=utf-8"
IMMUTABLE = b"public, max-age=31536000, immutable"
_PLACEHOLDER = re.compile(rb"\{\{static:([A-Za-z0-9_./-]+)\}\}")


class Asset:
    __slots__ = ("body", "content_type", "digest", "etag")

    def __init__(self, name: str, body: bytes):
        self.body = body
        suffix = name[name.rfind(".") :] if "." in name else ""
        self.content_type = CONTENT_TYPES.get(suffix, DEFAULT_TYPE)
        self.digest = hashlib.sha256(body).hexdigest()[:16]
        self.etag = f'"{self.digest}"'.encode()


class Assets:
    """Every file of ``tantra/web/static``, by its path below that folder."""

    def __init__(self, root: Traversable | None = None):
        root = root if root is not None else resources.files("tantra.web").joinpath("static")
        self.files: dict[str, Asset] = {}
        self._walk(root, "")

    def _walk(self, folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                self._walk(entry, name + "/")
            elif entry.is_file():
                self.files[name] = Asset(name, entry.read_bytes())

    def url(self, name: str) -> str:
        """The cacheable URL of a file (``KeyError`` for a file that is not shipped)."""
        return f"/static/{name}?h={self.files[name].digest}"

    def page(self, name: str = "index.html") -> bytes:
        """A page with its ``{{static:NAME}}`` and ``{{version}}`` placeholders filled in."""
        body = self.files[name].body.replace(b"{{version}}", __version__.encode())
        return _PLACEHOLDER.sub(lambda m: self.url(m.group(1).decode()).encode(), body)


def _serve(request, asset: Asset, body: bytes, cache: bytes) -> bytes:
    request.setHeader(b"content-type", asset.content_type)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"cache-control", cache)
    request.setHeader(b"etag", asset.etag)
    if request.getHeader(b"if-none-match") == asset.etag:
        request.setResponseCode(304)
        return b""
    return body


class AssetsResource(Resource):
    """``GET /static/<path>``: one of :class:`Assets`, or 404."""

    isLeaf = True

    def __init__(self, assets: Assets):
        super().__init__()
        self._assets = assets

    def render_GET(self, request) -> bytes:
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        asset = self._assets.files.get(name)
        if asset is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        hashes = request.args.get(b"h") or [b""]
        cache = IMMUTABLE if hashes[0] == asset.digest.encode() else b"no-cache"
        return _serve(request, asset, asset.body, cache)


class DashboardPage(Resource):
    """``GET /``: the dashboard page (``no-cache``: it names the current files)."""

    isLeaf = True

    def __init__(self, assets: Assets):
        super().__init__()
        self._body = assets.page("index.html")
        self._asset = Asset("index.html", self._body)

    def render_GET(self, request) -> bytes:
        return _serve(request, self._asset, self._body, b"no-cache")
