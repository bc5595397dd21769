"""Signed UDP datagrams: ``payload`` + ``\\n`` + lowercase hex HMAC-SHA256(payload, token).

Owns the framing and the check, nothing else. Pure (no sockets, no clock).

The signature is the last line: exactly 64 lowercase hex digits after the
last ``\\n``; everything before that newline is the payload, byte for byte
(a payload may itself hold newlines, a trailing ``\\r\\n`` is not stripped:
the device signs exactly what it sends before the final newline). Anything
else is unsigned and is dropped by the caller without an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

SIGNATURE_HEX = 64
_HEX = re.compile(rb"[0-9a-f]{64}")


def sign(payload: bytes, key: bytes | str) -> bytes:
    """The datagram a device sends: payload, newline, signature."""
    if isinstance(key, str):
        key = key.encode()
    return payload + b"\n" + hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def split(datagram: bytes) -> tuple[bytes, bytes] | None:
    """``(payload, hex signature)`` of a framed datagram, or None when it is not one."""
    cut = datagram.rfind(b"\n")
    if cut <= 0 or len(datagram) - cut - 1 != SIGNATURE_HEX:
        return None
    signature = datagram[cut + 1 :]
    if _HEX.fullmatch(signature) is None:
        return None
    return datagram[:cut], signature


def verify(payload: bytes, signature: bytes, keys: Iterable[bytes]) -> int | None:
    """Index of the key that signed ``payload``, or None; constant-time per key.

    Every key is tried (no early exit), so the time depends on how many keys
    the device has, never on how much of a signature was right.
    """
    found = None
    for index, key in enumerate(keys):
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, signature) and found is None:
            found = index
    return found
