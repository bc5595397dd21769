"""Built-in procedures whose result is a Deferred (history reads): answered later, once, or not at all."""

from __future__ import annotations

import itertools

from autobahn.wamp import message
from twisted.internet import defer

from tantra.wamp.dealer import CallError, Dealer
from tantra.wamp.limits import WampLimits
from tantra.wamp.peer import WampStats


class Peer:
    session_id, authid, authrole = 1, "a", "r"

    def __init__(self):
        self.sent: list = []

    def send(self, msg, conflation_key=None):
        self.sent.append(msg)

    def has_feature(self, role, feature):
        return True


def dealer_with(results: list[defer.Deferred], limit: int = 1000, deferred: bool = False) -> Dealer:
    ids = itertools.count(1)
    dealer = Dealer(new_registration_id=lambda: 1, new_request_id=lambda: next(ids),
                    stats=WampStats(), limits=WampLimits(max_pending_calls=limit))  # fmt: skip

    def slow(args, kwargs):
        results.append(defer.Deferred())
        return results[-1]

    dealer.add_builtin("tantra.slow", slow, deferred=deferred)
    return dealer


def test_a_deferred_result_is_sent_when_it_fires_and_a_failure_as_its_error():
    results: list[defer.Deferred] = []
    dealer, peer = dealer_with(results), Peer()
    dealer.call(peer, message.Call(1, "tantra.slow"))
    dealer.call(peer, message.Call(2, "tantra.slow"))
    assert peer.sent == []
    results[1].errback(CallError("wamp.error.invalid_argument", "no"))
    results[0].callback({"readings": []})
    assert [(type(m).__name__, m.request) for m in peer.sent] == [("Error", 2), ("Result", 1)]
    assert peer.sent[0].error == "wamp.error.invalid_argument"
    assert peer.sent[1].args == [{"readings": []}]


def test_canceled_or_left_the_result_goes_nowhere_and_calls_in_flight_are_bounded():
    results: list[defer.Deferred] = []
    dealer, peer = dealer_with(results, limit=2), Peer()
    dealer.call(peer, message.Call(1, "tantra.slow"))
    dealer.call(peer, message.Call(2, "tantra.slow"))
    dealer.call(peer, message.Call(3, "tantra.slow"))
    assert peer.sent[-1].error == "tantra.error.limit_exceeded" and peer.sent[-1].request == 3
    dealer.cancel(peer, message.Cancel(1))
    assert peer.sent[-1].error == "wamp.error.canceled" and peer.sent[-1].request == 1
    results[0].callback("late")
    dealer.detach(peer)
    results[1].callback("too late")
    assert [m.request for m in peer.sent] == [3, 1], "nothing after the cancel or the detach"


def test_a_flood_over_the_bound_starts_no_work_when_the_builtin_is_declared_deferred():
    # tantra.history/aggregate start a store read: a refused call must not queue one.
    results: list[defer.Deferred] = []
    dealer, peer = dealer_with(results, limit=2, deferred=True), Peer()
    for request in range(1, 1001):
        dealer.call(peer, message.Call(request, "tantra.slow"))
    assert len(results) == 2, "only the calls within the bound reached the built-in"
    assert len(peer.sent) == 998
    assert {m.error for m in peer.sent} == {"tantra.error.limit_exceeded"}
    results[0].callback("one")
    dealer.call(peer, message.Call(2000, "tantra.slow"))
    assert len(results) == 3, "an answered call frees its place"


def test_the_bridge_declares_its_store_reads_deferred():
    from tantra.wamp.bridge import AGGREGATE, HISTORY, HubBridge

    class Recording:
        def __init__(self):
            self.added: dict[str, bool] = {}

        def add_builtin(self, procedure, function, *, deferred=False):
            self.added[procedure] = deferred

    class Nothing:
        def add_namespace(self, namespace):
            pass

        def subscribe(self, sink):
            pass

    dealer = Recording()
    HubBridge(Nothing(), Nothing(), dealer, WampStats()).start()  # type: ignore[arg-type]
    assert {name for name, deferred in dealer.added.items() if deferred} == {HISTORY, AGGREGATE}


def test_built_in_and_routed_calls_share_one_bound_and_one_set_of_request_ids():
    results: list[defer.Deferred] = []
    dealer, caller, callee = dealer_with(results, limit=3, deferred=True), Peer(), Peer()
    dealer.register(callee, message.Register(1, "com.slow"))
    dealer.call(caller, message.Call(1, "tantra.slow"))
    dealer.call(caller, message.Call(2, "tantra.slow"))
    dealer.call(caller, message.Call(1, "com.slow"))  # id 1 is still running as a built-in
    assert caller.sent[-1].error == "wamp.error.invalid_argument"
    dealer.call(caller, message.Call(3, "com.slow"))  # the third in flight: within the bound
    assert [type(m).__name__ for m in callee.sent[-1:]] == ["Invocation"]
    dealer.call(caller, message.Call(4, "com.slow"))  # a fourth routed call: over it
    dealer.call(caller, message.Call(5, "tantra.slow"))  # and a fourth built-in one
    assert [(m.request, m.error) for m in caller.sent[-2:]] == [
        (4, "tantra.error.limit_exceeded"),
        (5, "tantra.error.limit_exceeded"),
    ]
    assert len(results) == 2 and dealer.pending_calls == 1
    results[0].callback("done")  # a built-in answer frees a place for a routed call
    dealer.call(caller, message.Call(6, "com.slow"))
    assert caller.sent[-1].request == 1, "no refusal for call 6, only call 1's result"
    assert dealer.pending_calls == 2
