"""The de-duplication window: per-device high-water mark + bitmap, idle expiry, device bound."""

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from tantra.dedupe import SeqWindow


def test_repeat_inside_window_is_duplicate():
    window = SeqWindow(size=3, seconds=10)
    assert not window.is_duplicate("d", 1, 0.0)
    assert window.is_duplicate("d", 1, 1.0)
    assert not window.is_duplicate("e", 1, 1.0), "windows are per device"


def test_out_of_order_retries_inside_the_window_are_caught():
    window = SeqWindow(size=8, seconds=10)
    for seq in (10, 12, 15):
        assert not window.is_duplicate("d", seq, 0.0)
    assert not window.is_duplicate("d", 11, 0.0), "a gap filled late is new"
    assert [window.is_duplicate("d", seq, 0.0) for seq in (10, 11, 12, 13, 14, 15)] == [
        True, True, True, False, False, True,
    ]  # fmt: skip


def test_a_seq_below_the_window_starts_it_over():
    """A counter that restarted (reboot, wrap): its readings are heard at once."""
    window = SeqWindow(size=3, seconds=1000)
    for seq in (1, 2, 3, 4):
        assert not window.is_duplicate("d", seq, 0.0)
    assert window.is_duplicate("d", 2, 0.0), "2 is inside the window 2..4"
    assert not window.is_duplicate("d", 1, 0.0), "1 is below it: a new counter"
    assert [window.is_duplicate("d", seq, 0.0) for seq in (1, 2, 3)] == [True, False, False]


def test_a_device_idle_for_seconds_is_forgotten():
    window = SeqWindow(size=100, seconds=10)
    assert not window.is_duplicate("d", 0, 0.0)
    assert window.is_duplicate("d", 0, 9.0)
    assert window.is_duplicate("d", 0, 18.0), "activity at 9 s keeps it another 10 s"
    assert not window.is_duplicate("d", 0, 28.5)
    assert window.expired == 1


def test_expiry_is_driven_by_any_device_and_forgets_idle_ones_in_order():
    window = SeqWindow(size=10, seconds=10)
    for index, device in enumerate("abc"):
        window.is_duplicate(device, 1, float(index))
    window.expire(11.5)  # a and b (last active at 0 and 1) are older than 10 s
    assert len(window) == 1 and window.expired == 2
    assert window.is_duplicate("c", 1, 11.5)


def test_device_bound_forgets_the_least_recently_active_and_counts_it():
    window = SeqWindow(size=10, seconds=100, max_devices=2)
    window.is_duplicate("a", 1, 0.0)
    window.is_duplicate("b", 1, 0.0)
    window.is_duplicate("a", 2, 0.0)  # a is now the most recent
    window.is_duplicate("c", 1, 0.0)  # evicts b
    assert len(window) == 2 and window.evicted == 1
    assert window.is_duplicate("a", 1, 0.0)
    assert not window.is_duplicate("b", 1, 0.0)


def test_mark_seen_rebuilds_a_window():
    """The history store will replay accepted (device, seq) pairs at start-up."""
    window = SeqWindow(size=16, seconds=100)
    assert window.mark_seen("d", 5, 0.0) and window.mark_seen("d", 7, 0.0)
    assert not window.mark_seen("d", 7, 0.0)
    assert window.is_duplicate("d", 5, 1.0) and not window.is_duplicate("d", 6, 1.0)


def test_memory_per_device_is_a_few_hundred_bytes_whatever_the_window_size():
    """Item 6: the old window cost ~37 KB per device that sent 1024 seqs."""
    window = SeqWindow(size=1024, seconds=300)
    names = [f"device-{index:05d}" for index in range(100)]  # allocated before measuring
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for seq in range(0, 2048, 2):  # every other seq: the largest bitmap there is
            for name in names:
                window.is_duplicate(name, seq, 0.0)
        per_device = (tracemalloc.get_traced_memory()[0] - base) / len(names)
    finally:
        tracemalloc.stop()
    assert per_device < 400, per_device


class ReferenceWindow:
    """The same rules over plain sets: the window is the mark and size - 1 seqs below."""

    def __init__(self, size: int):
        self.size = size
        self.mark: int | None = None
        self.seen: set[int] = set()

    def is_duplicate(self, seq: int) -> bool:
        if self.mark is None or seq <= self.mark - self.size:
            self.mark, self.seen = seq, {seq}
            return False
        if seq in self.seen:
            return True
        self.seen.add(seq)
        self.mark = max(self.mark, seq)
        self.seen = {s for s in self.seen if s > self.mark - self.size}
        return False


@given(st.integers(1, 12), st.lists(st.integers(0, 40), max_size=200))
def test_matches_a_reference_model(size, seqs):
    window = SeqWindow(size=size, seconds=1e9)
    reference = ReferenceWindow(size)
    for seq in seqs:
        assert window.is_duplicate("d", seq, 0.0) == reference.is_duplicate(seq), seq


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 30)), max_size=150))
def test_devices_never_share_a_window(events):
    window = SeqWindow(size=8, seconds=1e9)
    references = {device: ReferenceWindow(8) for device in "abcd"}
    for device, seq in events:
        assert window.is_duplicate(device, seq, 0.0) == references[device].is_duplicate(seq)


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 40)), max_size=20),
        max_size=20,
    ),
    st.integers(1, 4),
)
def test_marking_a_turn_at_once_equals_marking_key_by_key(turns, max_devices):
    # A commit marks a whole turn's keys with one expiry (issue 14): the same
    # window, counters and devices as marking each key alone at that time.
    one = SeqWindow(size=8, seconds=2.5, max_devices=max_devices)
    many = SeqWindow(size=8, seconds=2.5, max_devices=max_devices)
    probes = [(d, s) for d in "abcde" for s in range(42)]
    for now, keys in enumerate(turns):
        for device, seq in keys:
            one.mark_seen(device, seq, float(now))
        many.mark_seen_many(iter(keys), float(now))
        assert [many.seen(*k) for k in probes] == [one.seen(*k) for k in probes]
        assert (len(many), many.expired, many.evicted) == (len(one), one.expired, one.evicted)
