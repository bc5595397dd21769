"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can do its job).

Owns: the two small JSON resources. ``/healthz`` is 200 ``{"status": "ok"}``
whenever the reactor can answer a request (a liveness probe: restart the
hub if this fails). ``/readyz`` runs every check of the
:class:`~tantra.health.Readiness` registry and answers 200 when all pass,
else 503, with each check's ``ok`` and ``reason`` (a readiness probe: send no
traffic while it fails).

Does not own: the checks (``tantra.health`` and the parts that add them).
"""

from __future__ import annotations

import orjson
from twisted.web.resource import Resource

from tantra.health import Readiness


def _json(request, status: int, body: dict) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return orjson.dumps(body)


class HealthzResource(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        return _json(request, 200, {"status": "ok"})


class ReadyzResource(Resource):
    isLeaf = True

    def __init__(self, readiness: Readiness):
        super().__init__()
        self._readiness = readiness

    def render_GET(self, request) -> bytes:
        ready, checks = self._readiness.check()
        status = "ready" if ready else "not_ready"
        return _json(request, 200 if ready else 503, {"status": status, "checks": checks})
