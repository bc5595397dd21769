"""Write-through for plain TCP transports: send at once when Twisted holds nothing.

Why: ``transport.write()`` buffers and sends on the reactor's next pass. For
each client and each write that costs two ``epoll_ctl`` calls (start and stop
writing) and one more pass of the loop; when the hub broadcasts one reading to
a thousand dashboards, that is most of its work. When a plain TCP transport
has nothing queued, sending now is exactly what the next pass would do, minus
that overhead. Whatever the kernel does not take right away is handed to
``write()`` as usual, so buffering, producer pause/resume and error handling
stay Twisted's.

Owns: the one place that reads Twisted's transport internals. Any transport
that is not a ``twisted.internet.tcp.Connection`` (TLS, test transports) just
gets ``write()``.
"""

from __future__ import annotations

from twisted.internet import tcp


def write_now(transport, data: bytes) -> None:
    """Like ``transport.write(data)``, but sends immediately when nothing is queued."""
    if (
        isinstance(transport, tcp.Connection)
        and not transport.dataBuffer
        and not transport._tempDataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int):  # otherwise the connection is lost: write() reports it
            if sent >= len(data):
                return
            data = data[sent:]
    transport.write(data)
