"""The top service: parts register once, and stop in order (listeners, flush, goodbye, rest)."""

from __future__ import annotations

import pytest
from twisted.application import service
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from tantra.hub import Hub
from tantra.lifecycle import SHUTDOWN_GRACE_SECONDS, IGoodbye, TantraService
from tests.support.fakes import RecordingSink


class FakePort:
    def __init__(self, log):
        self.log = log

    def getHost(self):
        return type("Host", (), {"host": "127.0.0.1", "port": 1})()

    def stopListening(self):
        self.log.append("listener stopped")


@implementer(IGoodbye)
class Component:
    def __init__(self, name, log, hub_sink=None):
        self.name, self.log, self.hub_sink = name, log, hub_sink
        self.gone: defer.Deferred = defer.Deferred()

    def go_away(self):
        delivered = len(self.hub_sink.readings) if self.hub_sink else None
        self.log.append(f"{self.name} goodbye (hub delivered {delivered})")
        return self.gone


class Store(service.Service):
    def __init__(self, log):
        self.log = log

    def startService(self):
        super().startService()
        self.log.append("store started")

    def stopService(self):
        super().stopService()
        self.log.append("store stopped")


def finished(d: defer.Deferred) -> list:
    """A list that gets one item when ``d`` has fired all the way through."""
    done: list = []
    d.addCallback(done.append)
    return done


def make_top():
    reactor = MemoryReactorClock()
    hub = Hub(reactor)
    return TantraService(hub, reactor), reactor, hub


def test_stop_order_is_listeners_flush_goodbyes_then_other_services():
    top, _, hub = make_top()
    log: list[str] = []
    sink = RecordingSink()
    hub.subscribe(sink)
    first, second = Component("dashboards", log, sink), Component("wamp", log)
    top.add_component("dashboards", first)
    top.add_component("wamp", second)
    Store(log).setServiceParent(top)
    top.listen("tcp", "tcp:1", lambda: FakePort(log))
    top.startService()
    log.clear()
    hub.ingest(b'{"sensor":"a","value":1}', default_device="d")  # still pending at stop
    stopped = finished(top.stopService())
    assert log == [
        "listener stopped",
        "dashboards goodbye (hub delivered 1)",
        "wamp goodbye (hub delivered None)",
    ]
    assert not stopped, "the stop waits for every client to go"
    first.gone.callback(None)
    second.gone.callback(None)
    assert log[-1] == "store stopped" and stopped


def test_other_children_start_before_any_listener_whatever_the_order_added():
    top, _, _ = make_top()
    log: list[str] = []
    top.listen("tcp", "tcp:1", lambda: log.append("listening") or FakePort(log))
    Store(log).setServiceParent(top)
    top.startService()
    assert log == ["store started", "listening"]


def test_clients_that_do_not_go_are_given_up_after_the_grace_period():
    top, reactor, _ = make_top()
    log: list[str] = []
    top.add_component("stuck", Component("stuck", log))
    Store(log).setServiceParent(top)
    top.startService()
    log.clear()
    stopped = finished(top.stopService())
    reactor.advance(SHUTDOWN_GRACE_SECONDS - 0.1)
    assert not stopped and log == ["stuck goodbye (hub delivered None)"]
    reactor.advance(0.1)
    assert stopped and log[-1] == "store stopped"


def test_a_component_is_registered_once_and_must_say_goodbye():
    top, _, _ = make_top()
    top.add_component("one", Component("one", []))
    with pytest.raises(ValueError, match="exists already"):
        top.add_component("one", Component("one", []))
    with pytest.raises(TypeError, match="IGoodbye"):
        top.add_component("two", object())
    with pytest.raises(RuntimeError, match="HTTP part"):
        top.mount(b"api", object())
