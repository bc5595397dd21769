"""Write-through for plain TCP transports: send at once when Twisted holds nothing.

Why: ``transport.write()`` buffers and sends on the reactor's next pass. For
each client and each write that costs two ``epoll_ctl`` calls (start and stop
writing) and one more pass of the loop; when the hub broadcasts one reading to
a thousand dashboards, that is most of its work. When a plain TCP transport
has nothing queued, sending now is exactly what the next pass would do, minus
that overhead. Whatever the kernel does not take right away is handed to
``write()`` as usual, so buffering, producer pause/resume and error handling
stay Twisted's.

Owns: the one place in Python that reads Twisted's transport internals (the
broadcast loop of ``tantra._fanout`` reads the same three attributes in C, see
``tantra.fanout``). Any transport that is not a ``twisted.internet.tcp.Connection``
(TLS, test transports) just gets ``write()``.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import tcp


def line_for(transport) -> tcp.Connection | None:
    """``transport`` if :func:`writer_for` writes through to it (a plain TCP connection), else None.

    What an outbox hands the compiled broadcast loop (``tantra.fanout``),
    which then does for it what ``write_through`` does.
    """
    return transport if isinstance(transport, tcp.Connection) else None


def hand_back(transport: tcp.Connection, data: bytes, result: int) -> None:
    """Give ``write()`` what one non-blocking send of ``data`` did not take.

    ``result`` is the bytes sent, or ``-errno`` when the send failed: part of
    the data left goes after the part sent; after EAGAIN, EINTR or any other
    error all of it goes, and on a broken connection Twisted's next write
    attempt reports the loss as usual.
    """
    transport.write(data[result:] if result > 0 else data)


def writer_for(transport) -> Callable[[bytes], None]:
    """A ``write(data)`` for ``transport`` that sends at once when nothing is queued.

    Built once per connection, so the per-write cost is one Python call and
    the ``send()`` itself: on the broadcast path that runs once per client per
    hub turn, and every avoided call shows in the hub's CPU per delivery.
    """
    write = transport.write
    if not isinstance(transport, tcp.Connection):
        return write
    send = transport.socket.send

    def write_through(data: bytes) -> None:
        # Only what Twisted holds decides: data behind it must wait its turn.
        # The other states need no test of their own here (each costs a
        # look-up per client per turn): after ``connectionLost`` the socket
        # is closed, so ``send`` fails and ``write`` drops the data as Twisted
        # does; after a half-close it fails with EPIPE the same way; while
        # ``disconnecting`` with nothing held, Twisted's ``write`` would still
        # send the data before closing, so sending it now is the same.
        # ``_tempDataLen`` is Twisted's own "anything appended" test (and a
        # shared zero, where the list is one more object per client to read).
        if transport.dataBuffer or transport._tempDataLen or transport._writeDisconnected:
            write(data)
            return
        try:
            sent = send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            write(data)  # Twisted's next write attempt reports the broken connection
            return
        if sent != len(data):
            write(data[sent:])

    return write_through
