"""tantra.transports.compact: per-connection attributes kept once on the class."""

from __future__ import annotations

import sys

from tantra.transports import compact


class Conn:
    pass


def _conn(**attrs):
    obj = Conn.__new__(Conn)
    obj.__dict__.update(attrs)
    return obj


def test_share_sets_only_missing_names():
    class C:
        kept = "class's own"

    compact.share(C, {"kept": "other", "flag": False})
    assert C.kept == "class's own"
    assert C.flag is False


def test_compact_drops_defaults_and_keeps_what_differs():
    class C:
        pass

    compact.share(C, {"a": None, "b": False, "n": 0, "data": b""})
    obj = C()
    obj.__dict__.update(a=None, b=True, n=0, data=b"", own="x")
    assert compact.compact(obj, ["a", "b", "n", "data", "own"]) == 3
    assert obj.__dict__ == {"b": True, "own": "x"}
    assert (obj.a, obj.b, obj.n, obj.data) == (None, True, 0, b"")
    obj.n = 5  # an assignment goes back on the instance only
    assert obj.n == 5 and C.n == 0  # type: ignore[attr-defined]


def test_compact_does_not_confuse_equal_values_of_other_types():
    class C:
        pass

    compact.share(C, {"flag": False, "items": []})
    obj = C()
    obj.__dict__.update(flag=0, items=[])  # 0 == False, [] == [] but not the same
    assert compact.compact(obj, ["flag", "items"]) == 0
    assert obj.__dict__ == {"flag": 0, "items": []}


def test_compact_leaves_names_the_class_has_as_descriptors():
    class C:
        def method(self):
            return "method"

    obj = C()
    obj.__dict__["method"] = C.__dict__["method"]
    assert compact.compact(obj, ["method", "absent"]) == 0


def test_compact_really_shrinks_the_dict():
    names = [f"attr{i}" for i in range(90)]

    class C:
        pass

    compact.share(C, dict.fromkeys(names))
    obj = C()
    obj.__dict__.update(dict.fromkeys(names))
    obj.__dict__["own"] = 1
    before = sys.getsizeof(obj.__dict__)
    compact.compact(obj, names)
    assert obj.__dict__ == {"own": 1}
    assert sys.getsizeof(obj.__dict__) < before / 4


def test_with_options_puts_the_factory_values_on_a_subclass():
    class Factory:
        timeout = 5
        accept = staticmethod(lambda offers: ("accepted", offers))

    class Proto:
        pass

    cls = compact.with_options(Proto, Factory(), ["timeout", "accept"])
    assert issubclass(cls, Proto) and cls.__name__ == "Proto"
    p = cls()
    assert p.timeout == 5
    # a callable option is called as the factory's, not bound to the connection
    assert p.accept("offer") == ("accepted", "offer")
    other = compact.with_options(
        Proto, type("F2", (), {"timeout": 9, "accept": None})(), ["timeout"]
    )
    assert other().timeout == 9 and p.timeout == 5
