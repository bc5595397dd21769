"""The whole service in this process on loopback ports (``build_service``, no twistd)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor

from tantra.settings import resolve
from tantra.tap import build_service

#: Seconds a start may take before the test fails instead of hanging.
START_TIMEOUT = 10.0


def hub_settings(**overrides: Any) -> dict[str, Any]:
    """Command-line style settings: HTTP and TCP on loopback port 0, no UDP, no history."""
    return {
        "http": ["tcp:0:interface=127.0.0.1"],
        "tcp": "tcp:0:interface=127.0.0.1",
        "udp": "none",
        "store": "none",
        **overrides,
    }


@defer.inlineCallbacks
def start_hub(**overrides: Any):
    """Start the service; fires with it and its ports by kind (``{"http": 41234, ...}``)."""
    service = build_service(resolve(hub_settings(**overrides), {}), reactor)
    service.startService()
    ready = defer.gatherResults([listener.ready for listener in service.listeners])
    yield ready.addTimeout(START_TIMEOUT, reactor)
    ports = {lst.kind: int(lst.address.rsplit(":", 1)[1]) for lst in service.listeners}
    return service, ports
