"""The store as the reactor sees it: a bounded queue, one writer thread, a read pool.

Owns: :class:`Store`, the :class:`~tantra.store.IStore` every backend runs
behind. ``submit`` (reactor thread) appends to a bounded queue and never
blocks; the writer thread takes everything queued, writes it in one
transaction (group commit: at most ``commit_interval`` seconds after the
previous commit began, sooner when the queue holds a full group) and reports
each commit back with ``reactor.callFromThread``. When the database fails the
writer keeps the group, reconnects and retries with backoff; the state and
its reason change in the reactor thread with one log line per change, and a
full queue sheds new readings (counted). Retention runs on a reactor timer
whose deletions go through the same writer, in small batches, between groups.
Reads run on a dedicated thread pool, each thread on its own connection.

Does not own: SQL (``tantra.store.backend``) or what commits mean to clients
(the transports decide what to ack; they listen here).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from tantra.commits import IDurable
from tantra.counters import StoreStats
from tantra.model import Reading
from tantra.store import IStore, NotStored
from tantra.store.backend import Backend

_log = Logger()

#: Readings written in one transaction at most.
MAX_GROUP = 10_000
#: Retry delays after a failed write: first, factor, ceiling (seconds).
BACKOFF = (0.1, 2.0, 5.0)
#: Raw readings deleted per retention step; steps run this often (seconds).
RETENTION_BATCH = 1000
RETENTION_INTERVAL = 60.0
#: Minute rollups are kept this many times longer than raw readings.
MINUTE_ROLLUP_FACTOR = 10

CommitListener = Callable[[Sequence[Reading], Sequence[int]], None]


class _Entry:
    """One ``submit``: its readings and whom to tell."""

    __slots__ = ("deferred", "marks", "queued_at", "readings")

    def __init__(
        self,
        readings: Sequence[Reading],
        deferred: defer.Deferred | None,
        queued_at: float,
        marks: dict[str, int] | None = None,
    ):
        self.readings = readings
        self.deferred = deferred
        self.queued_at = queued_at  # the monotonic clock, for the commit latency
        #: device -> highest signed seq among ``readings`` (the replay marks they carry).
        self.marks = marks


#: Stored readings read back at start-up to rebuild the de-duplication window.
RECENT_SEQUENCES = 200_000


@implementer(IStore, IDurable)
class Store:
    """A backend behind a writer thread; every public method is for the reactor thread."""

    def __init__(
        self,
        backend: Backend,
        reactor: Any,
        *,
        commit_interval: float = 0.010,
        queue_limit: int = 50_000,
        retention_ms: int | None = None,
        read_threads: int = 4,
        monotonic: Callable[[], float] = time.monotonic,
        backoff: tuple[float, float, float] = BACKOFF,
        stats: StoreStats | None = None,
        commit_latency: Callable[[float, int], None] | None = None,
    ):
        """``commit_latency(seconds, readings)`` is told, in the reactor thread, how
        long each submitted group waited from submit to commit (a metrics histogram)."""
        self.backend = backend
        self._commit_latency = commit_latency
        self._reactor = reactor
        self.commit_interval = commit_interval
        self.queue_limit = queue_limit
        self.retention_ms = retention_ms
        self._monotonic = monotonic
        self._backoff = backoff
        #: Counters and state, the ``store`` section of the hub's ``Counters`` (``/stats``).
        self.counters = stats if stats is not None else StoreStats()
        self.counters.where = backend.describe()
        self.counters.queue_limit = queue_limit
        self._listeners: list[CommitListener] = []
        # Shared with the writer thread, guarded by _cond.
        self._cond = threading.Condition()
        self._queue: collections.deque[_Entry | Callable[[Any], None]] = collections.deque()
        self._queued = 0
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._stopped: defer.Deferred | None = None
        self._pool = ThreadPool(minthreads=0, maxthreads=read_threads, name="tantra-history-read")
        self._read_threads = read_threads
        self._retention: task.LoopingCall | None = None
        self.schema_version = 0
        self._last_commit = float("-inf")  # writer thread only
        #: Where the hub takes reading ids from (``tantra.store.ids``), set by :meth:`start`.
        self.ids: Any = None
        # Submitted entries not yet reported committed or failed, oldest first
        # (reactor thread only): what a resuming dashboard gets live (uncommitted).
        self._unsettled: collections.deque[_Entry] = collections.deque()

    @property
    def state(self) -> str:
        """'starting', 'ok', 'failing' or 'stopped' (changed in the reactor thread)."""
        return self.counters.state

    @state.setter
    def state(self, value: str) -> None:
        self.counters.state = value

    @property
    def reason(self) -> str:
        """Why the store is failing ('' when it is not)."""
        return self.counters.reason

    @reason.setter
    def reason(self, value: str) -> None:
        self.counters.reason = value

    #: ``(device, seq, ts)`` of the newest stored readings with a seq, read at
    #: start-up (empty when the database was unreachable then).
    recent_sequences: list[tuple[str, int, int]] = []
    #: device -> replay mark (``tantra.security.replay``) read at start-up;
    #: ``None`` when the database was unreachable then (the caller falls back).
    replay_marks: dict[str, int] | None = None
    #: Set by the signed-UDP replay guard (reactor thread): the marks a group of
    #: submitted readings carries, device -> highest signed seq; committed with them.
    marks_of: Callable[[Sequence[Reading]], dict[str, int]] | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Open and migrate the database, then start the writer.

        A database server that cannot be reached (``Backend.unreachable``)
        does not stop start-up: the store starts ``failing`` and the writer
        connects, migrates and writes when it can, with the usual backoff,
        while readings queue up to the bound. Anything else raises.
        """
        conn: Any = None
        try:
            conn = self.backend.connect()
            self.schema_version = self.backend.migrate(conn)
            # Before the reactor runs (twistd starts services first): what the
            # de-duplication window is rebuilt from (tantra.commits).
            self.recent_sequences = self.backend.recent_sequences(conn, RECENT_SEQUENCES)
            self.replay_marks = self.backend.replay_marks(conn)
        except Exception as error:
            conn = _close_quietly(conn)
            if self.schema_version or not self.backend.unreachable(error):
                raise
            self.reason = _one_line(error)
        self.backend.open_readers(self._read_threads)
        self._pool.start()
        self.ids = self.backend.id_source(
            conn, lambda count: self.query("reserve_ids", count), self._reactor.seconds
        )
        self.state = "ok" if conn is not None else "failing"
        self._stopping = self._abandon = False
        self._stopped = defer.Deferred()
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="tantra-history-writer", daemon=True
        )
        self._thread.start()
        if self.retention_ms is not None:
            self._retention = task.LoopingCall(self._prune)
            self._retention.clock = self._reactor
            self._retention.start(RETENTION_INTERVAL, now=True)
        if conn is None:
            self.counters.write_failures += 1
            _log.error(
                "history store {where} unreachable, will retry: {reason}",
                where=self.backend.describe(),
                reason=self.reason,
            )
        else:
            self._opened()

    def _opened(self) -> None:
        _log.info(
            "history stored in {where} (schema {version})",
            where=self.backend.describe(),
            version=self.schema_version,
        )

    def stop(self, grace: float = 5.0) -> defer.Deferred:
        """Commit what is queued, then stop; after ``grace`` seconds give up on the rest."""
        if self._retention is not None and self._retention.running:
            self._retention.stop()
        if self._thread is None or self._stopped is None:
            return defer.succeed(None)
        with self._cond:
            self._stopping = True
            self._cond.notify()
        give_up = self._reactor.callLater(grace, self._give_up)
        stopped = self._stopped

        def done(result: object) -> object:
            if give_up.active():
                give_up.cancel()
            self._thread = None
            self._pool.stop()  # joins the read threads (short queries) before closing
            self.backend.close_readers()
            self.state = "stopped"
            return result

        return stopped.addBoth(done)

    def _give_up(self) -> None:
        with self._cond:
            self._abandon = True
            self._cond.notify()

    # -- writing (reactor side) --------------------------------------------------

    def submit(self, readings: Sequence[Reading]) -> defer.Deferred:
        deferred: defer.Deferred = defer.Deferred()
        self._enqueue(readings, deferred)
        return deferred

    def enqueue(self, readings: Sequence[Reading]) -> None:
        """:meth:`submit` for callers that only need commit listeners (no Deferred)."""
        self._enqueue(readings, None)

    def _enqueue(self, readings: Sequence[Reading], deferred: defer.Deferred | None) -> None:
        count = len(readings)
        if self.state not in ("ok", "failing") or self._stopping:
            self._shed(count, deferred, "the store is stopped")
            return
        marks = self.marks_of(readings) if self.marks_of is not None else None
        with self._cond:
            if self._queued + count > self.queue_limit:
                full = True
            else:
                full = False
                entry = _Entry(readings, deferred, self._monotonic(), marks)
                self._queue.append(entry)
                self._queued += count
                self._cond.notify()
            self.counters.queued = self._queued
        if not full:
            self._unsettled.append(entry)
        if full:
            self._shed(count, deferred, f"the store queue is full ({self.queue_limit} readings)")

    def _shed(self, count: int, deferred: defer.Deferred | None, why: str) -> None:
        self.counters.shed += count
        if self.counters.shed == count or self.counters.shed % 10_000 < count:
            _log.warn("history: not storing {count} reading(s): {why} ({total} shed so far)",
                      count=count, why=why, total=self.counters.shed)  # fmt: skip
        if deferred is not None:
            deferred.errback(NotStored(why))

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.remove(listener)

    @property
    def queued(self) -> int:
        return self._queued

    def stats(self) -> dict[str, Any]:
        return self.counters.as_dict()

    def uncommitted(self) -> list[Reading]:
        """Readings submitted and not yet committed (nor shed), in submit order.

        Every id below the first of these is committed or will never be: a
        resuming dashboard reads those from the database and takes these,
        like live readings, from the hub (``tantra.resume``).
        """
        return [reading for entry in self._unsettled for reading in entry.readings]

    def _settled(self, entry: _Entry) -> None:
        unsettled = self._unsettled
        if unsettled and unsettled[0] is entry:
            unsettled.popleft()
        else:  # failed out of order (the hub stopping): rare
            with contextlib.suppress(ValueError):
                unsettled.remove(entry)

    # -- reports from the writer (reactor thread) ---------------------------------

    def _committed(self, entries: list[_Entry], ids: list[int]) -> None:
        self.counters.stored += len(ids)
        self.counters.commits += 1
        self.counters.queued = self._queued
        offset = 0
        done = []
        observe = self._commit_latency
        now = self._monotonic() if observe is not None else 0.0
        for entry in entries:  # listeners first: a Deferred's callback may run anything
            self._settled(entry)
            count = len(entry.readings)
            if observe is not None:
                observe(now - entry.queued_at, count)
            mine = ids[offset : offset + count]
            offset += count
            done.append((entry.deferred, mine))
            for listener in list(self._listeners):
                try:
                    listener(entry.readings, mine)
                except Exception:
                    _log.failure("history commit listener {listener!r} failed", listener=listener)
        for deferred, mine in done:
            if deferred is not None:
                deferred.callback(mine)

    def _set_state(self, state: str, reason: str) -> None:
        if state == "failing":
            self.counters.write_failures += 1
        if state == self.state:
            self.reason = reason
            return
        self.state, self.reason = state, reason
        if state == "failing":
            _log.error("history store failing, will retry: {reason}", reason=reason)
        else:
            _log.info("history store writing again")

    def _failed_entries(self, entries: list[_Entry], why: str) -> None:
        for entry in entries:
            self._settled(entry)
            self.counters.shed += len(entry.readings)
            if entry.deferred is not None:
                entry.deferred.errback(NotStored(why))

    def _finished(self) -> None:
        self.counters.queued = self._queued
        if self._stopped is not None:
            stopped, self._stopped = self._stopped, None
            stopped.callback(None)

    # -- the writer thread ------------------------------------------------------

    def _take(self) -> list[_Entry | Callable[[Any], None]] | None:
        """Wait for the next group (or a task); None when it is time to stop."""
        with self._cond:
            last = self._last_commit
            while True:
                if self._abandon:
                    return None
                if not self._queue:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                wait = last + self.commit_interval - self._monotonic()
                if wait > 0 and self._queued < MAX_GROUP and not self._stopping:
                    self._cond.wait(wait)
                    continue
                break
            head = self._queue[0]
            if not isinstance(head, _Entry):
                self._queue.popleft()
                return [head]
            group: list[_Entry | Callable[[Any], None]] = []
            taken = 0
            while self._queue and isinstance(self._queue[0], _Entry) and taken < MAX_GROUP:
                entry = self._queue.popleft()
                assert isinstance(entry, _Entry)
                group.append(entry)
                taken += len(entry.readings)
            return group

    def _connect(self) -> Any:
        """A new writer connection (writer thread); migrates first if start-up could not."""
        conn = self.backend.connect()
        if not self.schema_version:
            try:
                self.schema_version = self.backend.migrate(conn)
            except BaseException:
                _close_quietly(conn)
                raise
            self._reactor.callFromThread(self._opened)
        return conn

    def _pause(self, delay: float, *, until_stopping: bool = False) -> bool:
        """Wait ``delay`` seconds before a retry (writer thread); True when it is time to quit.

        New readings notify the condition; they must not shorten the backoff.
        """
        deadline = time.monotonic() + delay  # real time, as Condition.wait's
        with self._cond:
            while True:
                if self._abandon or (until_stopping and self._stopping):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def _run(self, conn: Any) -> None:
        call = self._reactor.callFromThread
        delay = self._backoff[0]
        group: list[Any] | None = None
        try:
            # Unreachable at start-up: keep trying, readings or not, so the state
            # turns ok as soon as the database is back (a stop ends the wait).
            while conn is None:
                try:
                    conn = self._connect()
                except Exception as error:
                    call(self._set_state, "failing", _one_line(error))
                    if self._pause(delay, until_stopping=True):
                        break
                    delay = min(delay * self._backoff[1], self._backoff[2])
                else:
                    delay = self._backoff[0]
                    call(self._set_state, "ok", "")
            while True:
                if group is None:
                    group = self._take()
                    if group is None:
                        break
                if len(group) == 1 and not isinstance(group[0], _Entry):
                    job, group = group[0], None
                    try:
                        if conn is None:
                            conn = self._connect()
                        job(conn)
                    except Exception as error:
                        _log.warn("history retention step failed: {error}", error=error)
                        conn = _close_quietly(conn)
                    continue
                entries: list[_Entry] = group  # type: ignore[assignment]
                readings = [r for entry in entries for r in entry.readings]
                self._last_commit = self._monotonic()
                try:
                    if conn is None:
                        conn = self._connect()
                    ids = self.backend.write(conn, readings, _merged_marks(entries))
                except Exception as error:
                    reason = _one_line(error)
                    call(self._set_state, "failing", reason)
                    conn = _close_quietly(conn)
                    if self._pause(delay):
                        break
                    delay = min(delay * self._backoff[1], self._backoff[2])
                    continue  # the same group again
                with self._cond:
                    self._queued -= len(readings)
                group = None
                delay = self._backoff[0]
                call(self._set_state, "ok", "")
                call(self._committed, entries, ids)
        finally:
            with self._cond:
                left = [e for e in ([*(group or []), *self._queue]) if isinstance(e, _Entry)]
                self._queue.clear()
                self._queued = 0
            if left:
                call(self._failed_entries, left, "the hub stopped before they were stored")
            _close_quietly(conn)
            call(self._finished)

    # -- retention -----------------------------------------------------------

    def _prune(self) -> None:
        self.prune()

    def prune(self) -> defer.Deferred:
        """One small retention step through the writer; a Deferred of the rows deleted.

        Another step follows soon when this one was full, so a long backlog
        is worked off in small transactions between ingest groups.
        """
        done: defer.Deferred = defer.Deferred()
        if self.retention_ms is None or self._thread is None or self._stopping:
            done.callback(0)
            return done
        now_ms = int(self._reactor.seconds() * 1000)
        raw_before = now_ms - self.retention_ms
        minutes_before = now_ms - self.retention_ms * MINUTE_ROLLUP_FACTOR

        def job(conn: Any) -> None:
            deleted = self.backend.prune(conn, raw_before, minutes_before, RETENTION_BATCH)
            self._reactor.callFromThread(self._pruned, deleted, done)

        with self._cond:
            self._queue.append(job)
            self._cond.notify()
        return done

    def _pruned(self, deleted: int, done: defer.Deferred) -> None:
        self.counters.pruned += deleted
        done.callback(deleted)
        if deleted >= RETENTION_BATCH and self.state == "ok" and not self._stopping:
            self._reactor.callLater(0.05, self._prune)  # more to do: soon, but let ingest in

    # -- reading -----------------------------------------------------------------

    def query(self, name: str, *args: Any) -> defer.Deferred:
        """Run ``backend.<name>(conn, *args)`` on a read thread with its own connection."""
        method = getattr(self.backend, name)

        def run() -> Any:
            with self.backend.reader() as conn:
                return method(conn, *args)

        return deferToThreadPool(self._reactor, self._pool, run)


def _merged_marks(entries: list[_Entry]) -> dict[str, int] | None:
    """The replay marks a group of entries carries: the highest per device."""
    merged: dict[str, int] | None = None
    for entry in entries:
        if entry.marks:
            if merged is None:
                merged = dict(entry.marks)
                continue
            for device, mark in entry.marks.items():
                if mark > merged.get(device, -1):
                    merged[device] = mark
    return merged


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().splitlines()[0]


def _close_quietly(conn: Any) -> Any:
    """Close a connection that may be broken; returns None for ``conn = _close_quietly(conn)``."""
    if conn is not None:
        try:
            conn.close()
        except Exception as error:
            _log.debug("closing a broken history connection: {error}", error=error)
    return None
