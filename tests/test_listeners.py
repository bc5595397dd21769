"""What the built listeners get: listen backlog, UDP read size (settings → services)."""

from __future__ import annotations

import attrs
import pytest

from tantra.settings import resolve
from tantra.tap import build_service
from tantra.transports.endpoints import with_backlog
from tantra.transports.raw import MAX_DATAGRAM
from tests.test_settings import MemoryReactorWithUDP


def started(settings):
    reactor = MemoryReactorWithUDP()
    top = build_service(attrs.evolve(settings, store=None), reactor)
    top.startService()
    return reactor, top


def test_tcp_listeners_get_a_backlog_for_mass_reconnects():
    reactor, top = started(resolve({"http": ["tcp:8080", "tcp:8081:backlog=7"]}, {}))
    # (MemoryReactorWithUDP records UDP ports as TCP ones without a factory.)
    backlogs = {port: backlog for port, factory, backlog, _ in reactor.tcpServers if factory}
    assert backlogs == {8080: 4096, 8081: 7, 9000: 4096}
    top.stopService()


def test_backlog_is_a_setting():
    reactor, top = started(resolve({"backlog": "10000"}, {}))
    assert {backlog for _, factory, backlog, _ in reactor.tcpServers if factory} == {10000}
    top.stopService()


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:80", "tcp:80:backlog=9"),
        ("tcp6:80:interface=\\:\\:1", "tcp6:80:interface=\\:\\:1:backlog=9"),
        ("ssl:443:privateKey=k.pem", "ssl:443:privateKey=k.pem:backlog=9"),
        ("unix:/run/t.sock", "unix:/run/t.sock:backlog=9"),
        ("tcp:80:backlog=3", "tcp:80:backlog=3"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_with_backlog(description, expected):
    assert with_backlog(description, 9) == expected


def test_udp_port_reads_whole_datagrams():
    reactor, top = started(resolve({}, {}))
    ((_, _, _, max_packet_size),) = reactor.udpServers
    assert max_packet_size > MAX_DATAGRAM  # Twisted's default 8192 truncated silently
    top.stopService()
