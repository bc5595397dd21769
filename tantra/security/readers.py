"""Readers see only their scope: subscriptions and snapshots through a token's :class:`Scope`.

Owns :func:`subscribe_scoped` (the one way a scoped client subscribes to the
hub: dashboards, and any other reader) and :class:`ScopedSink`, which passes
on only the readings a scope allows when the narrowed filter cannot say it
alone. Sinks of one token share its scope object, so a turn's batch is
restricted once per scope (``Batch.encoded`` memo), not once per client.
Also the two request checks every HTTP-side reader path shares: the token a
request presents (:func:`presented_token`) and the ``Origin`` rule
(:func:`origin_allowed`).

Does not own: scope matching (``tantra.security.scopes``), the hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zope.interface import implementer

from tantra.hub import Batch, Filter, Hub, ISink, Subscription
from tantra.model import Reading
from tantra.security.scopes import Scope


def restricted(scope: Scope):
    """The per-scope batch restriction (one function per scope: the memo key)."""
    function = scope._restrict_batch
    if function is None:

        def function(readings: Sequence[Reading]) -> Batch:
            return Batch(scope.restrict(readings))

        scope._restrict_batch = function
    return function


@implementer(ISink)
class ScopedSink:
    """Hands ``sink`` the part of each batch that ``scope`` allows (nothing when none)."""

    __slots__ = ("_restrict", "sink")

    def __init__(self, sink: ISink, scope: Scope):
        self.sink = sink
        self._restrict = restricted(scope)

    def deliver(self, batch: Batch) -> None:
        allowed = batch.encoded(self._restrict)
        if allowed.readings:
            self.sink.deliver(allowed)


def subscribe_scoped(
    hub: Hub, sink: ISink, filter_: Filter, scope: Scope | None
) -> tuple[Subscription | None, list[Reading]]:
    """Subscribe ``sink`` to ``filter_`` ∩ ``scope``; the snapshot is intersected too.

    Returns ``(None, [])`` when the intersection is empty: the client stays
    connected and simply sees nothing (it asked for what it may not see).
    """
    if scope is None or scope.everything:
        return hub.subscribe(sink, filter_)
    narrowed, check = scope.narrow(filter_)
    if narrowed is None:
        return None, []
    if not check:
        return hub.subscribe(sink, narrowed)
    subscription, snapshot = hub.subscribe(ScopedSink(sink, scope), narrowed)
    return subscription, scope.restrict(snapshot)


def latest_scoped(hub: Hub, filter_: Filter, scope: Scope | None) -> list[Reading]:
    """``Hub.latest`` seen through a scope (``tantra.latest``, the REST API)."""
    if scope is None or scope.everything:
        return hub.latest(filter_)
    narrowed, check = scope.narrow(filter_)
    if narrowed is None:
        return []
    found = hub.latest(narrowed)
    return scope.restrict(found) if check else found


BEARER = b"bearer "


def presented_token(headers: Mapping[str, str], query: Mapping[str, Sequence[str]]) -> str | None:
    """The token of ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (header first)."""
    header = headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    values = query.get("token")
    return values[0] if values else None


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """No list: any origin. A list: a browser's ``Origin`` must be on it exactly.

    A request without ``Origin`` is not from a browser page (devices,
    scripts): the list does not apply to it; tokens do.
    """
    if not allowed or origin is None:
        return True
    return origin.rstrip("/").lower() in allowed
