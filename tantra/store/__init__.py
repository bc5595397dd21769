"""History: where accepted readings are kept, and the seam the rest of the hub sees.

Owns: :class:`IStore` (what the hub, the API and later the acks rely on),
:class:`NotStored`, and :func:`backend_for`, which turns a ``--store`` value
(``sqlite:PATH`` or ``postgresql://…``) into the backend that speaks to it.

Does not own: the SQL (``backend``, ``sqlite``, ``postgres``), the writer
thread and its queue (``writer``), the hub sink (``sink``) or HTTP (``tantra.web.api``).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from tantra.store.backend import Backend, SchemaTooNew


class NotStored(Exception):
    """These readings were not (and will not be) committed: queue full, or the hub stopped."""


class IStore(Interface):
    """A history of readings written behind the reactor, in its own thread."""

    state = Attribute("'starting', 'ok', 'failing' or 'stopped'")
    reason = Attribute("why the store is failing ('' when it is not)")

    def start():
        """Open the database and migrate its schema (blocking: call before the reactor runs
        or accept a short pause), then start the writer thread. Raises on failure."""

    def stop():
        """Commit what is queued (within a grace period) and stop; a Deferred."""

    def submit(readings):
        """Queue readings for the next group commit; never blocks.

        Returns a Deferred that fires in the reactor thread, after the
        transaction holding them committed, with their ids (in order); or
        fails with :class:`NotStored` when they were shed.
        """

    def add_commit_listener(listener):
        """Call ``listener(readings, ids)`` in the reactor thread after every commit."""

    def remove_commit_listener(listener):
        """Undo :meth:`add_commit_listener`."""

    def stats():
        """Counters and state for ``/stats``."""

    def query(name, *args):
        """Run the backend's read method ``name`` in a read thread; a Deferred of its result."""


def backend_for(description: str) -> Backend:
    """The backend for a ``--store`` value that is not ``none``."""
    if description.startswith(("postgresql://", "postgres://")):
        from tantra.store.postgres import PostgresBackend

        return PostgresBackend(description)
    if description.startswith("sqlite:"):
        from tantra.store.sqlite import SQLiteBackend

        return SQLiteBackend(description[len("sqlite:") :])
    raise ValueError(f"{description!r}: expected sqlite:PATH, postgresql://… or none")


__all__ = ["IStore", "NotStored", "SchemaTooNew", "backend_for"]
