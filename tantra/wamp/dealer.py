"""The WAMP dealer: registrations, calls, invocations, results, cancelation.

Owns: REGISTER / UNREGISTER / CALL / YIELD / ERROR (for an INVOCATION) /
CANCEL for one realm; built-in procedures the hub offers (``tantra.latest``
& co., added by whoever knows the hub); the calls in flight, and failing
them with ``wamp.error.canceled`` when their callee leaves, so no caller
hangs, or with ``wamp.error.timeout`` after ``call_timeout``; the bounds
on registrations and calls in flight per session; answers too large to
send (built-in results go out in pieces as progressive results when the
caller asked for them, otherwise ``wamp.error.payload_size_exceeded``).

One callee per procedure, exact URIs only: the ``tantra.`` and ``wamp.``
namespaces are the hub's.

Does not own: sessions or transports (it talks to :class:`IWampPeer`), what
the built-in procedures do. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
from autobahn.wamp import message
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tantra.wamp.limits import LIMIT_EXCEEDED, TIMEOUT, TOO_LARGE, WampLimits
from tantra.wamp.match import EXACT
from tantra.wamp.options import disclose_requested
from tantra.wamp.peer import (
    CANCELED,
    INVALID_ARGUMENT,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REGISTRATION,
    NOT_AUTHORIZED,
    PROCEDURE_ALREADY_EXISTS,
    RUNTIME_ERROR,
    IWampPeer,
    PayloadTooLarge,
    WampStats,
    error_reply,
    is_reserved,
)

_log = Logger()

FEATURES = {
    "caller_identification": True,
    "progressive_call_results": True,
    "call_canceling": True,
}

CANCEL_SKIP = "skip"
CANCEL_KILL = "kill"
CANCEL_KILL_NO_WAIT = "killnowait"


class CallError(Exception):
    """Raised by a built-in procedure: the caller gets ERROR ``uri`` with ``text``."""

    def __init__(self, uri: str, text: str):
        super().__init__(text)
        self.uri = uri
        self.text = text


#: A built-in procedure: (args, kwargs) -> the single result value, or a Deferred of it
#: (a history query runs on the store's threads); a CallError, raised or as the
#: Deferred's failure, becomes the caller's ERROR.
Builtin = Callable[[list[Any], dict[str, Any]], Any]


@attrs.define(eq=False)
class Registration:
    id: int
    procedure: str
    callee: IWampPeer


@attrs.define(eq=False)
class PendingCall:
    """A CALL forwarded to a callee as INVOCATION ``invocation``, waiting for its answer."""

    invocation: int
    caller: IWampPeer
    caller_request: int
    callee: IWampPeer
    registration: Registration
    receive_progress: bool
    #: Clock time after which the caller gets ``wamp.error.timeout`` (inf: never).
    deadline: float = math.inf


class Dealer:
    """Routed RPC for one realm."""

    def __init__(
        self,
        *,
        new_registration_id: Callable[[], int],
        new_request_id: Callable[[], int],
        stats: WampStats,
        limits: WampLimits | None = None,
        clock: IReactorTime | None = None,
    ):
        self._new_registration_id = new_registration_id
        self._new_request_id = new_request_id
        self._stats = stats
        self._limits = limits if limits is not None else WampLimits()
        self._clock = clock
        self._builtins: dict[str, Builtin] = {}
        # Built-ins that return a Deferred: the calls-in-flight bound is checked before they start.
        self._deferred_builtins: set[str] = set()
        self._by_procedure: dict[str, Registration] = {}
        self._by_id: dict[int, Registration] = {}
        # Every index is per session too, so a session leaving costs what it held.
        self._registrations_of: dict[IWampPeer, dict[int, Registration]] = {}
        # By invocation id, which grows: oldest first, so the oldest deadline is first.
        self._pending: dict[int, PendingCall] = {}
        self._calls_of_caller: dict[IWampPeer, dict[int, PendingCall]] = {}
        self._calls_of_callee: dict[IWampPeer, dict[int, PendingCall]] = {}
        self._timeout_call: IDelayedCall | None = None
        # Built-in calls whose result is a Deferred, per caller: request -> Deferred.
        self._builtin_calls: dict[IWampPeer, dict[int, defer.Deferred]] = {}

    def add_builtin(self, procedure: str, function: Builtin, *, deferred: bool = False) -> None:
        """``deferred``: ``function`` returns a Deferred (it starts work, e.g. a store read);
        a call over the session's calls-in-flight bound is then refused without starting it."""
        self._builtins[procedure] = function
        if deferred:
            self._deferred_builtins.add(procedure)

    @property
    def procedures(self) -> list[str]:
        return [*self._builtins, *self._by_procedure]

    @property
    def pending_calls(self) -> int:
        return len(self._pending)

    # -- callee side ------------------------------------------------------------

    def register(self, peer: IWampPeer, msg: message.Register) -> None:
        if msg.match not in (None, EXACT) or msg.invoke not in (None, "single"):
            self._refuse(
                peer, msg, INVALID_ARGUMENT, "only exact, single-callee registrations are supported"
            )
            return
        if msg.procedure in self._builtins or msg.procedure in self._by_procedure:
            self._refuse(
                peer, msg, PROCEDURE_ALREADY_EXISTS, f"{msg.procedure} is already registered"
            )
            return
        if is_reserved(msg.procedure):
            self._refuse(
                peer,
                msg,
                NOT_AUTHORIZED,
                f"{msg.procedure}: wamp. and tantra. are reserved",
            )
            return
        mine = self._registrations_of.get(peer, {})
        if len(mine) >= self._limits.max_registrations:
            self._stats.limits_hit["registrations"] += 1
            self._refuse(
                peer,
                msg,
                LIMIT_EXCEEDED,
                f"a session may hold {self._limits.max_registrations} registrations",
            )
            return
        registration = Registration(self._new_registration_id(), msg.procedure, peer)
        self._by_procedure[msg.procedure] = registration
        self._by_id[registration.id] = registration
        self._registrations_of.setdefault(peer, {})[registration.id] = registration
        peer.send(message.Registered(msg.request, registration.id))

    def unregister(self, peer: IWampPeer, msg: message.Unregister) -> None:
        registration = self._by_id.get(msg.registration)
        if registration is None or registration.callee is not peer:
            self._refuse(peer, msg, NO_SUCH_REGISTRATION, f"no registration {msg.registration}")
            return
        self._forget(registration)
        peer.send(message.Unregistered(msg.request))

    def yield_(self, peer: IWampPeer, msg: message.Yield) -> None:
        call = self._pending.get(msg.request)
        if call is None or call.callee is not peer:
            return  # the call was canceled or its caller left: nobody to tell
        if msg.progress:
            if call.receive_progress:
                self._answer(
                    call.caller,
                    call.caller_request,
                    message.Result(
                        call.caller_request, args=msg.args, kwargs=msg.kwargs, progress=True
                    ),
                )
            return
        self._finish(call)
        self._answer(
            call.caller,
            call.caller_request,
            message.Result(call.caller_request, args=msg.args, kwargs=msg.kwargs),
        )

    def invocation_error(self, peer: IWampPeer, msg: message.Error) -> None:
        call = self._pending.get(msg.request)
        if call is None or call.callee is not peer:
            return
        self._finish(call)
        self._answer(
            call.caller,
            call.caller_request,
            message.Error(
                message.Call.MESSAGE_TYPE,
                call.caller_request,
                msg.error,
                args=msg.args,
                kwargs=msg.kwargs,
            ),
        )

    # -- caller side ------------------------------------------------------------

    def call(self, peer: IWampPeer, msg: message.Call) -> None:
        self._stats.calls += 1
        builtin = self._builtins.get(msg.procedure)
        receive_progress = bool(msg.receive_progress) and peer.has_feature(
            "caller", "progressive_call_results"
        )
        if builtin is not None:
            self._call_builtin(peer, msg, builtin, receive_progress)
            return
        registration = self._by_procedure.get(msg.procedure)
        if registration is None:
            self._refuse(peer, msg, NO_SUCH_PROCEDURE, f"no procedure {msg.procedure}")
            return
        if msg.payload is not None:
            self._refuse(peer, msg, NOT_AUTHORIZED, "payload transparency is not supported")
            return
        mine = self._calls_of_caller.get(peer, {})
        if self._in_flight(peer) >= self._limits.max_pending_calls:
            self._refuse_too_many_calls(peer, msg)
            return
        if msg.request in mine or msg.request in self._builtin_calls.get(peer, {}):
            self._refuse(peer, msg, INVALID_ARGUMENT, f"request {msg.request} is still running")
            return
        callee = registration.callee
        call = PendingCall(
            self._new_request_id(), peer, msg.request, callee, registration, receive_progress
        )
        disclose = disclose_requested(msg)
        invocation = message.Invocation(
            call.invocation,
            registration.id,
            args=msg.args,
            kwargs=msg.kwargs,
            receive_progress=True if receive_progress else None,
            caller=peer.session_id if disclose else None,
            caller_authid=peer.authid if disclose else None,
            caller_authrole=peer.authrole if disclose else None,
            # Only registrations by pattern need it; harmless and helpful otherwise.
            procedure=None,
        )
        try:
            callee.send(invocation)
        except PayloadTooLarge as error:
            self._stats.too_large["invocation"] += 1
            self._refuse(peer, msg, TOO_LARGE, f"the invocation for the callee is {error}")
            return
        self._pending[call.invocation] = call
        self._calls_of_caller.setdefault(peer, {})[msg.request] = call
        self._calls_of_callee.setdefault(callee, {})[call.invocation] = call
        self._start_timer(call)

    def cancel(self, peer: IWampPeer, msg: message.Cancel) -> None:
        running = self._builtin_calls.get(peer, {}).get(msg.request)
        if running is not None:  # its result, when it comes, goes nowhere
            _pop_from(self._builtin_calls, peer, msg.request)
            self._call_error(peer, msg.request, CANCELED, "call canceled")
            return
        call = self._calls_of_caller.get(peer, {}).get(msg.request)
        if call is None:
            return  # already answered
        mode = msg.mode or CANCEL_KILL
        callee_can_stop = call.callee.has_feature("callee", "call_canceling")
        if mode != CANCEL_SKIP and callee_can_stop:
            call.callee.send(message.Interrupt(call.invocation, mode=mode))
            if mode == CANCEL_KILL:
                return  # the callee answers with an ERROR, which goes to the caller
        self._finish(call)
        self._call_error(peer, msg.request, CANCELED, "call canceled")

    # -- sessions leaving ------------------------------------------------------------

    def detach(self, peer: IWampPeer) -> None:
        """Forget a session's registrations; fail calls it was serving; drop calls it made.

        Costs what the session held (its own indices), not every call in the realm.
        """
        self._builtin_calls.pop(peer, None)  # their results go nowhere
        for registration in list(self._registrations_of.get(peer, {}).values()):
            self._forget(registration)
        for call in list(self._calls_of_callee.get(peer, {}).values()):
            self._finish(call)
            self._call_error(
                call.caller,
                call.caller_request,
                CANCELED,
                f"the callee of {call.registration.procedure} left",
            )
        for call in list(self._calls_of_caller.get(peer, {}).values()):
            self._finish(call)
            if call.callee.has_feature("callee", "call_canceling"):
                call.callee.send(message.Interrupt(call.invocation, mode=CANCEL_KILL_NO_WAIT))

    # -- call timeouts ------------------------------------------------------------

    def _start_timer(self, call: PendingCall) -> None:
        """One timer for the whole dealer, set for the oldest call's deadline."""
        if self._clock is None or not self._limits.call_timeout > 0:
            return
        call.deadline = self._clock.seconds() + self._limits.call_timeout
        if self._timeout_call is None:
            self._timeout_call = self._clock.callLater(self._limits.call_timeout, self._expire)

    def _expire(self) -> None:
        self._timeout_call = None
        assert self._clock is not None
        now = self._clock.seconds()
        pending = self._pending
        while pending:
            call = next(iter(pending.values()))
            if call.deadline > now:
                self._timeout_call = self._clock.callLater(call.deadline - now, self._expire)
                return
            self._finish(call)
            self._stats.calls_timed_out += 1
            if call.callee.has_feature("callee", "call_canceling"):
                call.callee.send(message.Interrupt(call.invocation, mode=CANCEL_KILL_NO_WAIT))
            self._call_error(
                call.caller,
                call.caller_request,
                TIMEOUT,
                f"{call.registration.procedure} did not answer within"
                f" {self._limits.call_timeout:g}s",
            )

    # -- internals ------------------------------------------------------------

    def _forget(self, registration: Registration) -> None:
        del self._by_id[registration.id]
        del self._by_procedure[registration.procedure]
        _pop_from(self._registrations_of, registration.callee, registration.id)

    def _finish(self, call: PendingCall) -> None:
        self._pending.pop(call.invocation, None)
        _pop_from(self._calls_of_caller, call.caller, call.caller_request)
        _pop_from(self._calls_of_callee, call.callee, call.invocation)

    def _answer(self, caller: IWampPeer, request: int, answer: message.Message) -> None:
        """Send a RESULT or ERROR; one too large to send becomes a small ERROR."""
        try:
            caller.send(answer)
        except PayloadTooLarge as error:
            self._stats.too_large[type(answer).__name__.lower()] += 1
            self._call_error(caller, request, TOO_LARGE, f"the answer is {error}")

    def _call_builtin(
        self, peer: IWampPeer, msg: message.Call, builtin: Builtin, receive_progress: bool
    ) -> None:
        if msg.procedure in self._deferred_builtins and not self._room_for_builtin(peer, msg):
            return
        try:
            result = builtin(list(msg.args or ()), dict(msg.kwargs or {}))
            restrict = getattr(peer, "restrict_result", None)  # a scoped session (--auth)
            if restrict is not None:
                result = restrict(msg.procedure, result)
        except CallError as error:
            self._refuse(peer, msg, error.uri, error.text)
            return
        except Exception:
            self._builtin_failed(peer, msg, Failure())
            return
        if isinstance(result, defer.Deferred):
            self._wait_for_builtin(peer, msg, result, receive_progress)
            return
        self._send_builtin_result(peer, msg, result, receive_progress)

    def _wait_for_builtin(
        self, peer: IWampPeer, msg: message.Call, result: defer.Deferred, receive_progress: bool
    ) -> None:
        """Answer when ``result`` fires, if the caller is still there and did not cancel.

        Counted with the session's calls in flight (``max_pending_calls``).
        """
        if not self._room_for_builtin(peer, msg):
            result.cancel()
            result.addErrback(lambda _: None)
            return
        self._builtin_calls.setdefault(peer, {})[msg.request] = result

        def done(value: Any) -> None:
            if self._builtin_calls.get(peer, {}).get(msg.request) is not result:
                return  # canceled, or the caller left
            _pop_from(self._builtin_calls, peer, msg.request)
            self._send_builtin_result(peer, msg, value, receive_progress)

        def failed(reason: Failure) -> None:
            if self._builtin_calls.get(peer, {}).get(msg.request) is not result:
                return
            _pop_from(self._builtin_calls, peer, msg.request)
            if isinstance(reason.value, CallError):
                self._refuse(peer, msg, reason.value.uri, reason.value.text)
            else:
                self._builtin_failed(peer, msg, reason)

        result.addCallbacks(done, failed)

    def _room_for_builtin(self, peer: IWampPeer, msg: message.Call) -> bool:
        """False (and the call refused) if ``peer`` is at its calls-in-flight bound or reuses
        a request id still in flight."""
        if self._in_flight(peer) >= self._limits.max_pending_calls or msg.request in (
            self._builtin_calls.get(peer, {})
        ):
            self._refuse_too_many_calls(peer, msg)
            return False
        return True

    def _in_flight(self, peer: IWampPeer) -> int:
        """The session's calls waiting for an answer: routed and built-in, one bound for both."""
        return len(self._calls_of_caller.get(peer, {})) + len(self._builtin_calls.get(peer, {}))

    def _builtin_failed(self, peer: IWampPeer, msg: message.Call, reason: Failure) -> None:
        _log.failure("built-in procedure {procedure} failed", reason, procedure=msg.procedure)
        self._call_error(peer, msg.request, RUNTIME_ERROR, f"{msg.procedure} failed inside the hub")

    def _send_builtin_result(
        self, peer: IWampPeer, msg: message.Call, result: Any, receive_progress: bool
    ) -> None:
        try:
            peer.send(message.Result(msg.request, args=[result]))
        except PayloadTooLarge as error:
            if receive_progress and isinstance(result, list) and len(result) > 1:
                pieces = math.ceil(error.size / (0.8 * error.limit))
                self._send_in_pieces(peer, msg.request, result, pieces)
                return
            self._stats.too_large["result"] += 1
            self._refuse(
                peer,
                msg,
                TOO_LARGE,
                f"the result is {error}; ask for less (e.g. limit= and after=) or call with"
                " receive_progress to get it in pieces",
            )

    def _send_in_pieces(self, peer: IWampPeer, request: int, items: list[Any], pieces: int) -> None:
        """``items`` as progressive RESULTs of at most the outgoing limit, the last one final.

        Each RESULT carries ``args=[list]``; the caller concatenates them in order.
        A piece still too large is halved; a single item too large ends the call
        with ``wamp.error.payload_size_exceeded``.
        """
        size = math.ceil(len(items) / max(1, pieces))
        todo = [items[start : start + size] for start in range(0, len(items), size)]
        todo.reverse()  # a stack: the next piece to send is last
        while todo:
            piece = todo.pop()
            final = not todo
            try:
                peer.send(message.Result(request, args=[piece], progress=None if final else True))
            except PayloadTooLarge as error:
                if len(piece) == 1:
                    self._stats.too_large["result"] += 1
                    self._call_error(peer, request, TOO_LARGE, f"one item of the result is {error}")
                    return
                half = len(piece) // 2
                todo.extend([piece[half:], piece[:half]])

    def _refuse_too_many_calls(self, peer: IWampPeer, msg: message.Call) -> None:
        self._stats.limits_hit["pending_calls"] += 1
        self._refuse(
            peer,
            msg,
            LIMIT_EXCEEDED,
            f"a session may have {self._limits.max_pending_calls} calls waiting for an answer",
        )

    def _call_error(self, caller: IWampPeer, request: int, uri: str, text: str) -> None:
        """An ERROR for the CALL ``request`` of ``caller``, counted by its URI."""
        self._stats.errors_sent[uri] += 1
        caller.send(error_reply(message.Call.MESSAGE_TYPE, request, uri, text))

    def _refuse(self, peer: IWampPeer, msg: Any, uri: str, text: str) -> None:
        self._stats.errors_sent[uri] += 1
        _log.debug(
            "refused {kind} from session {session}: {uri} {text}",
            kind=type(msg).__name__.upper(),
            session=peer.session_id,
            uri=uri,
            text=text,
        )
        peer.send(error_reply(msg.MESSAGE_TYPE, msg.request, uri, text))


def _pop_from(index: dict[IWampPeer, dict[int, Any]], peer: IWampPeer, key: int) -> None:
    """Remove ``key`` from ``peer``'s entry of a per-session index; drop the entry when empty."""
    mine = index.get(peer)
    if mine is not None:
        mine.pop(key, None)
        if not mine:
            del index[peer]
