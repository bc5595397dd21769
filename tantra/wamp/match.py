"""Topic patterns: which subscriptions (or other observations) match a concrete URI.

Owns: the three WAMP match policies and an index that answers "who observes
this topic?" without scanning every pattern:

- ``exact``: the topic equals the pattern (a dict);
- ``prefix``: the topic starts with the pattern, as a *string* prefix, as the
  WAMP spec defines it (``tantra.reading.farm-1`` also matches
  ``tantra.reading.farm-10.x``; subscribe to ``tantra.reading.farm-1.`` to
  mean "this device only"). A radix (compressed) trie: a node per stored
  prefix and per branching point, edges labelled with whole strings, so a
  lookup costs one step per *stored prefix on the way* plus one string
  comparison of the topic, and memory is about the patterns' own size (a
  character trie took a node per character: 20 prefixes of 60 KB, +203 MiB);
- ``wildcard``: the pattern has as many dot-separated components as the
  topic, and an empty component matches any one component
  (``tantra.reading..soilMoisture``). A component trie whose ``""`` branch is
  the wildcard.

The idea follows Crossbar's ``router/observation.py``: one shared
observation per (pattern, policy) whatever the number of observers, add and
remove report "first/last observer" so the caller knows when an observation
comes and goes, and a reverse index observer → observations makes it cheap
to forget everything of one observer (a session that leaves).

Does not own: URIs' syntax (Autobahn's message parser checks it), ids'
meaning (the caller passes ``new_id``), or what an observer is. Pure: no
Twisted, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

EXACT = "exact"
PREFIX = "prefix"
WILDCARD = "wildcard"
POLICIES = (EXACT, PREFIX, WILDCARD)

Observer = TypeVar("Observer", bound=Hashable)


def matches(pattern: str, policy: str, topic: str) -> bool:
    """The reference definition of matching, one pattern at a time (the index must agree)."""
    if policy == EXACT:
        return topic == pattern
    if policy == PREFIX:
        return topic.startswith(pattern)
    if policy == WILDCARD:
        wanted = pattern.split(".")
        parts = topic.split(".")
        if len(wanted) != len(parts):
            return False
        return all(w in ("", p) for w, p in zip(wanted, parts, strict=True))
    raise ValueError(f"unknown match policy {policy!r}; use one of {', '.join(POLICIES)}")


class Observation(Generic[Observer]):
    """One (pattern, policy) and everyone observing it; its ``id`` is what clients see."""

    __slots__ = ("derived", "id", "observers", "pattern", "policy")

    def __init__(self, id: int, pattern: str, policy: str):
        self.id = id
        self.pattern = pattern
        self.policy = policy
        # A dict, not a set: delivery order follows subscription order, which
        # keeps tests and logs deterministic.
        self.observers: dict[Observer, None] = {}
        #: Whatever a user of the map computed from ``observers`` (e.g. the
        #: broker's tuple of send functions); :class:`ObservationMap` resets it
        #: to None whenever an observer is added or removed.
        self.derived: Any = None

    def __repr__(self) -> str:
        return (
            f"Observation({self.id}, {self.pattern!r}, {self.policy},"
            f" {len(self.observers)} observer(s))"
        )


class _Node(Generic[Observer]):
    """A trie node: children by character (prefix) or by component (wildcard)."""

    __slots__ = ("children", "observation")

    def __init__(self) -> None:
        self.children: dict[str, _Node[Observer]] = {}
        self.observation: Observation[Observer] | None = None


class _Trie(Generic[Observer]):
    """Observations stored along a path of keys; empty branches are pruned on removal."""

    def __init__(self) -> None:
        self.root: _Node[Observer] = _Node()

    def get(self, path: list[str] | str) -> Observation[Observer] | None:
        node = self.root
        for key in path:
            child = node.children.get(key)
            if child is None:
                return None
            node = child
        return node.observation

    def put(self, path: list[str] | str, observation: Observation[Observer]) -> None:
        node = self.root
        for key in path:
            node = node.children.setdefault(key, _Node())
        node.observation = observation

    def delete(self, path: list[str] | str) -> None:
        trail: list[tuple[_Node[Observer], str]] = []
        node = self.root
        for key in path:
            trail.append((node, key))
            node = node.children[key]
        node.observation = None
        while trail and node.observation is None and not node.children:
            parent, key = trail.pop()
            del parent.children[key]
            node = parent


class _RadixNode(Generic[Observer]):
    """A radix trie node: ``label`` is the edge from its parent; children by first character."""

    __slots__ = ("children", "label", "observation")

    def __init__(self, label: str) -> None:
        self.label = label
        self.children: dict[str, _RadixNode[Observer]] = {}
        self.observation: Observation[Observer] | None = None


class _RadixTrie(Generic[Observer]):
    """String prefixes → observations; ``along(topic)``: those prefixing it, shortest first."""

    def __init__(self) -> None:
        self.root: _RadixNode[Observer] = _RadixNode("")

    def get(self, key: str) -> Observation[Observer] | None:
        node = self._find(key)
        return None if node is None else node.observation

    def _find(self, key: str) -> _RadixNode[Observer] | None:
        node, at = self.root, 0
        while at < len(key):
            child = node.children.get(key[at])
            if child is None or not key.startswith(child.label, at):
                return None
            node, at = child, at + len(child.label)
        return node

    def put(self, key: str, observation: Observation[Observer]) -> None:
        node, at = self.root, 0
        while at < len(key):
            child = node.children.get(key[at])
            if child is None:
                leaf: _RadixNode[Observer] = _RadixNode(key[at:])
                node.children[key[at]] = leaf
                node = leaf
                break
            label = child.label
            common = _common_length(label, key, at)
            if common < len(label):  # split the edge where key and label part
                middle: _RadixNode[Observer] = _RadixNode(label[:common])
                child.label = label[common:]
                middle.children[child.label[0]] = child
                node.children[key[at]] = middle
                child = middle
            node, at = child, at + common
        node.observation = observation

    def delete(self, key: str) -> None:
        trail: list[_RadixNode[Observer]] = []
        node, at = self.root, 0
        while at < len(key):
            trail.append(node)
            node = node.children[key[at]]
            at += len(node.label)
        node.observation = None
        # Prune: drop an empty leaf; merge a node left with one child into it.
        while trail and node.observation is None and len(node.children) <= 1:
            parent = trail.pop()
            if not node.children:
                del parent.children[node.label[0]]
            else:
                [only] = node.children.values()
                only.label = node.label + only.label
                parent.children[only.label[0]] = only
            node = parent

    def along(self, topic: str) -> Iterator[Observation[Observer]]:
        node, at = self.root, 0
        while True:
            if node.observation is not None:
                yield node.observation
            if at >= len(topic):
                return
            child = node.children.get(topic[at])
            if child is None or not topic.startswith(child.label, at):
                return
            node, at = child, at + len(child.label)

    def node_count(self) -> int:
        count, stack = 0, [self.root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children.values())
        return count


def _common_length(label: str, key: str, at: int) -> int:
    """Length of the common start of ``label`` and ``key[at:]`` (at least 1: same first char)."""
    limit = min(len(label), len(key) - at)
    n = 1
    while n < limit and label[n] == key[at + n]:
        n += 1
    return n


class ObservationMap(Generic[Observer]):
    """Observations by pattern and policy, with fast lookup of those matching a topic."""

    def __init__(self, new_id: Callable[[], int]):
        self._new_id = new_id
        self._exact: dict[str, Observation[Observer]] = {}
        self._prefix: _RadixTrie[Observer] = _RadixTrie()
        self._wildcard: _Trie[Observer] = _Trie()
        self._by_id: dict[int, Observation[Observer]] = {}
        self._by_observer: dict[Observer, dict[int, Observation[Observer]]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, observation_id: int) -> Observation[Observer] | None:
        return self._by_id.get(observation_id)

    def find(self, pattern: str, policy: str) -> Observation[Observer] | None:
        """The observation of exactly this pattern and policy, if anyone observes it."""
        if policy == EXACT:
            return self._exact.get(pattern)
        if policy == PREFIX:
            return self._prefix.get(pattern)
        if policy == WILDCARD:
            return self._wildcard.get(pattern.split("."))
        raise ValueError(f"unknown match policy {policy!r}")

    def of_observer(self, observer: Observer) -> list[Observation[Observer]]:
        return list(self._by_observer.get(observer, {}).values())

    def count_of(self, observer: Observer) -> int:
        """How many observations ``observer`` is part of (without copying them)."""
        return len(self._by_observer.get(observer, ()))

    def add(
        self, pattern: str, policy: str, observer: Observer
    ) -> tuple[Observation[Observer], bool, bool]:
        """Observe ``pattern``; returns (observation, it is new, this observer is new to it)."""
        observation = self.find(pattern, policy)
        created = observation is None
        if observation is None:
            observation = Observation(self._new_id(), pattern, policy)
            self._store(observation)
        first_time = observer not in observation.observers
        if first_time:
            observation.observers[observer] = None
            observation.derived = None
        self._by_observer.setdefault(observer, {})[observation.id] = observation
        return observation, created, first_time

    def remove(self, observation: Observation[Observer], observer: Observer) -> bool:
        """Stop ``observer`` observing; True when that removed the observation's last observer."""
        if observer not in observation.observers:
            return False
        del observation.observers[observer]
        observation.derived = None
        mine = self._by_observer.get(observer)
        if mine is not None:
            mine.pop(observation.id, None)
            if not mine:
                del self._by_observer[observer]
        if observation.observers:
            return False
        self._forget(observation)
        return True

    def remove_observer(self, observer: Observer) -> list[Observation[Observer]]:
        """Forget every observation of ``observer``; returns those it was part of."""
        mine = list(self._by_observer.get(observer, {}).values())
        for observation in mine:
            self.remove(observation, observer)
        return mine

    def matching(self, topic: str) -> list[Observation[Observer]]:
        """Every observation that matches ``topic``: exact, then prefixes (shortest first),
        then wildcards."""
        found: list[Observation[Observer]] = []
        exact = self._exact.get(topic)
        if exact is not None:
            found.append(exact)

        found.extend(self._prefix.along(topic))

        if self._wildcard.root.children:
            frontier = [self._wildcard.root]
            for part in topic.split("."):
                step: list[_Node[Observer]] = []
                for candidate in frontier:
                    exact_child = candidate.children.get(part)
                    if exact_child is not None:
                        step.append(exact_child)
                    if part != "":
                        any_child = candidate.children.get("")
                        if any_child is not None:
                            step.append(any_child)
                frontier = step
                if not frontier:
                    break
            found.extend(n.observation for n in frontier if n.observation is not None)
        return found

    def _store(self, observation: Observation[Observer]) -> None:
        self._by_id[observation.id] = observation
        if observation.policy == EXACT:
            self._exact[observation.pattern] = observation
        elif observation.policy == PREFIX:
            self._prefix.put(observation.pattern, observation)
        elif observation.policy == WILDCARD:
            self._wildcard.put(observation.pattern.split("."), observation)
        else:
            raise ValueError(f"unknown match policy {observation.policy!r}")

    def _forget(self, observation: Observation[Observer]) -> None:
        del self._by_id[observation.id]
        if observation.policy == EXACT:
            del self._exact[observation.pattern]
        elif observation.policy == PREFIX:
            self._prefix.delete(observation.pattern)
        else:
            self._wildcard.delete(observation.pattern.split("."))
