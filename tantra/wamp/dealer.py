"""The WAMP dealer: registrations, calls, invocations, results, cancelation.

Owns: REGISTER / UNREGISTER / CALL / YIELD / ERROR (for an INVOCATION) /
CANCEL for one realm; built-in procedures the hub offers (``tantra.latest``
& co., added by whoever knows the hub); the calls in flight, and failing
them with ``wamp.error.canceled`` when their callee leaves, so no caller
hangs.

One callee per procedure, exact URIs only: the ``tantra.`` and ``wamp.``
namespaces are the hub's.

Does not own: sessions or transports (it talks to :class:`IWampPeer`), what
the built-in procedures do. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from autobahn.wamp import message
from twisted.logger import Logger

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


#: A built-in procedure: (args, kwargs) -> the single result value.
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


class Dealer:
    """Routed RPC for one realm."""

    def __init__(
        self,
        *,
        new_registration_id: Callable[[], int],
        new_request_id: Callable[[], int],
        stats: WampStats,
    ):
        self._new_registration_id = new_registration_id
        self._new_request_id = new_request_id
        self._stats = stats
        self._builtins: dict[str, Builtin] = {}
        self._by_procedure: dict[str, Registration] = {}
        self._by_id: dict[int, Registration] = {}
        self._pending: dict[int, PendingCall] = {}  # by invocation request id
        self._by_caller: dict[tuple[IWampPeer, int], PendingCall] = {}

    def add_builtin(self, procedure: str, function: Builtin) -> None:
        self._builtins[procedure] = function

    @property
    def procedures(self) -> list[str]:
        return [*self._builtins, *self._by_procedure]

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
        registration = Registration(self._new_registration_id(), msg.procedure, peer)
        self._by_procedure[msg.procedure] = registration
        self._by_id[registration.id] = registration
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
                call.caller.send(
                    message.Result(
                        call.caller_request, args=msg.args, kwargs=msg.kwargs, progress=True
                    )
                )
            return
        self._finish(call)
        call.caller.send(message.Result(call.caller_request, args=msg.args, kwargs=msg.kwargs))

    def invocation_error(self, peer: IWampPeer, msg: message.Error) -> None:
        call = self._pending.get(msg.request)
        if call is None or call.callee is not peer:
            return
        self._finish(call)
        call.caller.send(
            message.Error(
                message.Call.MESSAGE_TYPE,
                call.caller_request,
                msg.error,
                args=msg.args,
                kwargs=msg.kwargs,
            )
        )

    # -- caller side ------------------------------------------------------------

    def call(self, peer: IWampPeer, msg: message.Call) -> None:
        self._stats.calls += 1
        builtin = self._builtins.get(msg.procedure)
        if builtin is not None:
            self._call_builtin(peer, msg, builtin)
            return
        registration = self._by_procedure.get(msg.procedure)
        if registration is None:
            self._refuse(peer, msg, NO_SUCH_PROCEDURE, f"no procedure {msg.procedure}")
            return
        if msg.payload is not None:
            self._refuse(peer, msg, NOT_AUTHORIZED, "payload transparency is not supported")
            return
        callee = registration.callee
        receive_progress = bool(msg.receive_progress) and peer.has_feature(
            "caller", "progressive_call_results"
        )
        call = PendingCall(
            self._new_request_id(), peer, msg.request, callee, registration, receive_progress
        )
        self._pending[call.invocation] = call
        self._by_caller[(peer, msg.request)] = call
        disclose = disclose_requested(msg)
        callee.send(
            message.Invocation(
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
        )

    def cancel(self, peer: IWampPeer, msg: message.Cancel) -> None:
        call = self._by_caller.get((peer, msg.request))
        if call is None:
            return  # already answered
        mode = msg.mode or CANCEL_KILL
        callee_can_stop = call.callee.has_feature("callee", "call_canceling")
        if mode != CANCEL_SKIP and callee_can_stop:
            call.callee.send(message.Interrupt(call.invocation, mode=mode))
            if mode == CANCEL_KILL:
                return  # the callee answers with an ERROR, which goes to the caller
        self._finish(call)
        self._stats.errors_sent[CANCELED] += 1
        peer.send(error_reply(message.Call.MESSAGE_TYPE, msg.request, CANCELED, "call canceled"))

    # -- sessions leaving ------------------------------------------------------------

    def detach(self, peer: IWampPeer) -> None:
        """Forget a session's registrations; fail calls it was serving; drop calls it made."""
        for registration in [r for r in self._by_id.values() if r.callee is peer]:
            self._forget(registration)
        for call in list(self._pending.values()):
            if call.callee is peer:
                self._finish(call)
                self._stats.errors_sent[CANCELED] += 1
                call.caller.send(
                    error_reply(
                        message.Call.MESSAGE_TYPE,
                        call.caller_request,
                        CANCELED,
                        f"the callee of {call.registration.procedure} left",
                    )
                )
            elif call.caller is peer:
                self._finish(call)
                if call.callee.has_feature("callee", "call_canceling"):
                    call.callee.send(message.Interrupt(call.invocation, mode=CANCEL_KILL_NO_WAIT))

    # -- internals ------------------------------------------------------------

    def _forget(self, registration: Registration) -> None:
        del self._by_id[registration.id]
        del self._by_procedure[registration.procedure]

    def _finish(self, call: PendingCall) -> None:
        self._pending.pop(call.invocation, None)
        self._by_caller.pop((call.caller, call.caller_request), None)

    def _call_builtin(self, peer: IWampPeer, msg: message.Call, builtin: Builtin) -> None:
        try:
            result = builtin(list(msg.args or ()), dict(msg.kwargs or {}))
        except CallError as error:
            self._refuse(peer, msg, error.uri, error.text)
            return
        except Exception:
            _log.failure("built-in procedure {procedure} failed", procedure=msg.procedure)
            self._stats.errors_sent[RUNTIME_ERROR] += 1
            peer.send(
                error_reply(
                    msg.MESSAGE_TYPE,
                    msg.request,
                    RUNTIME_ERROR,
                    f"{msg.procedure} failed inside the hub",
                )
            )
            return
        peer.send(message.Result(msg.request, args=[result]))

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
