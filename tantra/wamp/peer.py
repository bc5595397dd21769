"""The seams of the WAMP router: who talks to whom, the error URIs, the counters.

Owns: :class:`IWampPeer` (what the broker and dealer may do with a joined
session), :class:`IWampConnection` (what a router session may do with the
transport under it), the WAMP error and close URIs Tantra sends, how an ERROR
reply is built. :class:`WampStats` lives in ``tantra.counters``.

Does not own: any behaviour. Pure: no Twisted reactor, no sockets; messages
are Autobahn's ``autobahn.wamp.message`` classes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from autobahn.wamp import message
from zope.interface import Attribute, Interface

# The router's section of tantra.counters.Counters, importable from here as before.
from tantra.counters import WampStats as WampStats

# Error and close URIs (wamp-proto "Predefined URIs"); docs/wamp.md lists them.
NO_SUCH_REALM = "wamp.error.no_such_realm"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
NO_AUTH_METHOD = "wamp.error.no_auth_method"
INVALID_ARGUMENT = "wamp.error.invalid_argument"
INVALID_URI = "wamp.error.invalid_uri"
NOT_AUTHORIZED = "wamp.error.not_authorized"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
NO_SUCH_REGISTRATION = "wamp.error.no_such_registration"
PROCEDURE_ALREADY_EXISTS = "wamp.error.procedure_already_exists"
CANCELED = "wamp.error.canceled"
RUNTIME_ERROR = "wamp.error.runtime_error"
GOODBYE_AND_OUT = "wamp.close.goodbye_and_out"
SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"
CLOSE_NORMAL = "wamp.close.normal"

#: URI namespaces clients may not register procedures in (``tantra.latest`` & co.).
RESERVED_PREFIXES = ("wamp.", "tantra.")


class IWampConnection(Interface):
    """The transport under one router session, as the session sees it."""

    peer = Attribute("Printable address of the client, for log lines.")

    def send(msg: message.Message, conflation_key: Hashable | None = None) -> None:
        """Queue ``msg`` for the client, or raise :class:`PayloadTooLarge`.

        ``conflation_key`` marks a message a newer one with the same key may
        replace while the client is slow (one reading per sensor and
        subscription, as dashboards get); ``None`` means "never replace".
        """

    def send_events(group: Any) -> int:
        """Queue a fan-out turn's events (a :class:`~tantra.wamp.events.EventGroup`) as
        :meth:`send` would, each with its conflation key; returns how many were
        not sent for exceeding the outgoing limit (an event has no one to answer)."""

    def close(going_away: bool = False) -> None:
        """Close the transport (after an ABORT or GOODBYE was queued)."""

    def internal_error() -> None:
        """The router failed on this client's input: count it and close (1011)."""

    def writable() -> bool:
        """Does the client's send buffer have room (its outbox is neither paused nor closed)?"""

    def when_writable(callback: Any) -> None:
        """Call ``callback()`` each time the send buffer drains after being full (one callback
        per connection: a later one replaces it)."""

    def pause_reading() -> None:
        """Stop reading the client's input (its session has a backlog of work)."""

    def resume_reading() -> None:
        """Read the client's input again."""


class PayloadTooLarge(Exception):
    """Raised by :meth:`IWampConnection.send`: the message exceeds the outgoing limit; nothing
    was sent. The caller answers with ``wamp.error.payload_size_exceeded`` or drops it."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class IWampPeer(Interface):
    """A joined session, as the broker and dealer see it."""

    session_id = Attribute("WAMP session id (int).")
    authid = Attribute("Authenticated id (str).")
    authrole = Attribute("Authenticated role (str).")

    def send(msg: message.Message, conflation_key: Hashable | None = None) -> None:
        """Send one message to this session's client."""

    def send_events(group: Any) -> int:
        """Send a fan-out turn's events (see :meth:`IWampConnection.send_events`).

        The broker keeps this function (not the peer) while the peer is
        subscribed, so it must not change while it is; it may be an attribute."""

    def has_feature(role: str, feature: str) -> bool:
        """Did the client announce ``feature`` for ``role`` in its HELLO?"""

    def writable() -> bool:
        """May more be sent now without being held (see :meth:`IWampConnection.writable`)?"""

    def when_writable(callback: Any) -> None:
        """See :meth:`IWampConnection.when_writable` (the broker's retained events wait on it)."""


def error_reply(
    request_type: int, request: int, uri: str, text: str, **details: Any
) -> message.Error:
    """An ERROR a client's Autobahn turns into ``ApplicationError(uri, text, **details)``."""
    return message.Error(request_type, request, uri, args=[text], kwargs=details or None)


def is_reserved(uri: str) -> bool:
    return uri.startswith(RESERVED_PREFIXES)
