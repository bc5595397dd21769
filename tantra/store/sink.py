"""The hub's side of history: every accepted reading to the store, acks after its commit.

Owns: :class:`StoreService`, the child service that opens the store before
the listeners start, rebuilds the hub's de-duplication window from what the
store holds (so a device that re-sends after a crash makes no double), sets
the signed-UDP replay floors from the replay marks the store holds (and has
the writer commit the marks with the readings they cover), makes
the hub's acks wait for commits (:meth:`Hub.commit_through`,
``tantra.commits``: the hub hands each turn's accepted readings to the store
at its flush), and stops it, committing what is queued within the grace
period, after every client was let go of (``tantra.lifecycle`` stops plain
children last).

Does not own: the queue, the writer or the database (``tantra.store.writer``).
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer

from tantra.hub import Hub
from tantra.store.writer import Store


class StoreService(service.Service):
    """Opens the history on start (a one-line exit if it cannot), flushes it on stop.

    Start-up is synchronous on purpose: under ``twistd`` it runs before the
    reactor, and a database the hub cannot use (a SQLite file it cannot open,
    or one migrated by a newer Tantra) must stop start-up with one readable
    line. An unreachable PostgreSQL server is not fatal: the store starts
    ``failing`` and its writer retries (``Store.start``).
    """

    name = "store"

    def __init__(self, store: Store, hub: Hub, *, grace: float = 5.0, replay: Any = None):
        """``replay``: the signed-UDP :class:`~tantra.security.replay.ReplayGuard`
        (with ``--auth``), whose marks are committed with the readings and
        whose floors come from the store at start-up."""
        self.store = store
        self.hub = hub
        self.grace = grace
        self.replay = replay
        if replay is not None:
            store.marks_of = replay.marks_of

    def startService(self) -> None:
        try:
            self.store.start()
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise SystemExit(
                f"tantra: cannot open the history store {self.store.backend.describe()}: {message}"
            ) from None
        super().startService()
        if self.replay is not None and self.store.replay_marks is not None:
            self.replay.use_stored_marks(self.store.replay_marks)
        self.hub.remember_committed(self.store.recent_sequences)
        self.store.recent_sequences = []
        self.hub.keep_history(self.store)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.hub.flush()  # what the hub still holds goes to the store first
        return self.store.stop(self.grace)
