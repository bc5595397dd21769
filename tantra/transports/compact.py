"""Per-connection memory: an open WebSocket connection keeps only what differs.

Why: Autobahn gives every connection about a hundred instance attributes
(its state flags, timers, close codes, and a copy of every factory option),
which needs a 3.3 KB ``__dict__`` per connection: 40 % of what an idle
dashboard costs the hub. Most of them hold the same value in every open
connection (``None``, ``False``, the factory's options). Kept once on the
class instead, a connection's dict shrinks to about 40 entries (832 bytes).
Issue 14 asks the hub to hold 10,000 idle dashboards in no more memory per
connection than the Node relay.

The factory options go to a protocol class of each factory's own
(:func:`with_options`): Autobahn copies an option onto a connection only when
the connection has none, so with the options on the class no connection
holds a copy, and two factories with different options stay apart.

How: :func:`share` puts a default on the class for each name (once; a class
that already has the name keeps its own); :func:`compact` then drops every
instance attribute whose value *is* that default (or, for a bool, int,
float, bytes or str, equals it with the same type), and rebuilds the dict so
it really shrinks (a dict never shrinks when keys are deleted). Reads of a
dropped attribute find the same value on the class; a later assignment puts
it back on the instance. Only names that Autobahn or Tantra set on every
connection before it opens may be given (so no code can tell "unset" from
"default"), and none of them is ever deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_SCALARS = (bool, int, float, bytes, str)
_MISSING = object()


def with_options(cls: type, factory: Any, names: Iterable[str]) -> type:
    """A subclass of ``cls`` holding ``factory``'s value of each of ``names``.

    For options a connection would otherwise copy from its factory one by one
    (Autobahn copies an option only when the connection has none, so on the
    class each factory's connections share its values). Callables are kept
    as static methods, so a connection calls them as the factory's.
    """
    attrs = {}
    for name in names:
        value = getattr(factory, name)
        attrs[name] = staticmethod(value) if callable(value) else value
    attrs["__module__"] = cls.__module__
    attrs["__qualname__"] = cls.__qualname__
    return type(cls.__name__, (cls,), attrs)


def share(cls: type, defaults: Mapping[str, Any]) -> None:
    """Give ``cls`` a class attribute for each of ``defaults`` it does not have yet."""
    for name, value in defaults.items():
        if not hasattr(cls, name):
            setattr(cls, name, value)


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    return type(value) is type(default) and type(value) in _SCALARS and value == default


def compact(obj: Any, names: Iterable[str]) -> int:
    """Drop ``obj``'s attributes among ``names`` that equal the class's; rebuild its dict.

    Returns how many were dropped. Names the class has no value for, or
    whose value on the class is a descriptor (a method, a property), stay.
    """
    d = obj.__dict__
    cls = type(obj)
    dropped = 0
    for name in names:
        value = d.get(name, _MISSING)
        if value is _MISSING:
            continue
        default = getattr(cls, name, _MISSING)
        if default is _MISSING or hasattr(type(default), "__get__"):
            continue
        if _same(value, default):
            del d[name]
            dropped += 1
    if dropped:
        obj.__dict__ = dict(d.items())  # item by item: sized to what is left
    return dropped
