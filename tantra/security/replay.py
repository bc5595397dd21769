"""Anti-replay for signed UDP: which seqs a device may still use, and why that survives a restart.

Owns the rule (:class:`ReplayGuard`, pure) and its state file
(:class:`ReplayStateFile`, a child service). A signed datagram can be
captured and sent again by anyone; the signature still holds, so the hub
must remember what it accepted, across restarts and crashes too.

Per device (only devices with a token: memory is bounded by the token file)
the guard keeps the highest accepted seq (``mark``) and a 64-bit bitmap of
the seqs just below it (RFC 4303's window). A seq is:

- **new** above the mark, or inside the window and not yet seen: accepted;
- **seen** inside the window and seen: acknowledged again, not accepted twice;
- **replayed** at or below ``mark - 64``, or at or below the ``floor`` set at
  start-up: refused (``{"error": "replayed"}``), unless the hub holds that
  very reading (stored, or in its de-dup window): then the caller acks it as
  a duplicate (``tantra.security.gate``; a retry whose ack was lost);
- **ahead** more than ``margin`` above the last mark *on disk*: refused for
  now (``{"error": "retry"}``) and the state file is written at once with it
  reserved; the device's next retry, a moment later, is accepted.

The crash guarantee. Every accepted seq ``s`` satisfies ``s <= D + margin``
where ``D`` is that device's mark in the state file when ``s`` was accepted
(the "ahead" rule enforces it), and the file's marks never go down. So after
a crash the hub sets ``floor = mark_on_disk + margin``, which is at least
every seq it ever accepted: a captured datagram can never be accepted again.
After a clean stop the file holds the exact marks (``"clean": true``) and the
floor is the mark itself. The file is rewritten with ``"clean": false``
synchronously at start-up, before any listener opens, then every
``interval`` seconds (in a thread) while anything changed, and at stop.

With a history store the marks are also committed with the readings they
cover (:meth:`ReplayGuard.marks_of`, written by ``tantra.store.writer``), and
at start-up the store's mark is the device's floor, exact after a crash too
(:meth:`ReplayGuard.use_stored_marks`); the file stays for devices the store
has no mark for, and for a store that cannot be read at start-up.

The device side: seq = ``boot_count << 32 | counter`` (the firmware's boot
counter lives in flash), so after a device reboot its seqs are far above
anything used before, and after a hub crash a device continuing its count
below the floor gets ``replayed`` and starts its next epoch.

Does not own: signatures (``tantra.security.signing``) or de-duplication
of unsigned readings (``tantra.dedupe``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from tantra.model import Reading
from tantra.security.tokens import write_atomically

NEW, SEEN, REPLAYED, AHEAD = "new", "seen", "replayed", "ahead"
WINDOW = 64
#: Seqs a device may get accepted above its mark on disk (see the module docstring).
DEFAULT_MARGIN = 1 << 20
_log = Logger()


class ReplayGuard:
    """The per-device replay rule. Pure: the caller persists :meth:`snapshot`."""

    def __init__(self, *, margin: int = DEFAULT_MARGIN, floors: dict[str, int] | None = None):
        self.margin = margin
        # device -> [mark, seen bits below the mark (bit i: seq mark-1-i)]
        self._state: dict[str, list[int]] = {}
        # device -> mark on disk (what the margin is measured from).
        self.durable: dict[str, int] = dict(floors or {})
        # device -> highest seq to write at the next save (accepted or reserved).
        self._to_save: dict[str, int] = dict(floors or {})
        self.floors: dict[str, int] = dict(floors or {})
        self.dirty = False

    def check(self, device: str, seq: int) -> str:
        """Classify ``seq`` without recording it."""
        floor = self.floors.get(device, -1)
        if seq <= floor:
            return REPLAYED
        state = self._state.get(device)
        if state is not None:
            mark, seen = state
            if seq <= mark:
                if seq <= mark - WINDOW:
                    return REPLAYED
                return SEEN if seq == mark or seen >> (mark - 1 - seq) & 1 else NEW
        if seq > self.durable.get(device, -1) + self.margin:
            return AHEAD
        return NEW

    def record(self, device: str, seq: int) -> None:
        """Mark ``seq`` accepted (after :meth:`check` said NEW)."""
        state = self._state.get(device)
        if state is None:
            self._state[device] = [seq, 0]
        else:
            mark, seen = state
            if seq > mark:
                shift = seq - mark
                seen = ((seen << shift) | (1 << (shift - 1))) if shift <= WINDOW else 0
                state[0], state[1] = seq, seen & ((1 << WINDOW) - 1)
            else:
                state[1] = seen | (1 << (mark - 1 - seq))
        if seq > self._to_save.get(device, -1):
            self._to_save[device] = seq
            self.dirty = True

    def reserve(self, device: str, seq: int) -> None:
        """An AHEAD seq: write it to disk so that the device's retry passes."""
        if seq > self._to_save.get(device, -1):
            self._to_save[device] = seq
            self.dirty = True

    def snapshot(self) -> dict[str, int]:
        """The marks to write; call :meth:`saved` with it once it is on disk."""
        self.dirty = False
        return dict(self._to_save)

    def saved(self, marks: dict[str, int]) -> None:
        for device, mark in marks.items():
            if mark > self.durable.get(device, -1):
                self.durable[device] = mark

    def marks_of(self, readings: Sequence[Reading]) -> dict[str, int]:
        """The replay marks a group of readings carries to the history store:
        per device this guard has accepted signed seqs from, its highest seq
        among them (committed in the same transaction, ``tantra.store.writer``)."""
        state = self._state
        marks: dict[str, int] = {}
        for reading in readings:
            seq = reading.seq
            if seq is not None and reading.device in state and seq > marks.get(reading.device, -1):
                marks[reading.device] = seq
        return marks

    def use_stored_marks(self, marks: dict[str, int]) -> None:
        """Floors from the history store, at start-up: exact, no crash margin.

        A device's mark in the store is committed with its readings, so it is
        the highest signed seq ever stored, crash or not; a seq above it was
        never stored (nor acked). Devices the store has no mark for keep the
        state file's floor.
        """
        for device, mark in marks.items():
            self.floors[device] = mark

    def forget_devices(self, keep: set[str]) -> None:
        """Drop the state of devices that no longer have a token (bounded memory)."""
        for table in (self._state, self.durable, self._to_save, self.floors):
            for device in [d for d in table if d not in keep]:
                del table[device]


