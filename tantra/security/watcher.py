"""Reloads the token file when it changes (polled every second) or on SIGHUP.

Owns noticing the change and swapping the table in (:meth:`Auth.replace`
closes what a revoked token held, so revocation takes effect within a
second). A file that no longer parses leaves the old tokens in force and
says so once per change in the log. The poll is an ``os.stat`` of one
small file per second (mtime, size and inode: ``tantra token`` replaces the
file by rename, editors may rewrite it in place), on the injected clock.

A token file's directory must exist when the hub starts (else a one-line
error); the file itself may not yet (no tokens: every client is refused, and
one warning says so).

Does not own: the file format (``tantra.security.tokens``).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

from tantra.security.gate import Auth
from tantra.security.tokens import TokenFileError, read_tokens

POLL_SECONDS = 1.0
_log = Logger()


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


class TokenFileWatcher(service.Service):
    """Keeps :class:`Auth`'s table equal to the file's (poll + SIGHUP)."""

    def __init__(self, path: str, auth: Auth, clock: Any, *, interval: float = POLL_SECONDS,
                 reactor: Any = None):  # fmt: skip
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):  # a typo: say so now, not "unauthorized" for ever
            raise SystemExit(f"tantra: --auth {path}: no directory {directory}")
        self.path = path
        self.auth = auth
        self._clock = clock
        self._reactor = reactor
        self._interval = interval
        self._seen = _identity(path)
        self._loop: task.LoopingCall | None = None
        self._previous_handler: Any = None

    def startService(self) -> None:
        super().startService()
        if not os.path.exists(self.path):  # fails closed; a mistyped path must show, though
            _log.warn(
                "no tokens yet: every client will be refused until"
                " `tantra token add --auth {path} ...` creates {path}",
                path=self.path,
            )
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=False)
        if self._reactor is not None:
            try:
                self._previous_handler = signal.signal(signal.SIGHUP, self._on_sighup)
            except ValueError:  # not the main thread (some test runners)
                self._previous_handler = None

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self._reactor.callFromThread(self.reload, "SIGHUP")

    def poll(self) -> None:
        identity = _identity(self.path)
        if identity != self._seen:
            self._seen = identity
            self.reload("file changed")

    def reload(self, why: str = "reload") -> bool:
        try:
            table = read_tokens(self.path)
        except TokenFileError as error:
            self.auth.stats.reload_errors += 1
            _log.error("token file not reloaded ({why}), old tokens kept: {error}",
                       why=why, error=str(error))  # fmt: skip
            return False
        self.auth.stats.reloads += 1
        gone = self.auth.replace(table)
        _log.info(
            "token file reloaded ({why}): {count} token(s){closed}",
            why=why,
            count=len(table),
            closed=f"; closed the connections of {', '.join(gone)}" if gone else "",
        )
        return True
