"""Gap-free resume: a dashboard that connects with ``?since=ID`` gets every reading after it once.

Owns: the switch-over from the history to live readings for one subscriber,
and the rule that such a subscriber never loses a reading silently.

How the switch-over stays exact (all of it in the reactor thread):

1. In one turn, the subscriber joins the hub (no snapshot) and takes the
   readings the store was handed but has not committed yet
   (``Store.uncommitted``, filtered): those are *held* as if live. ``upto`` is
   the id of the first uncommitted reading, else the hub's last id + 1. Every
   id below ``upto`` is then committed (or was shed and never will be); every
   reading numbered from then on reaches the subscriber live.
2. The history is read page by page, ``since < id < upto`` in id order (on
   the store's read threads, only while the client's socket takes it), and
   written; live readings arriving meanwhile are held, in order.
3. Then what is held is written, minus any id not above the last one
   replayed (none, by the above; kept as a guard), and the subscriber is live.

Nothing is conflated for such a subscriber, before or after the switch: what
it cannot take yet is held, up to ``limit`` readings beyond what it started
with. Past that, or when the history cannot be read, it is given up with a
reason (the transport closes with a code that tells the client to resume
again from the last id it got).

Does not own: the query (the caller's ``fetch``), framing (``encode`` for
live readings, ``encode_stored`` for history rows) or closing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tantra.counters import Counters
from tantra.hub import Batch, Filter, Hub, ISink, Subscription
from tantra.model import Reading
from tantra.outbox import BoundedSender
from tantra.store.query import SeriesFilter, StoredReading

_log = Logger()

#: Live readings held for one resuming client (beyond the uncommitted it started with).
RESUME_BUFFER = 50_000
#: History rows read per query while replaying.
REPLAY_PAGE = 2000
#: ``clients_dropped`` reasons (and what the transport closes with).
OVERFLOW = "resume_overflow"
HISTORY_FAILED = "history_unavailable"

Fetch = Callable[[int, int, int], defer.Deferred]


class BadSince(ValueError):
    """A ``since`` the hub cannot resume from; ``str()`` says why (HTTP 400)."""


def parse_since(values: Sequence[str], hub: Hub) -> int:
    """The cursor of ``?since=ID``; it needs a store and may not be newer than the hub's last id."""
    if hub.history is None or hub.last_id is None:
        raise BadSince("since needs a hub that keeps history (--store); this one keeps none")
    if len(values) != 1:
        raise BadSince("since given more than once")
    text = values[0]
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) >= 2**63:
        raise BadSince(f"since must be a reading id (a whole number from 0), not {text[:40]!r}")
    since = int(text)
    if since > hub.last_id:
        raise BadSince(
            f"since={since} is newer than this hub's newest id ({hub.last_id});"
            " connect without since to start afresh"
        )
    return since


def series_filter(filter_: Filter) -> SeriesFilter:
    return SeriesFilter(tuple(sorted(filter_.devices or ())), tuple(sorted(filter_.sensors or ())))


@implementer(ISink)
class ResumeOutbox(BoundedSender):
    """One resuming subscriber: history first, then live, each reading once, nothing conflated."""

    def __init__(
        self,
        *,
        write: Callable[[bytes], None],
        encode: Callable[[Sequence[Reading]], bytes],
        encode_stored: Callable[[Sequence[StoredReading]], bytes],
        fetch: Fetch,
        clock: IReactorTime,
        stall_timeout: float,
        on_give_up: Callable[[str], None],
        counters: Counters,
        limit: int = RESUME_BUFFER,
        page: int = REPLAY_PAGE,
    ):
        super().__init__(
            clock=clock, stall_timeout=stall_timeout, on_give_up=on_give_up, counters=counters
        )
        self._write = write
        self._encode = encode
        self._encode_stored = encode_stored
        self._fetch_page = fetch
        self._limit = limit
        self._page = page
        self._held: list[Reading] = []
        self._replaying = False
        self._fetching = False
        self._last = 0
        self._upto = 0
        #: History rows written (for tests and log lines).
        self.replayed = 0

    @property
    def backlog(self) -> int:
        return len(self._held)

    @property
    def replaying(self) -> bool:
        return self._replaying

    def join(self, hub: Hub, filter_: Filter, since: int) -> Subscription:
        """Subscribe to ``hub`` and start the replay from ``since`` (steps 1 and 2 above)."""
        store = hub.history
        subscription, _ = hub.subscribe(self, filter_, snapshot=False)
        uncommitted = store.uncommitted()
        first = next((r.id for r in uncommitted if r.id is not None), None)
        last_id = hub.last_id or 0
        self.start(since, last_id + 1 if first is None else first,
                   [r for r in uncommitted if filter_.matches(r)])  # fmt: skip
        return subscription

    def start(self, since: int, upto: int, held: list[Reading]) -> None:
        """Replay ``since < id < upto``; ``held`` (uncommitted readings) goes out after it."""
        self._last = since
        self._upto = upto
        self._held = list(held)
        self._limit += len(held)
        self._replaying = True
        if since + 1 >= upto:
            self._finish_replay()
        else:
            self._fetch()

    # -- the history ------------------------------------------------------------

    def _fetch(self) -> None:
        self._fetching = True
        fetched = self._fetch_page(self._last, self._upto, self._page)
        # _got's own failure (a row it cannot encode) ends the resume too, never a hang.
        fetched.addCallback(self._got).addErrback(self._failed)

    def _got(self, rows: list[StoredReading]) -> None:
        self._fetching = False
        if self._closed:
            return
        if rows:
            self._write(self._encode_stored(rows))
            self._last = rows[-1].id
            self.replayed += len(rows)
        if len(rows) < self._page:
            self._finish_replay()
        elif not self._paused:
            self._fetch()  # else resumeProducing asks for the next page

    def _failed(self, reason: Failure) -> None:
        self._fetching = False
        _log.warn("resume: the history could not be read: {why}", why=reason.getErrorMessage())
        self._give_up(HISTORY_FAILED)

    def _finish_replay(self) -> None:
        self._replaying = False
        if not self._paused:
            self._release_held()

    # -- live ---------------------------------------------------------------------

    def deliver(self, batch: Batch) -> None:
        if self._closed:
            return
        if self._replaying or self._paused or self._held:
            self._held.extend(batch.readings)
            if len(self._held) > self._limit:
                self._give_up(OVERFLOW)
            return
        self._write(batch.encoded(self._encode))

    def _release_held(self) -> None:
        if self._replaying:
            if not self._fetching:
                self._fetch()
            return
        held, self._held = self._held, []
        last = self._last
        fresh = [r for r in held if r.id is None or r.id > last]
        if fresh:
            self._write(self._encode(fresh))

    def _hold_nothing_more(self) -> None:
        self._held = []


def resume_fetch(hub: Hub, filter_: Filter) -> Fetch:
    """``fetch(after, before, limit)``: a page of the hub's history for ``filter_`` (a Deferred)."""
    store: Any = hub.history
    wanted = series_filter(filter_)

    def fetch(after: int, before: int, limit: int) -> defer.Deferred:
        return store.query("readings_after_id", after, wanted, limit, before)

    return fetch
