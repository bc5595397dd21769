"""tantra.wamp.match: the reference definition, the index agreeing with it, and bookkeeping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tantra.wamp.match import EXACT, POLICIES, PREFIX, WILDCARD, ObservationMap, matches


def new_map() -> ObservationMap[str]:
    return ObservationMap(itertools.count(1).__next__)


@pytest.mark.parametrize(
    ("pattern", "policy", "topic", "expected"),
    [
        ("a.b", EXACT, "a.b", True),
        ("a.b", EXACT, "a.bc", False),
        ("a.b", EXACT, "a", False),
        ("tantra.reading.farm-1", PREFIX, "tantra.reading.farm-1.soil", True),
        # WAMP prefix matching is by string, not by component.
        ("tantra.reading.farm-1", PREFIX, "tantra.reading.farm-10.soil", True),
        ("tantra.reading.farm-1.", PREFIX, "tantra.reading.farm-10.soil", False),
        ("tantra.reading.farm-1", PREFIX, "tantra.reading.farm-1", True),
        ("tantra.reading.farm-1", PREFIX, "tantra.reading", False),
        ("", PREFIX, "anything", True),
        ("tantra.reading..soil", WILDCARD, "tantra.reading.farm-1.soil", True),
        ("tantra.reading..soil", WILDCARD, "tantra.reading.farm-1.rpm", False),
        ("tantra.reading..soil", WILDCARD, "tantra.reading.farm-1.soil.x", False),
        ("tantra.reading..", WILDCARD, "tantra.reading.a.b", True),
        ("..", WILDCARD, "a.b.c", True),
        ("..", WILDCARD, "a.b", False),
        ("a.b", WILDCARD, "a.b", True),
    ],
)
def test_reference_definition(pattern, policy, topic, expected):
    assert matches(pattern, policy, topic) is expected
    observations = new_map()
    observations.add(pattern, policy, "s1")
    assert bool(observations.matching(topic)) is expected


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown match policy"):
        matches("a", "regex", "a")
    with pytest.raises(ValueError):
        new_map().add("a", "regex", "s1")


def test_one_observation_per_pattern_and_policy_with_first_and_last_flags():
    observations = new_map()
    first, created, new_observer = observations.add("a.b", EXACT, "s1")
    assert (created, new_observer) == (True, True)
    again, created, new_observer = observations.add("a.b", EXACT, "s2")
    assert again is first and (created, new_observer) == (False, True)
    same, created, new_observer = observations.add("a.b", EXACT, "s2")
    assert same is first and (created, new_observer) == (False, False)
    other, created, _ = observations.add("a.b", PREFIX, "s1")
    assert other is not first and created
    assert list(first.observers) == ["s1", "s2"]

    assert observations.remove(first, "s1") is False
    assert observations.remove(first, "s1") is False  # not observing any more
    assert observations.remove(first, "s2") is True
    assert observations.get(first.id) is None
    assert observations.find("a.b", EXACT) is None
    assert observations.matching("a.b") == [other]


def test_remove_observer_forgets_everything_and_prunes_the_tries():
    observations = new_map()
    for pattern, policy in [("a.b", EXACT), ("a.", PREFIX), ("a..c", WILDCARD)]:
        observations.add(pattern, policy, "s1")
    kept, _, _ = observations.add("a.", PREFIX, "s2")
    gone = observations.remove_observer("s1")
    assert {o.pattern for o in gone} == {"a.b", "a.", "a..c"}
    assert observations.of_observer("s1") == []
    assert observations.matching("a.b.c") == [kept]
    assert len(observations) == 1
    observations.remove_observer("s2")
    assert len(observations) == 0
    # Nothing is left behind in the tries.
    assert observations._prefix.root.children == {}
    assert observations._wildcard.root.children == {}


def test_matching_lists_exact_then_prefixes_shortest_first_then_wildcards():
    observations = new_map()
    w, _, _ = observations.add("t..c", WILDCARD, "s")
    p2, _, _ = observations.add("t.b", PREFIX, "s")
    p1, _, _ = observations.add("t.", PREFIX, "s")
    e, _, _ = observations.add("t.b.c", EXACT, "s")
    assert observations.matching("t.b.c") == [e, p1, p2, w]


# -- property: the index agrees with the reference definition ---------------------

component = st.sampled_from(["a", "b", "ab", "farm-1", "farm-10"])
topics = st.lists(component, min_size=1, max_size=4).map(".".join)
wildcard_patterns = st.lists(st.one_of(component, st.just("")), min_size=1, max_size=4).map(
    ".".join
)
prefix_patterns = topics.flatmap(lambda t: st.integers(0, len(t)).map(lambda n: t[:n]))
patterns = st.one_of(
    st.tuples(topics, st.just(EXACT)),
    st.tuples(prefix_patterns, st.just(PREFIX)),
    st.tuples(wildcard_patterns, st.just(WILDCARD)),
)
operations = st.lists(
    st.tuples(st.booleans(), patterns, st.sampled_from(["s1", "s2", "s3"])), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(operations, st.lists(topics, min_size=1, max_size=8))
def test_index_agrees_with_reference_after_any_adds_and_removes(ops, probe_topics):
    observations = new_map()
    model: dict[tuple[str, str], set[str]] = {}
    for is_add, (pattern, policy), observer in ops:
        if is_add:
            observations.add(pattern, policy, observer)
            model.setdefault((pattern, policy), set()).add(observer)
        else:
            observation = observations.find(pattern, policy)
            was_last = observation is not None and observations.remove(observation, observer)
            members = model.get((pattern, policy), set())
            expected_last = members == {observer}
            members.discard(observer)
            if not members:
                model.pop((pattern, policy), None)
            assert was_last is expected_last
    for topic in probe_topics:
        found = {(o.pattern, o.policy): set(o.observers) for o in observations.matching(topic)}
        expected = {key: members for key, members in model.items() if matches(*key, topic)}
        assert found == expected
        assert len(observations.matching(topic)) == len(found)  # no observation twice
    assert len(observations) == len(model)


@given(patterns, topics)
def test_policies_are_the_only_ones(pattern_policy, topic):
    pattern, policy = pattern_policy
    assert policy in POLICIES
    matches(pattern, policy, topic)  # never raises for a known policy
