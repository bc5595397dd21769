"""Incoming WebSocket messages that arrive whole, handed over without Autobahn's per-frame path.

Why: a device sends one reading per WebSocket message, many per TCP read.
For each, Autobahn's receive path (``processData``) built a ``FrameHeader``,
an NVX XOR masker and a UTF-8 validator state, called five per-frame and
per-message hooks, re-sliced the receive buffer twice and fired a txaio
future for message observers the hub never registers: about two thirds of
the hub's time per WebSocket reading (``docs/performance.md``).

What: :class:`WholeFrameReceiver` overrides ``processData``, Autobahn's
documented entry to incoming frame processing, and takes the *common,
unambiguous* case itself: a buffered, complete, unfragmented, masked text or
binary frame (FIN set, no RSV bits, opcode 1 or 2, minimal 7- or 16-bit
length) within the frame and message limits, while the connection is open,
outside a fragmented message, with no extension negotiated and no frame
logging or timing. It unmasks the payload (one integer XOR), validates a
text payload as UTF-8 (Python's strict decoder, which rejects what RFC 3629
rejects, as Autobahn's validator does) and delivers it to ``onMessage``.

Everything else -- control frames (ping, pong, close), fragments and
continuations, a frame not yet complete, 64-bit lengths, non-minimal
lengths, unmasked or reserved frames, a limit exceeded, invalid UTF-8 --
is left to Autobahn's own ``processData`` untouched, so Autobahn still
decides every error and its close code (1002, 1007, 1009) and the closing
handshake. The fast path only ever accepts frames Autobahn would accept and
deliver identically (``tests/test_wholeframes.py`` fuzzes both against each
other).

A protocol that defines ``_onMessages(payloads)`` gets the whole messages of
one pass as one list (text and binary alike, in order) instead of one
``_onMessage`` call each, before anything is left to Autobahn: a dashboard
ingests them with one hub call (issue 14). It must itself stop at a message
that closes the connection (the per-message path stops delivering there).

It also takes Twisted's ``dataReceived`` straight to Autobahn's
``_dataReceived``: Autobahn's own ``dataReceived`` only adds a debug log line,
but builds that line's arguments (``hltype``/``hlval``, about 3 µs) on every
read even with debug logging off, which for a device sending one reading per
read was a third of the hub's cost per reading.

Does not own: what a message means (``onMessage`` of the protocol), outgoing
frames.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol

_OPEN = WebSocketProtocol.STATE_OPEN
_TEXT_FINAL = 0x81  # FIN, no RSV, opcode 1
_BINARY_FINAL = 0x82  # FIN, no RSV, opcode 2


#: ``_REPEAT[n]`` has a 1 in the lowest bit of each of ``n`` 32-bit words: the key as an
#: integer times it is the key repeated ``n`` times (no carries), without building those bytes.
_REPEAT = tuple(sum(1 << (32 * word) for word in range(words)) for words in range(65))
_from_bytes = int.from_bytes


def unmask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 5.3: XOR with the 4-byte key repeated; one big-integer XOR, no per-byte loop."""
    size = len(payload)
    words = (size + 3) >> 2
    if words < 65:  # readings: the key repeated by one multiplication (a quarter cheaper)
        key = _from_bytes(mask, "little") * _REPEAT[words]
        return (_from_bytes(payload, "little") ^ key).to_bytes(words << 2, "little")[:size]
    key_bytes = (mask * (words + 1))[:size]
    return (_from_bytes(payload, "little") ^ _from_bytes(key_bytes, "little")).to_bytes(
        size, "little"
    )


class WholeFrameReceiver:
    """Mixin (before Autobahn's protocol in the MRO): whole single-frame messages, fast."""

    # Autobahn's attributes used here (set by its protocol and factory options).
    data: bytes
    state: int
    current_frame: Any
    inside_message: bool
    failedByMe: bool
    _perMessageCompress: Any
    logFrames: bool
    trackedTimings: Any
    applyMask: bool
    utf8validateIncoming: bool
    maxFramePayloadSize: int
    maxMessagePayloadSize: int
    autoPingTimeoutCall: Any
    autoPingRestartOnAnyTraffic: bool
    #: Optional: take the whole messages of one pass as a list (see the module docstring).
    _onMessages: Any = None

    _dataReceived: Any

    def dataReceived(self, data: bytes) -> None:
        """Twisted's entry for received bytes: straight to Autobahn's framework-neutral one."""
        self._dataReceived(data)

    def processData(self) -> bool:
        if (
            self.current_frame is not None
            or self.inside_message
            or self.state != _OPEN
            or self.failedByMe
            or self._perMessageCompress is not None
            or self.logFrames
            or self.trackedTimings
            or not self.applyMask
        ):
            return super().processData()  # type: ignore[misc]
        data = self.data
        end = len(data)
        pos = 0
        limit = _smallest_limit(self.maxFramePayloadSize, self.maxMessagePayloadSize)
        validate = self.utf8validateIncoming
        deliver = self._onMessage  # type: ignore[attr-defined]
        batch: list[bytes] | None = [] if self._onMessages is not None else None
        while end - pos >= 6:
            first = data[pos]
            if first != _TEXT_FINAL and first != _BINARY_FINAL:
                break
            second = data[pos + 1]
            if not second & 0x80:  # unmasked: Autobahn refuses it (1002)
                break
            size = second & 0x7F
            if size < 126:
                start = pos + 6
            elif size == 126:
                if end - pos < 8:
                    break
                size = (data[pos + 2] << 8) | data[pos + 3]
                if size < 126:  # not the minimal length encoding: Autobahn refuses it
                    break
                start = pos + 8
            else:
                break
            stop = start + size
            if stop > end or size > limit:
                break
            payload = unmask(data[start:stop], data[start - 4 : start]) if size else b""
            text = first == _TEXT_FINAL
            if text and validate and not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # Autobahn fails the connection with 1007
            pos = stop
            if batch is not None:
                batch.append(payload)
                continue
            deliver(payload, not text)
            if self.state != _OPEN or self.data is not data:
                break  # the message closed the connection (or someone else consumed input)
        if batch:
            self._onMessages(batch)
        if pos == 0:
            return super().processData()  # type: ignore[misc]
        if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
            self._cancelAutoPingTimeoutCall()  # type: ignore[attr-defined]  # as Autobahn does
        if self.data is data:
            self.data = data[pos:]
        return len(self.data) > 0


def _smallest_limit(*limits: int) -> int:
    """The tightest positive limit (0 means "no limit" to Autobahn)."""
    positive = [limit for limit in limits if limit > 0]
    return min(positive) if positive else 1 << 62
