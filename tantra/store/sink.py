"""The hub's side of history: every accepted reading to the store, acks after its commit.

Owns: :class:`StoreService`, the child service that opens the store before
the listeners start, rebuilds the hub's de-duplication window from what the
store holds (so a device that re-sends after a crash makes no double), makes
the hub's acks wait for commits (:meth:`Hub.commit_through`,
``tantra.commits``: the hub hands each turn's accepted readings to the store
at its flush), and stops it, committing what is queued within the grace
period, after every client was let go of (``tantra.lifecycle`` stops plain
children last).

Does not own: the queue, the writer or the database (``tantra.store.writer``).
"""

from __future__ import annotations

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

    def __init__(self, store: Store, hub: Hub, *, grace: float = 5.0):
        self.store = store
        self.hub = hub
        self.grace = grace

    def startService(self) -> None:
        try:
            self.store.start()
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise SystemExit(
                f"tantra: cannot open the history store {self.store.backend.describe()}: {message}"
            ) from None
        super().startService()
        self.hub.remember_committed(self.store.recent_sequences)
        self.store.recent_sequences = []
        self.hub.keep_history(self.store)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.hub.flush()  # what the hub still holds goes to the store first
        return self.store.stop(self.grace)
