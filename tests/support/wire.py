"""In-memory transports that behave like Twisted's on the points the hub relies on.

``BufferedTransport`` keeps what was written until the test "drains" it, and
signals its producer the way ``twisted.internet.abstract.FileDescriptor``
does: ``pauseProducing`` once more than ``bufferSize`` bytes are unwritten,
``resumeProducing`` once they are all gone. ``reading`` is False while the
protocol asked it to stop reading (``pauseProducing`` on the transport).
Plus the bytes of a WebSocket client: handshake, masked frames, and a parser
for the server's frames.
"""

from __future__ import annotations

import base64
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport


class BufferedTransport(StringTransport):
    bufferSize = 65536

    def __init__(self, peer: str = "10.0.0.7", port: int = 5555):
        super().__init__(peerAddress=IPv4Address("TCP", peer, port))
        self.reading = True
        self.aborted = False
        self.write_closed = False
        self._producer_paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if (
            self.producer is not None
            and self.streaming
            and not self._producer_paused
            and len(self.io.getvalue()) > self.bufferSize
        ):
            self._producer_paused = True
            self.producer.pauseProducing()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    @property
    def unwritten(self) -> int:
        return len(self.io.getvalue())

    def drain(self) -> bytes:
        """The peer read everything: hand it over and tell the producer."""
        data = self.value()
        self.clear()
        if self._producer_paused and self.producer is not None:
            self._producer_paused = False
            self.producer.resumeProducing()
        return data

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def handshake(path: str = "/") -> bytes:
    key = base64.b64encode(b"0123456789abcdef").decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """A masked client frame (mask key 0, so the payload is sent as is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\0\0\0\0" + payload


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame in ``data`` (after any HTTP head)."""
    if data.startswith(b"HTTP/"):
        data = data.split(b"\r\n\r\n", 1)[1]
    frames = []
    while data:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[offset : offset + size]))
        data = data[offset + size :]
    return frames


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]
