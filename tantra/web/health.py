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

from collections.abc import Callable
from typing import Any

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
    """``details(request)`` says whether the checks' reasons may be shown (None: always).

    With ``--auth`` a probe without a token still gets the status and each
    check's ``ok``; the reasons (which can name hosts and paths) only go to
    an operator token (``tantra.security.http``).
    """

    isLeaf = True

    def __init__(self, readiness: Readiness, details: Callable[[Any], bool] | None = None):
        super().__init__()
        self._readiness = readiness
        self._details = details

    def render_GET(self, request) -> bytes:
        ready, checks = self._readiness.check()
        status = "ready" if ready else "not_ready"
        if self._details is not None and not self._details(request):
            checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
        return _json(request, 200 if ready else 503, {"status": status, "checks": checks})
