"""Write-through on real loopback sockets: immediate when idle, buffered otherwise."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.testing import StringTransport

from tantra.transports.sendnow import writer_for
from tests.support.loopback import close, connections, until

pytestmark = pytest.mark.integration  # real loopback sockets


def test_other_transports_just_get_write():
    transport = StringTransport()
    writer_for(transport)(b"abc")
    assert transport.value() == b"abc"


@pytest_twisted.inlineCallbacks
def test_idle_tcp_transport_sends_at_once_and_busy_one_queues_in_order():
    (server_side,), (client,), port = yield connections(1)
    try:
        transport = server_side.transport
        write = writer_for(transport)
        write(b"first;")
        assert not transport.dataBuffer and not transport._tempDataBuffer, "sent, not queued"
        transport.write(b"queued;")  # Twisted now holds data for the next pass
        write(b"after;")
        assert transport._tempDataBuffer, "with data queued, write-through must not jump ahead"
        expected = b"first;queued;after;"
        yield until(lambda: len(client.received) >= len(expected), 5)
        assert bytes(client.received) == expected
    finally:
        yield close([client], port)


@pytest_twisted.inlineCallbacks
def test_what_the_kernel_does_not_take_is_queued_and_arrives():
    (server_side,), (client,), port = yield connections(1)
    try:
        big = bytes(range(256)) * 80_000  # 20 MB: more than any socket buffer
        writer_for(server_side.transport)(big)
        assert server_side.transport._tempDataBuffer, "the rest waits in Twisted's buffer"
        yield until(lambda: len(client.received) >= len(big), 20)
        assert bytes(client.received) == big
    finally:
        yield close([client], port)


@pytest_twisted.inlineCallbacks
def test_a_queued_write_sequence_is_not_overtaken():
    """``writeSequence`` queues as ``write`` does: the write-through waits behind it."""
    (server_side,), (client,), port = yield connections(1)
    try:
        transport = server_side.transport
        transport.writeSequence([b"one;", b"", b"two;"])
        writer_for(transport)(b"three;")
        assert transport._tempDataLen == len(b"one;two;three;"), "all of it waits for Twisted"
        expected = b"one;two;three;"
        yield until(lambda: len(client.received) >= len(expected), 5)
        assert bytes(client.received) == expected
    finally:
        yield close([client], port)
