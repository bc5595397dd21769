"""Is the hub ready to serve? Components report, ``/readyz`` answers.

Owns: :class:`Readiness`, a registry of named checks. Each part that can be
"not ready" adds one check, a function returning ``(ok, reason)`` that reads
state the part already keeps (listeners: bound; the history store: its
state; an MQTT bus: connected). A part that learns its state from events
rather than holding it can call :meth:`Readiness.report` instead. Checks run
in the reactor thread at request time, so they must be cheap and must not
block.

Does not own: HTTP (``tantra.web.health`` serves the answer) or deciding
which parts exist (``tantra.tap`` adds the checks). Pure: no Twisted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Check = Callable[[], tuple[bool, str]]


class Readiness:
    """Named readiness checks; ready when every one says ok."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register ``check`` (returns ``(ok, reason)``; reason is ``""`` when ok)."""
        if name in self._checks:
            raise ValueError(f"a readiness check named {name!r} exists already")
        self._checks[name] = check

    def report(self, name: str, ok: bool, reason: str = "") -> None:
        """Set ``name``'s state from an event (replaces any earlier report or check)."""
        state = (ok, reason)
        self._checks[name] = lambda: state

    def names(self) -> list[str]:
        return list(self._checks)

    def check(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """``(ready, {name: {"ok": bool, "reason": str}})``; a check that raises is not ok."""
        results: dict[str, dict[str, Any]] = {}
        for name, check in self._checks.items():
            try:
                ok, reason = check()
            except Exception as error:  # a broken check must not break /readyz
                ok, reason = False, f"check failed: {error!r}"
            results[name] = {"ok": bool(ok), "reason": "" if ok else reason}
        return all(result["ok"] for result in results.values()), results


def listeners_check(listeners: Callable[[], Iterable[Any]]) -> Check:
    """Ready once every listener of the hub is bound (``ListenerService.address`` set).

    A listener that stopped (the hub is shutting down) is not ready either, so
    a load balancer stops sending before the ports close.
    """

    def check() -> tuple[bool, str]:
        waiting = [
            f"{listener.kind} {listener.description}"
            for listener in listeners()
            if not listener.address or not listener.running
        ]
        if waiting:
            return False, "not listening: " + ", ".join(waiting)
        return True, ""

    return check


def store_check(stats: Callable[[], Any]) -> Check:
    """Ready when there is no store, or the store's state is ``ok`` (it can write)."""

    def check() -> tuple[bool, str]:
        store = stats()
        if store is None:
            return True, ""
        if store.state == "ok":
            return True, ""
        return False, f"store {store.state}" + (f": {store.reason}" if store.reason else "")

    return check


def broker_check(stats: Callable[[], Any]) -> Check:
    """Ready while the MQTT client is connected (``--mqtt``); else its state and why.

    Reads :class:`~tantra.counters.MqttStats`, which the client keeps up to
    date: ``connecting`` (the first attempt), ``reconnecting`` (with the reason
    the last connection ended or the last attempt failed), ``disconnected``
    (stopping). The broker URL in a reason never carries the password.
    """

    def check() -> tuple[bool, str]:
        mqtt = stats()
        if mqtt.state == "connected":
            return True, ""
        if mqtt.state == "off":  # wired with --mqtt, so: the bus has not started yet
            return False, "broker: not started"
        return False, f"broker {mqtt.state}" + (f": {mqtt.reason}" if mqtt.reason else "")

    return check
