"""Which ``(device, seq)`` pairs the hub has already accepted, within a bounded window.

Owns: the de-duplication window (the last ``size`` sequence numbers per device
that were seen within the last ``seconds``) and its memory bound (at most
``max_devices`` devices are tracked; the least recently active is forgotten
first). Pure: the caller passes the time.

Why a time limit as well as a count: a device that reboots and counts from
zero again must not see its fresh readings taken for old ones forever.
"""

from __future__ import annotations


class SeqWindow:
    """Remembers recent sequence numbers per device to spot re-sent readings."""

    def __init__(self, *, size: int = 1024, seconds: float = 300.0, max_devices: int = 100_000):
        if size < 1 or seconds <= 0 or max_devices < 1:
            raise ValueError("size, seconds and max_devices must be positive")
        self.size = size
        self.seconds = seconds
        self.max_devices = max_devices
        # device -> {seq: time first seen}; both dicts keep insertion order,
        # which is age order, so the oldest entries are always at the front.
        self._devices: dict[str, dict[int, float]] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def is_duplicate(self, device: str, seq: int, now: float) -> bool:
        """Record ``seq`` for ``device``; True when it was already in the window."""
        seen = self._devices.pop(device, None)
        if seen is None:
            seen = {}
            if len(self._devices) >= self.max_devices:
                del self._devices[next(iter(self._devices))]
        self._devices[device] = seen  # most recently active device goes last
        horizon = now - self.seconds
        while seen and seen[next(iter(seen))] < horizon:
            del seen[next(iter(seen))]
        if seq in seen:
            return True
        seen[seq] = now
        if len(seen) > self.size:
            del seen[next(iter(seen))]
        return False
