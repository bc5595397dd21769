"""Reader scopes: which devices and sensors a token may see, and their meeting with filters.

A scope is a list of patterns ``DEVICE/SENSOR`` (``farm-1/*``, ``*/temp*``,
``greenhouse-?/humidity``; a bare ``DEVICE`` means ``DEVICE/*``). ``*`` is any
run of name characters, ``?`` one; nothing else is special (names cannot hold
``*``, ``?``, ``/`` or any MQTT/WAMP wildcard, see ``tantra.security.tokens``).
A reading is visible when any pattern matches both its device and sensor.

Owns: parsing patterns, :meth:`Scope.allows`, and :meth:`Scope.narrow`, which
turns a subscriber's filter into the smallest hub filter that still covers
scope ∩ filter, plus whether readings must still be checked one by one (when
the scope has wildcards). Pure: no Twisted, no I/O; hypothesis-tested.

Does not own: the hub's filters (``tantra.hub.Filter``) or delivery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import attrs

from tantra.hub import Filter

_GLOB = re.compile(r"[A-Za-z0-9_*?-]{1,64}")
#: Distinct (device, sensor) answers remembered per scope before the memo starts over.
MEMO_LIMIT = 4096


class ScopeError(ValueError):
    """A pattern that is not ``DEVICE/SENSOR`` globs of name characters, ``*`` and ``?``."""


@attrs.frozen
class Pattern:
    device: str
    sensor: str

    @property
    def exact_device(self) -> bool:
        return not _is_glob(self.device)

    def allows(self, device: str, sensor: str) -> bool:
        return fnmatchcase(device, self.device) and fnmatchcase(sensor, self.sensor)

    def __str__(self) -> str:
        return f"{self.device}/{self.sensor}"


def _is_glob(text: str) -> bool:
    return "*" in text or "?" in text


def parse_scope(text: str) -> Pattern:
    """``DEVICE/SENSOR`` (or ``DEVICE``) as a :class:`Pattern`; ScopeError otherwise."""
    if not isinstance(text, str):
        raise ScopeError(f"scope {text!r} must be a string DEVICE/SENSOR")
    parts = text.split("/")
    if len(parts) == 1:
        parts.append("*")
    if len(parts) != 2 or not all(_GLOB.fullmatch(part) for part in parts):
        raise ScopeError(
            f"scope {text!r} must be DEVICE/SENSOR: names of A-Z a-z 0-9 _ - with * and ? globs"
        )
    return Pattern(parts[0], parts[1])


class Scope:
    """What one token may see: the union of its patterns."""

    __slots__ = ("_memo", "_restrict_batch", "everything", "patterns")

    def __init__(self, patterns: Iterable[Pattern]):
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self.everything = any(p.device == "*" and p.sensor == "*" for p in self.patterns)
        self._memo: dict[tuple[str, str], bool] = {}
        #: ``tantra.security.readers``: this scope's batch restriction (one per scope).
        self._restrict_batch: Callable[..., Any] | None = None

    @classmethod
    def all(cls) -> Scope:
        """An admin's scope: everything."""
        return cls([Pattern("*", "*")])

    @classmethod
    def of_device(cls, device: str) -> Scope:
        """A device token sees its own device (its own readings, over WAMP say)."""
        return cls([Pattern(device, "*")])

    def __repr__(self) -> str:
        return f"Scope({', '.join(map(str, self.patterns))})"

    def allows(self, device: str, sensor: str) -> bool:
        if self.everything:
            return True
        key = (device, sensor)
        answer = self._memo.get(key)
        if answer is None:
            answer = any(p.allows(device, sensor) for p in self.patterns)
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = answer
        return answer

    def allows_uncached(self, device: str, sensor: str) -> bool:
        """:meth:`allows` without the memo: safe on any thread (the history's read pool)."""
        return self.everything or any(p.allows(device, sensor) for p in self.patterns)

    def allows_device(self, device: str) -> bool:
        """Some sensor of ``device`` may be visible."""
        return self.everything or any(fnmatchcase(device, p.device) for p in self.patterns)

    def restrict(self, readings: Sequence) -> list:
        """The readings (anything with ``device`` and ``sensor``) this scope allows."""
        if self.everything:
            return list(readings)
        allows = self.allows
        return [r for r in readings if allows(r.device, r.sensor)]

    def narrow(self, filter_: Filter) -> tuple[Filter | None, bool]:
        """The hub filter for ``filter_`` within this scope, and whether to check each reading.

        Returns ``(None, False)`` when nothing can be visible. Otherwise a
        filter that matches every reading in scope ∩ filter (and possibly
        more), with ``True`` when readings must still pass :meth:`allows`.
        The filter is as narrow as exact names allow, so the hub's routing
        index does the work: a scope of exact devices with ``/*`` sensors
        needs no per-reading check at all.
        """
        if self.everything:
            return filter_, False
        patterns = self.patterns
        devices = filter_.devices
        if devices is not None:
            devices = frozenset(d for d in devices if self.allows_device(d))
            if not devices:
                return None, False
        elif all(p.exact_device for p in patterns):
            devices = frozenset(p.device for p in patterns)
        sensors = filter_.sensors
        if sensors is not None:
            sensors = frozenset(
                s for s in sensors if any(fnmatchcase(s, p.sensor) for p in patterns)
            )
            if not sensors:
                return None, False
        narrowed = Filter.of(devices or (), sensors or ())
        # Exact when every pattern is "an exact device, any sensor" and the
        # filter's devices are all among them: then the filter says it all.
        exact = (
            narrowed.devices is not None
            and all(p.exact_device and p.sensor == "*" for p in patterns)
            and narrowed.devices <= {p.device for p in patterns}
        )
        return narrowed, not exact
