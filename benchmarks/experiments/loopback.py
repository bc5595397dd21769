"""N connected loopback socket pairs, and draining them: the rig of the in-process send loops.

Shared by ``mb2.py`` and ``mb_uring.py`` so their per-delivery figures are
measured on the same sockets (non-blocking, ``TCP_NODELAY`` on the sending
side) and compared fairly.
"""

from __future__ import annotations

import socket


def socket_pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``n`` (receiving client, sending server) pairs on 127.0.0.1, both non-blocking."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    clients, servers = [], []
    for _ in range(n):
        client = socket.create_connection(listener.getsockname())
        client.setblocking(False)
        server, _addr = listener.accept()
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.setblocking(False)
        clients.append(client)
        servers.append(server)
    listener.close()
    return clients, servers


def drain(clients: list[socket.socket]) -> None:
    """Read whatever arrived on every client, without blocking (outside the timing)."""
    for client in clients:
        try:
            while client.recv(65536):
                pass
        except BlockingIOError:
            pass