def load_floors(path: str, margin: int) -> dict[str, int]:
    """The floors after a restart: the marks on disk, plus ``margin`` unless the stop was clean."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SystemExit(f"tantra: replay state file {path}: no directory {directory}")
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise SystemExit(f"tantra: replay state file {path} is unusable: {error}") from None
    marks = data.get("devices", {}) if isinstance(data, dict) else {}
    clean = isinstance(data, dict) and data.get("clean") is True
    extra = 0 if clean else margin
    return {
        device: mark + extra
        for device, mark in marks.items()
        if isinstance(device, str) and type(mark) is int
    }


def dump_state(marks: dict[str, int], *, clean: bool) -> bytes:
    return json.dumps({"version": 1, "clean": clean, "devices": marks}).encode() + b"\n"


class ReplayStateFile(service.Service):
    """Keeps the guard's marks in a file: at start (not clean), on a timer, at stop (clean)."""

    def __init__(self, path: str, guard: ReplayGuard, reactor: Any, *, interval: float = 1.0):
        self.path = path
        self.guard = guard
        self._reactor = reactor
        self._interval = interval
        self._loop: task.LoopingCall | None = None
        self._writing: defer.Deferred | None = None
        self._again = False

    def startService(self) -> None:
        super().startService()
        # Synchronously, before any listener opens: from now on a crash is unclean.
        marks = self.guard.snapshot()
        try:
            write_atomically(self.path, dump_state(marks, clean=False))
        except OSError as error:
            raise SystemExit(
                f"tantra: cannot write the replay state file {self.path}: {error.strerror or error}"
            ) from None
        self.guard.saved(marks)
        self._loop = task.LoopingCall(self.save_soon)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False)

    def save_soon(self) -> None:
        """Write the marks if anything changed (in a thread; one write at a time)."""
        if self._writing is not None:
            self._again = self._again or self.guard.dirty
            return
        if not self.guard.dirty:
            return
        marks = self.guard.snapshot()
        data = dump_state(marks, clean=False)
        self._writing = threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), write_atomically, self.path, data
        )
        self._writing.addCallbacks(lambda _: self.guard.saved(marks), self._failed)
        self._writing.addBoth(self._done)

    def _failed(self, reason) -> None:
        self.guard.dirty = True  # try again next time; the margin rule keeps refusing meanwhile
        _log.failure("could not write the replay state file {path}", reason, path=self.path)

    def _done(self, _: object) -> None:
        self._writing = None
        if self._again:
            self._again = False
            self.save_soon()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        waiting = self._writing if self._writing is not None else defer.succeed(None)

        def final(_: object) -> None:
            marks = self.guard.snapshot()
            write_atomically(self.path, dump_state(marks, clean=True))

        return waiting.addBoth(final)


def state_path_for(auth_path: str) -> str:
    """Default replay state file: beside the token file."""
    return os.path.join(os.path.dirname(os.path.abspath(auth_path)), "tantra-replay.json")
