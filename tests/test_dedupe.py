"""The de-duplication window: count bound, time bound, device bound."""

from hypothesis import given
from hypothesis import strategies as st

from tantra.dedupe import SeqWindow


def test_repeat_inside_window_is_duplicate():
    window = SeqWindow(size=3, seconds=10)
    assert not window.is_duplicate("d", 1, 0.0)
    assert window.is_duplicate("d", 1, 1.0)
    assert not window.is_duplicate("e", 1, 1.0), "windows are per device"


def test_count_bound_forgets_the_oldest():
    window = SeqWindow(size=3, seconds=1000)
    for seq in (1, 2, 3, 4):
        assert not window.is_duplicate("d", seq, 0.0)
    assert not window.is_duplicate("d", 1, 0.0), "1 fell out of a window of 3"
    assert window.is_duplicate("d", 4, 0.0)


def test_time_bound_lets_a_rebooted_device_start_over():
    window = SeqWindow(size=100, seconds=10)
    assert not window.is_duplicate("d", 0, 0.0)
    assert window.is_duplicate("d", 0, 9.0)
    assert not window.is_duplicate("d", 0, 20.0)


def test_device_bound_forgets_the_least_recently_active():
    window = SeqWindow(size=10, seconds=100, max_devices=2)
    window.is_duplicate("a", 1, 0.0)
    window.is_duplicate("b", 1, 0.0)
    window.is_duplicate("a", 2, 0.0)  # a is now the most recent
    window.is_duplicate("c", 1, 0.0)  # evicts b
    assert len(window) == 2
    assert window.is_duplicate("a", 1, 0.0)
    assert not window.is_duplicate("b", 1, 0.0)


@given(st.lists(st.integers(0, 50), max_size=200))
def test_matches_a_model_of_the_last_n_distinct(seqs):
    size = 8
    window = SeqWindow(size=size, seconds=1e9)
    remembered: list[int] = []
    for seq in seqs:
        expected = seq in remembered
        assert window.is_duplicate("d", seq, 0.0) == expected
        if not expected:
            remembered.append(seq)
            remembered = remembered[-size:]
