"""Stop reading from a client that does not read its replies.

Why: every payload a client sends may earn replies (acks, one error per bad
reading). A client that keeps sending and never reads makes those replies pile
up in its transport's write buffer without limit: measured before this module,
1M readings with ``seq`` over one TCP connection grew the hub by 3.2 GB. The
cure is TCP's own: when a connection's unwritten bytes pass its bound
(``--reply-buffer``; Twisted's producer signal says so), the hub stops reading
from it, so the client's sends block in its own kernel, and reads again once
its replies drained. The bound then holds up to the replies of one read.

Owns: two push producers that turn the transport's buffer signals into
``transport.pauseProducing()`` (stop reading) and ``resumeProducing()``:
:class:`ReplyGate` for raw TCP (every write is a reply; stuck for
``stall_timeout`` seconds, the connection is dropped and counted ``stalled``)
and :class:`ReadGate` for WebSocket (writes are broadcasts too: reading stops
only once the client sends while its buffer is full; the outbox's own stall
deadline closes it).

Does not own: the transports or the outboxes; closing a connection (the
``on_give_up`` callback does).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from tantra.outbox import BoundedSender


class ReplyGate(BoundedSender):
    """A raw TCP device's producer: full write buffer means stop reading it.

    ``protocol`` gets ``pauseProducing`` (stop reading) and, once the replies
    drained, ``resumeProducing`` (handle what it held back, read again).

    Counted and given up like a stalled dashboard (``clients_dropped["stalled"]``)
    when its replies stay unread for ``stall_timeout`` seconds.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol, **deadline: Any):
        """``deadline``: ``clock``, ``stall_timeout``, ``on_give_up``, ``counters``
        (see :class:`~tantra.outbox.BoundedSender`)."""
        super().__init__(**deadline)
        self._protocol = protocol

    def pauseProducing(self) -> None:
        if self._paused or self._closed:
            return
        super().pauseProducing()
        self._protocol.pauseProducing()

    def _release_held(self) -> None:
        self._protocol.resumeProducing()

    def _hold_nothing_more(self) -> None:
        pass


@implementer(IPushProducer)
class ReadGate:
    """A WebSocket's producer: passes the buffer signals to its outbox, gates reading.

    While the buffer is full the outbox conflates broadcasts; a client that
    also sends in that state stops being read (its replies would otherwise
    pile up) until the buffer drains. A client that only lags behind
    broadcasts is still read, so its pongs and close frames get through.

    A second, independent reason stops reading too: too many payloads whose
    replies wait behind a pending commit (``OrderedReplies`` ``on_full``);
    refusals and payloads without seq would otherwise queue without bound
    while the store is slow. Reading resumes only when neither holds.
    """

    __slots__ = ("_reading_paused", "_replies_full", "_sender", "_transport")

    def __init__(self, transport, sender: BoundedSender):
        self._transport = transport
        self._sender = sender
        self._reading_paused = False
        self._replies_full = False

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused or self._replies_full

    def replies_written(self) -> None:
        if self._sender.paused and not self._reading_paused:
            self._reading_paused = True
            if not self._replies_full:
                self._transport.pauseProducing()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if not self._replies_full:
                self._transport.resumeProducing()

    def replies_full(self) -> None:
        """Too many payloads wait for a commit: stop reading until :meth:`replies_room`."""
        if not self._replies_full:
            self._replies_full = True
            if not self._reading_paused:
                self._transport.pauseProducing()

    def replies_room(self) -> None:
        if self._replies_full:
            self._replies_full = False
            if not self._reading_paused:
                self._transport.resumeProducing()

    def pauseProducing(self) -> None:
        self._sender.pauseProducing()

    def resumeProducing(self) -> None:
        self.resume_reading()
        self._sender.resumeProducing()

    def stopProducing(self) -> None:
        self._sender.stopProducing()
