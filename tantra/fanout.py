"""One batch to every sink of a group: the hub's per-client loop, in C when it can be.

Why: broadcasting one reading to 1000 dashboards is one ``send`` per client,
and the Python work around each send (``Outbox.deliver``, the write-through
checks, ``socket.send``'s call) cost as much again as the kernel's part
(issue 14, item 3). The optional extension ``tantra._fanout`` runs that loop
in C for the outboxes that can send at once and calls back into Python for
everything else, so behaviour is the pure-Python loop's:

- an outbox of the registered type (:func:`register`; ``tantra.outbox``
  registers :class:`~tantra.outbox.Outbox`) that is direct (open, not paused,
  no snapshot under way) and whose ``_line`` is a plain TCP transport holding
  nothing gets the batch's bytes with one non-blocking ``send``; what the
  kernel did not take whole goes to the registered ``hand_back``
  (:func:`tantra.transports.sendnow.hand_back`, the write-through's own rule);
- every other sink gets ``sink.deliver(batch)``, and a sink that raises costs
  only itself (logged, counted as failed).

Without the extension (not built, or ``TANTRA_NO_EXTENSION=1``), or before any
type is registered, :func:`deliver_each` is :func:`deliver_each_python`.

Owns: choosing between the two loops and the failure rule. Does not own what
an outbox does with a batch (``tantra.outbox``) or how a remainder is written
(``tantra.transports.sendnow``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger

#: The namespace the hub logged a failing sink under before this loop moved here.
_log = Logger(namespace="tantra.hub")

#: Set it (to anything but empty or ``0``) to run the pure-Python loop where the extension is built.
NO_EXTENSION = "TANTRA_NO_EXTENSION"


def _load_extension() -> Any:
    if os.environ.get(NO_EXTENSION, "") not in ("", "0"):
        return None
    try:
        from tantra import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fanout


#: The compiled loop, or None where it is not built or is switched off.
extension: Any = _load_extension()


def deliver_one(sink: Any, batch: Any) -> int:
    """``sink.deliver(batch)``; 1 if it raised (logged), else 0."""
    try:
        sink.deliver(batch)
    except Exception:
        _log.failure("sink {sink!r} failed to take a batch", sink=sink)
        return 1
    return 0


def deliver_each_python(sinks: Sequence[Any], batch: Any) -> int:
    """Every sink gets ``batch``; returns how many failed (each logged)."""
    failed = 0
    for sink in sinks:
        try:
            sink.deliver(batch)
        except Exception:
            failed += 1
            _log.failure("sink {sink!r} failed to take a batch", sink=sink)
    return failed


#: What :class:`tantra.hub.Hub` calls: ``deliver_each(sinks, batch) -> failed``.
deliver_each: Callable[[list[Any], Any], int] = deliver_each_python


def register(fast_type: type, hand_back: Callable[[Any, bytes, int], None]) -> None:
    """Let the compiled loop send for instances of exactly ``fast_type``.

    ``fast_type`` has ``_direct`` (True when a batch may be written at once),
    ``_line`` (the plain ``tcp.Connection`` written to, or None), ``_fd``
    (that connection's descriptor, the one the loop sends on) and
    ``_encode``; its ``deliver`` does in Python what the loop does in C.
    ``hand_back(sink, data, result)`` writes what one send did not take
    (``result`` is the bytes sent, or ``-errno``); if it raises, that sink failed.
    """
    global deliver_each
    if extension is None:
        return
    # Bound once: the per-turn cost is one call into C, whatever the group's size.
    deliver_each = functools.partial(extension.deliver, fast_type, deliver_one, _guarded(hand_back))


def _guarded(hand_back: Callable[[Any, bytes, int], None]) -> Callable[[Any, bytes, int], int]:
    """``hand_back`` with the failure rule: an exception costs only that sink."""

    def guarded(sink: Any, data: bytes, result: int) -> int:
        try:
            hand_back(sink, data, result)
        except Exception:
            _log.failure("sink {sink!r} failed to take a batch", sink=sink)
            return 1
        return 0

    return guarded
