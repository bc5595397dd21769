"""What a sender is told about its payload: acks and errors, as wire messages.

Owns: the reply objects of SPEC "The reading" (``{"ack": 17}``,
``{"ack": [17, 18]}``, ``{"error": ..., "detail": ..., "index": ...}``), their
order (the ack first, then errors in input order), which replies an ingest
outcome owes (:func:`for_outcome`), their encoding, and how they shrink to fit
a byte budget (UDP must never answer with more bytes than it was sent). Pure:
no transports, and the hub never builds replies itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from tantra.model import Rejection

if TYPE_CHECKING:
    from tantra.hub import IngestOutcome


def for_outcome(outcome: IngestOutcome) -> list[dict[str, Any]]:
    """The replies a transport owes its sender for one ingested payload (often none)."""
    if not outcome.acks and not outcome.errors:
        return []  # the common case for devices that do not ask for acks
    return reply_messages(outcome.acks, outcome.errors, is_batch=outcome.is_batch)


def reply_messages(
    acks: Sequence[int], errors: Sequence[Rejection], *, is_batch: bool
) -> list[dict[str, Any]]:
    """The replies owed for one payload, most important (the ack) first."""
    messages: list[dict[str, Any]] = []
    if acks:
        messages.append({"ack": list(acks) if is_batch else acks[0]})
    messages.extend(error.to_dict() for error in errors)
    return messages


def encode(message: dict[str, Any]) -> bytes:
    """One reply as compact UTF-8 JSON, without a line terminator."""
    return orjson.dumps(message)


def _shrunk(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Smaller forms of an error reply, most informative first."""
    if "error" not in message:
        return [message]
    bare = {"error": message["error"]}
    if "index" in message:
        return [message, {**bare, "index": message["index"]}, bare]
    return [message, bare]


def fit_to_budget(messages: Sequence[dict[str, Any]], budget: int) -> tuple[list[bytes], int]:
    """Encode ``messages`` in order within ``budget`` bytes in total.

    An error that does not fit loses its detail (then its index) before it is
    dropped. Returns the encoded replies and how many were dropped.
    """
    sent: list[bytes] = []
    dropped = 0
    for message in messages:
        for form in _shrunk(message):
            data = encode(form)
            if len(data) <= budget:
                sent.append(data)
                budget -= len(data)
                break
        else:
            dropped += 1
    return sent, dropped
