"""The hub's side of history: a sink that queues every accepted reading for storage.

Owns: :class:`StoreSink` (an :class:`~tantra.hub.ISink` subscribed to
everything) and :class:`StoreService`, the child service that opens the store
before the listeners start and stops it, committing what is queued within
the grace period, after every client was let go of (``tantra.lifecycle``
stops plain children last).

Does not own: the queue, the writer or the database (``tantra.store.writer``).
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from zope.interface import implementer

from tantra.hub import Batch, Hub, ISink, Subscription
from tantra.store.writer import Store


@implementer(ISink)
class StoreSink:
    """Hands each turn's accepted readings to the store (duplicates never get here)."""

    def __init__(self, store: Store):
        self.store = store

    def deliver(self, batch: Batch) -> None:
        self.store.enqueue(batch.readings)


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
        self._subscription: Subscription | None = None

    def startService(self) -> None:
        try:
            self.store.start()
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise SystemExit(
                f"tantra: cannot open the history store {self.store.backend.describe()}: {message}"
            ) from None
        super().startService()
        self._subscription, _ = self.hub.subscribe(StoreSink(self.store))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self.hub.flush()  # what the hub still holds goes to the store first
        if self._subscription is not None:
            self.hub.unsubscribe(self._subscription)
            self._subscription = None
        return self.store.stop(self.grace)
