"""One client's WAMP session on the router: the state machine between transport and realm.

Owns: the session lifecycle (HELLO → WELCOME or ABORT; GOODBYE answered;
router-initiated GOODBYE; protocol violations → ABORT
``wamp.error.protocol_violation`` and close), which messages are allowed in
which state, routing each allowed message to broker or dealer, and being the
:class:`IWampPeer` those see. Authentication is asked of the router's
:class:`~tantra.wamp.auth.IAuthenticator`, so a ticket authenticator only
adds a CHALLENGE round trip here (the ``CHALLENGED`` state exists already).

Does not own: bytes or serializers (``tantra.wamp`` hands it parsed
``autobahn.wamp.message`` objects and gives it an
:class:`~tantra.wamp.peer.IWampConnection`), pub/sub or RPC rules. Pure.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from autobahn.wamp import message
from twisted.logger import Logger
from zope.interface import implementer

from tantra.wamp import auth as wamp_auth
from tantra.wamp.events import EventGroup
from tantra.wamp.limits import shorten
from tantra.wamp.parse import Item, Refusal, Violation
from tantra.wamp.peer import (
    GOODBYE_AND_OUT,
    NO_SUCH_REALM,
    NOT_AUTHORIZED,
    PROTOCOL_VIOLATION,
    SYSTEM_SHUTDOWN,
    IWampConnection,
    IWampPeer,
    error_reply,
)
from tantra.wamp.router import IJoinedSession, Router

_log = Logger()

#: GOODBYE reason when the session's token is revoked (``--auth``).
TOKEN_REVOKED = "tantra.close.token_revoked"


class State(enum.Enum):
    NEW = "new"  # transport open, no HELLO yet (or after a GOODBYE exchange)
    CHALLENGED = "challenged"  # CHALLENGE sent, waiting for AUTHENTICATE
    JOINED = "joined"
    LEAVING = "leaving"  # router said GOODBYE, waiting for the client's
    CLOSED = "closed"  # ABORT sent or transport gone: ignore everything


@implementer(IWampPeer, IJoinedSession)
class RouterSession:
    """A client's session; the I/O layer feeds it messages and tells it when the transport goes."""

    def __init__(self, router: Router, connection: IWampConnection):
        self._router = router
        self._connection = connection
        self.state = State.NEW
        self.session_id = 0
        self.authid = ""
        self.authrole = ""
        #: The token this session joined with (``--auth``), else None.
        self.token: Any = None
        self._release_token: Callable[[], None] | None = None
        self._client_roles: dict[str, Any] = {}
        self._inbox: deque[Item] = deque()
        self._later: Any = None  # the DelayedCall that drains the inbox on a later turn
        self._work = 0  # messages handled + sent since the current turn's drain began
        self._reading_paused = False
        self.send_events = _no_events
        broker, dealer = router.broker, router.dealer
        handlers: dict[type, Callable[[Any], None]] = {
            message.Subscribe: lambda msg: broker.subscribe(self, msg),
            message.Unsubscribe: lambda msg: broker.unsubscribe(self, msg),
            message.Publish: lambda msg: broker.publish(self, msg),
            message.Register: lambda msg: dealer.register(self, msg),
            message.Unregister: lambda msg: dealer.unregister(self, msg),
            message.Call: lambda msg: dealer.call(self, msg),
            message.Cancel: lambda msg: dealer.cancel(self, msg),
            message.Yield: lambda msg: dealer.yield_(self, msg),
            message.Error: self._on_error,
            message.Goodbye: self._on_goodbye,
        }
        if router.authorizer is not None:
            for kind in (message.Subscribe, message.Publish, message.Register, message.Call):
                handlers[kind] = self._authorized(handlers[kind])
        self._joined_handlers = handlers

    def __repr__(self) -> str:
        return f"<RouterSession {self.session_id or '-'} {self.state.value} {self.authid}>"

    # -- IWampPeer ------------------------------------------------------------

    def send(self, msg: message.Message, conflation_key: Hashable | None = None) -> None:
        if self.state is not State.CLOSED:
            self._work += 1
            self._connection.send(msg, conflation_key)

    #: A fan-out turn's events (``IWampPeer.send_events``): while joined, the
    #: connection's own ``send_events``, so the broker's per-subscriber call
    #: reaches the outbox directly; otherwise nothing is sent. Not counted as
    #: work: fan-out runs in the hub's flush, never inside :meth:`_drain`,
    #: which starts every turn's count from zero.
    send_events: Callable[[EventGroup], int]

    def has_feature(self, role: str, feature: str) -> bool:
        return getattr(self._client_roles.get(role), feature, None) is True

    def writable(self) -> bool:
        return self.state is State.JOINED and self._connection.writable()

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._connection.when_writable(callback)

    # -- input from the transport ------------------------------------------------------------

    def receive(self, items: list[Item]) -> None:
        """Handle one WebSocket message's items in order, at most ``turn_budget`` work a turn.

        Work is messages handled plus messages sent (a SUBSCRIBE with
        ``get_retained`` costs what it sends). Past the budget the rest waits
        for a later reactor turn and the connection stops reading, so one
        batched message of a thousand joins cannot starve ingest, and a client
        sending faster than it is served is held back by TCP, not by memory.
        """
        self._inbox.extend(items)
        if self._later is None:
            self._drain()

    def _drain(self) -> None:
        self._later = None
        self._work = 0
        clock, budget = self._router.clock, self._router.limits.turn_budget
        inbox = self._inbox
        while inbox:
            if self.state is State.CLOSED:
                inbox.clear()
                break
            if clock is not None and self._work >= budget:
                self._later = clock.callLater(0, self._drain)
                if not self._reading_paused:
                    self._reading_paused = True
                    self._connection.pause_reading()
                return
            self._work += 1
            item = inbox.popleft()
            try:
                self._handle(item)
            except Exception:
                self._internal_error(item)
                return
        if self._reading_paused and self.state is not State.CLOSED:
            self._reading_paused = False
            self._connection.resume_reading()

    def _handle(self, item: Item) -> None:
        if isinstance(item, Violation):
            self.protocol_violation(item.detail)
        elif isinstance(item, Refusal):
            self._on_refusal(item)
        else:
            self.on_message(item)

    def _internal_error(self, item: Item) -> None:
        """A bug in the router: log it (throttled), and close this connection only (1011)."""
        held_back = self._router.log_throttle.allow("internal_error")
        if held_back is not None:
            _log.failure(
                "WAMP router failed on {kind} from {peer} ({held_back} more not logged)",
                kind=type(item).__name__,
                peer=self._connection.peer,
                held_back=held_back,
            )
        self.connection_lost()
        self._connection.internal_error()

    def _on_refusal(self, refusal: Refusal) -> None:
        if self.state is not State.JOINED:
            self.protocol_violation(f"message type {refusal.request_type} before joining")
            return
        self._router.stats.errors_sent[refusal.uri] += 1
        held_back = self._router.log_throttle.allow("refused")
        if held_back is not None:
            _log.info(
                "refused a request of session {session} from {peer}: {uri} {text}"
                " ({held_back} such lines held back)",
                session=self.session_id,
                peer=self._connection.peer,
                uri=refusal.uri,
                text=refusal.text,
                held_back=held_back,
            )
        if not refusal.silent:
            self.send(error_reply(refusal.request_type, refusal.request, refusal.uri, refusal.text))

    def on_message(self, msg: message.Message) -> None:
        state = self.state
        if state is State.JOINED:
            handler = self._joined_handlers.get(type(msg))
            if handler is None:
                self.protocol_violation(f"{_name(msg)} is not a message a client sends")
            else:
                handler(msg)
        elif state is State.NEW:
            if isinstance(msg, message.Hello):
                self._on_hello(msg)
            else:
                self.protocol_violation(f"{_name(msg)} before HELLO")
        elif state is State.CHALLENGED:
            if isinstance(msg, message.Authenticate):
                self._on_authenticate(msg)
            else:
                self.protocol_violation(f"{_name(msg)} while waiting for AUTHENTICATE")
        elif state is State.LEAVING and isinstance(msg, message.Goodbye):
            self.state = State.CLOSED
            self._connection.close(going_away=True)
        # LEAVING (anything but GOODBYE) and CLOSED: the session is over; drop it.

    def protocol_violation(self, detail: str) -> None:
        """ABORT with ``wamp.error.protocol_violation``, log, count, close the transport."""
        if self.state is State.CLOSED:
            return
        self._router.stats.protocol_violations += 1
        detail = shorten(detail, 200)
        held_back = self._router.log_throttle.allow("protocol_violation")
        if held_back is not None:
            _log.warn(
                "WAMP protocol violation by {peer} (session {session}): {detail}"
                " ({held_back} more not logged; count at /stats)",
                peer=self._connection.peer,
                session=self.session_id or "-",
                detail=detail,
                held_back=held_back,
            )
        self._abort(PROTOCOL_VIOLATION, detail, logged=True)

    def connection_lost(self) -> None:
        self._leave_realm()
        self.state = State.CLOSED
        self._inbox.clear()
        if self._later is not None:
            self._later.cancel()
            self._later = None

    # -- input from the router ------------------------------------------------------------

    def shut_down(self) -> None:
        if self.state is State.JOINED:
            self._connection.send(message.Goodbye(SYSTEM_SHUTDOWN, "the hub is stopping"))
            self._leave_realm()
            self.state = State.LEAVING

    # -- handshake ------------------------------------------------------------

    def _on_hello(self, msg: message.Hello) -> None:
        realm = msg.realm or self._router.realm
        if realm != self._router.realm:
            self._abort(
                NO_SUCH_REALM,
                f"no realm {shorten(realm)!r} here; this hub serves {self._router.realm!r}",
            )
            return
        self._client_roles = dict(msg.roles or {})
        self._decide(self._router.authenticator.hello(realm, msg))

    def _on_authenticate(self, msg: message.Authenticate) -> None:
        self._decide(self._router.authenticator.authenticate(msg))

    def _decide(self, outcome: wamp_auth.Outcome) -> None:
        if isinstance(outcome, wamp_auth.Deny):
            self._abort(outcome.reason, outcome.text)
        elif isinstance(outcome, wamp_auth.Challenge):
            self.state = State.CHALLENGED
            self._connection.send(message.Challenge(outcome.method, outcome.extra))
        else:
            self._welcome(outcome)

    def _authorized(self, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        """``handle``, asked of the router's authorizer first (``--auth``)."""
        authorizer = self._router.authorizer

        def checked(msg: Any) -> None:
            refusal = authorizer.refusal(self.token, msg)
            if refusal is None:
                handle(msg)
            elif not (isinstance(msg, message.Publish) and not msg.acknowledge):
                self.send(error_reply(msg.MESSAGE_TYPE, msg.request, NOT_AUTHORIZED, refusal))

        return checked

    def restrict_result(self, procedure: str, result: Any) -> Any:
        """A built-in's result as this session may see it (the dealer asks)."""
        authorizer = self._router.authorizer
        if authorizer is None:
            return result
        return authorizer.restrict_result(self.token, procedure, result)

    def _revoked(self) -> None:
        """The token was revoked: GOODBYE, then the transport closes."""
        self._release_token = None
        if self.state is State.JOINED:
            self._connection.send(message.Goodbye(TOKEN_REVOKED, "token revoked"))
            self._leave_realm()
            self.state = State.CLOSED
            self._connection.close()

    def _welcome(self, granted: wamp_auth.Welcome) -> None:
        self.authid = granted.authid
        self.authrole = granted.authrole
        self.token = granted.token
        if granted.token is not None and self._router.authorizer is not None:
            self._release_token = self._router.authorizer.joined(granted.token, self._revoked)
        self.session_id = self._router.join(self)
        self.state = State.JOINED
        self.send_events = self._connection.send_events
        _log.debug(
            "WAMP session {session} joined as {authid} from {peer}",
            session=self.session_id,
            authid=self.authid,
            peer=self._connection.peer,
        )
        self._connection.send(
            message.Welcome(
                self.session_id,
                self._router.roles(),
                realm=self._router.realm,
                authid=granted.authid,
                authrole=granted.authrole,
                authmethod=granted.authmethod,
                authprovider=granted.authprovider,
                authextra=granted.authextra,
            )
        )

    # -- joined ------------------------------------------------------------

    def _on_error(self, msg: message.Error) -> None:
        if msg.request_type != message.Invocation.MESSAGE_TYPE:
            self.protocol_violation(f"ERROR for request type {msg.request_type}")
            return
        self._router.dealer.invocation_error(self, msg)

    def _on_goodbye(self, msg: message.Goodbye) -> None:
        self._leave_realm()
        self.state = State.NEW  # the transport may carry a new session (WAMP allows it)
        self._connection.send(message.Goodbye(GOODBYE_AND_OUT))

    # -- endings ------------------------------------------------------------

    def _abort(self, reason: str, text: str, *, logged: bool = False) -> None:
        self._router.stats.aborts_sent[reason] += 1
        held_back = None if logged else self._router.log_throttle.allow("abort")
        if held_back is not None:
            _log.info(
                "WAMP session from {peer} aborted: {reason} {text} ({held_back} more not logged)",
                peer=self._connection.peer,
                reason=reason,
                text=text,
                held_back=held_back,
            )
        self._connection.send(message.Abort(reason, message=text))
        self._leave_realm()
        self.state = State.CLOSED
        self._connection.close()

    def _leave_realm(self) -> None:
        self.send_events = _no_events
        if self._release_token is not None:
            self._release_token()
            self._release_token = None
        if self.session_id:
            self._router.leave(self.session_id)
            self.session_id = 0


def _no_events(group: EventGroup) -> int:
    """``send_events`` of a session that is not joined: it gets no events."""
    return 0


def _name(msg: message.Message) -> str:
    return type(msg).__name__.upper()
