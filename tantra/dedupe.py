"""Which ``(device, seq)`` pairs the hub has already accepted, in a small fixed space per device.

Owns: the de-duplication window and its memory bound. Per device it keeps
what IPsec and DTLS keep against replays (RFC 4303 section 3.4.3, RFC 6479):
the highest seq seen (the high-water mark) and one bit for each of the
``size`` seqs below it, here stored as the set of *missing* seqs, so a device
that counts 1, 2, 3... costs no bitmap at all (the Python int ``0``).

- The window is the mark and the ``size - 1`` seqs below it. A seq above the
  mark moves the window up; one inside it is a duplicate when its bit says
  seen; one below the window means the device counts again from somewhere
  else (a reboot, a counter that wrapped): the window starts over there.
- A device idle for ``seconds`` is forgotten (the time limit lets a device
  that rebooted and counts from 0 again be heard); devices are kept in
  activity order, so expiry pops from the front, O(1) amortized, driven by
  the ``now`` the caller passes.
- At most ``max_devices`` are tracked; past it the least recently active is
  forgotten and counted in :attr:`SeqWindow.evicted`.

Pure: the caller passes the time. Does not own acks or delivery (``tantra.hub``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

#: Default number of devices tracked: 170-330 bytes each plus the name (docs/protocol.md),
#: under 220 MB even for 64-character names, and a cardinality attack must send half a
#: million readings under distinct names (seconds of a busy hub) to push a device out.
MAX_DEVICES = 500_000


class SeqWindow:
    """Remembers recent sequence numbers per device to spot re-sent readings."""

    __slots__ = ("_devices", "_mask", "evicted", "expired", "max_devices", "seconds", "size")

    def __init__(self, *, size: int = 1024, seconds: float = 300.0, max_devices: int = MAX_DEVICES):
        if size < 1 or seconds <= 0 or max_devices < 1:
            raise ValueError("size, seconds and max_devices must be positive")
        self.size = size
        self.seconds = seconds
        self.max_devices = max_devices
        #: Devices forgotten because the window was full (a cardinality attack, or too small).
        self.evicted = 0
        #: Devices forgotten because they sent no seq for ``seconds``.
        self.expired = 0
        # The window is the mark and the size - 1 seqs below it.
        self._mask = (1 << (size - 1)) - 1
        # device -> [high-water mark, missing bits, last active]; activity order.
        # Bit i of "missing" is seq (mark - 1 - i): set when that seq was not seen.
        self._devices: OrderedDict[str, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self._devices)

    def is_duplicate(self, device: str, seq: int, now: float) -> bool:
        """Record ``seq`` for ``device``; True when it was already in the window."""
        return not self.mark_seen(device, seq, now)

    def mark_seen(self, device: str, seq: int, now: float) -> bool:
        """Record ``seq`` as accepted for ``device``; False when it already was.

        Also the way to rebuild the window from a store at start-up: mark
        every recent ``(device, seq)`` in the order they were accepted.
        """
        self.expire(now)
        return self._mark(device, seq, now)

    def mark_seen_many(self, keys: Iterable[tuple[str, int]], now: float) -> None:
        """:meth:`mark_seen` for every ``(device, seq)`` of ``keys``, in order, at one time.

        A commit marks a whole turn's keys at once: the idle devices are
        expired once for the turn, not once per key (issue 14).
        """
        mark = self._mark
        expired = False
        for device, seq in keys:
            if not expired:  # as mark_seen would: no key, no expiry
                self.expire(now)
                expired = True
            mark(device, seq, now)

    def _mark(self, device: str, seq: int, now: float) -> bool:
        devices = self._devices
        state = devices.get(device)
        if state is None:
            devices[device] = [seq, self._mask, now]  # nothing below it seen yet
            if len(devices) > self.max_devices:
                devices.popitem(last=False)
                self.evicted += 1
            return True
        devices.move_to_end(device)
        state[2] = now
        mark = state[0]
        if seq > mark:
            shift = seq - mark
            if shift >= self.size:
                state[1] = self._mask  # everything below the new mark: not seen
            else:
                # The old mark becomes seen (bit shift-1 clear); seqs between are missing.
                state[1] = ((state[1] << shift) | ((1 << (shift - 1)) - 1)) & self._mask
            state[0] = seq
            return True
        if seq == mark:
            return False
        behind = mark - seq  # 1 .. ; bit behind-1
        if behind >= self.size:
            state[0], state[1] = seq, self._mask  # a counter that started over: a new window
            return True
        bit = 1 << (behind - 1)
        missing = state[1]
        if not missing & bit:
            return False
        state[1] = missing & ~bit
        return True

    def seen(self, device: str, seq: int) -> bool:
        """True when ``seq`` of ``device`` is in its window as seen; changes nothing.

        With a history store, the hub asks this at accept time and marks a
        seq (:meth:`mark_seen`) only once it is committed (``tantra.commits``).
        Takes no time, so it expires nothing: call :meth:`expire` first, as
        :meth:`mark_seen` does, or an idle device that rebooted is not heard.
        """
        state = self._devices.get(device)
        if state is None:
            return False
        mark = state[0]
        if seq >= mark:
            return seq == mark
        behind = mark - seq
        if behind >= self.size:
            return False
        return not state[1] & (1 << (behind - 1))

    def expire(self, now: float) -> None:
        """Forget devices idle for ``seconds`` (each forgotten once: O(1) amortized)."""
        devices = self._devices
        horizon = now - self.seconds
        while devices:
            state = devices[next(iter(devices))]
            if state[2] >= horizon:
                return
            devices.popitem(last=False)
            self.expired += 1
