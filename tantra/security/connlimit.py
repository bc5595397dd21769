"""Open connections per client address: refuse the one past ``--max-connections-per-address``.

Owns the count (:class:`AddressLimit`, pure) and its two uses: TCP device
connections (:meth:`AddressLimit.guard_factory`) and HTTP connections, which
stay counted when twisted.web hands the socket to a WebSocket (dashboard or
WAMP): the release travels with the transport (``release_on_close``), and
whichever protocol holds the socket last releases it when it closes.

Memory is one dict entry per address with an open connection. Refused
connections are closed at once, counted in ``counters.auth.connections_refused``.

Does not own: the listeners (``tantra.tap``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tantra.counters import AuthStats

RELEASE_ATTRIBUTE = "_tantra_release_address"


class AddressLimit:
    def __init__(self, maximum: int, stats: AuthStats):
        self.maximum = maximum
        self.stats = stats
        self.open: dict[str, int] = {}

    def acquire(self, host: str) -> Callable[[], None] | None:
        """A release call if ``host`` may open one more connection, else None (counted)."""
        count = self.open.get(host, 0)
        if count >= self.maximum:
            self.stats.connections_refused += 1
            return None
        self.open[host] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open[host] - 1
            if left:
                self.open[host] = left
            else:
                del self.open[host]

        return release


def host_of(address: Any) -> str:
    return str(getattr(address, "host", address))


def limit_factory(factory: Any, limit: AddressLimit) -> None:
    """Make ``factory`` (a Twisted server factory) refuse past the limit and release on close.

    The protocol's ``connectionLost`` releases; after a WebSocket upgrade the
    transport's new protocol calls :func:`release_transport` in its own.
    """
    build = factory.buildProtocol

    def buildProtocol(addr: Any) -> Any:
        release = limit.acquire(host_of(addr))
        if release is None:
            return None  # Twisted closes the connection
        protocol = build(addr)
        if protocol is None:
            release()
            return None
        protocol.__dict__[RELEASE_ATTRIBUTE] = release
        lost = protocol.connectionLost

        def connectionLost(reason: Any = None) -> None:
            transport = getattr(protocol, "transport", None)
            # A WebSocket took the socket over: its own close releases.
            if transport is None or getattr(transport, RELEASE_ATTRIBUTE, None) is None:
                release()
            lost(reason)

        protocol.connectionLost = connectionLost
        return protocol

    factory.buildProtocol = buildProtocol


def hand_over(channel: Any, transport: Any) -> None:
    """twisted.web gave ``transport`` to a WebSocket: the release goes with it."""
    # The slot hangs on the protocol the factory built: twisted.web's generic
    # channel (which wraps the HTTPChannel), seen from TCP as ``protocol`` and
    # from TLS as ``wrappedProtocol``.
    for holder in (channel, getattr(transport, "protocol", None),
                   getattr(transport, "wrappedProtocol", None)):  # fmt: skip
        release = getattr(holder, "__dict__", {}).get(RELEASE_ATTRIBUTE)
        if release is not None:
            setattr(transport, RELEASE_ATTRIBUTE, release)
            return


def release_transport(transport: Any) -> None:
    """A WebSocket's connection closed: release its address slot, if it holds one."""
    release = getattr(transport, RELEASE_ATTRIBUTE, None)
    if release is not None:
        release()
