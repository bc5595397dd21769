"""The history API's pure parsers and bucket maths, with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tantra.web import params
from tantra.web.params import BadParameter

NOW = 1_764_000_000_123
times = st.integers(min_value=0, max_value=params.MAX_MS)
steps = st.integers(min_value=1, max_value=400 * 24 * 3600 * 1000)


@given(times)
def test_ms_since_the_epoch_parse_as_themselves(ms):
    assert params.parse_time("from", str(ms), NOW) == ms


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)))
def test_iso_8601_with_or_without_a_zone_is_utc(moment):
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    expected = round(moment.replace(tzinfo=UTC).timestamp() * 1000)
    assert params.parse_time("from", moment.isoformat(), NOW) == expected
    assert params.parse_time("from", moment.isoformat() + "Z", NOW) == expected
    shifted = moment.replace(tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    assert params.parse_time("from", shifted.isoformat(), NOW) == expected


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(sorted(params.UNITS_MS)))
def test_relative_times_count_back_from_now(amount, unit):
    back = amount * params.UNITS_MS[unit]
    text = f"-{amount}{unit}"
    if back > NOW:
        with pytest.raises(BadParameter, match="outside"):
            params.parse_time("from", text, NOW)
    else:
        assert params.parse_time("from", text, NOW) == NOW - back


@given(st.text(max_size=30))
def test_any_text_is_a_time_or_a_bad_parameter_naming_it(text):
    try:
        value = params.parse_time("to", text, NOW)
    except BadParameter as error:
        assert error.name == "to" and str(error).startswith("to: ")
    else:
        assert 0 <= value <= params.MAX_MS


@given(times, times, steps)
def test_aligned_ranges_are_whole_buckets_covering_the_request(a, b, step):
    start, end = min(a, b), max(a, b)
    first, last = params.align(start, end, step)
    assert first % step == 0 and last % step == 0
    assert first <= start < first + step
    assert end <= last < end + step or (start == end and last == first + step)
    assert params.bucket_count(start, end, step) == (last - first) // step >= 1


@given(times, times, st.integers(min_value=1, max_value=params.MAX_BUCKETS))
def test_auto_step_is_the_smallest_nice_step_within_the_point_budget(a, b, points):
    start, end = min(a, b), max(a, b)
    step = params.auto_step(start, end, points)
    assert params.bucket_count(start, end, step) <= points
    smaller = [s for s in params.NICE_STEPS if s < step]
    assert all(params.bucket_count(start, end, s) > points for s in smaller)


@given(st.sampled_from(["asc", "desc"]), times, st.integers(min_value=0, max_value=2**62))
def test_cursors_round_trip_and_refuse_the_other_order(order, ts, id_):
    cursor = params.encode_cursor(order, ts, id_)
    assert params.decode_cursor(cursor, order) == (ts, id_)
    other = "desc" if order == "asc" else "asc"
    with pytest.raises(BadParameter, match=f"continues order={order}"):
        params.decode_cursor(cursor, other)


@given(st.text(max_size=40))
def test_any_cursor_text_decodes_or_is_a_bad_cursor(text):
    try:
        params.decode_cursor(text, "asc")
    except BadParameter as error:
        assert error.name == "cursor"


@given(st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), max_size=5))
def test_names_repeat_or_come_comma_separated_without_duplicates(names):
    expected = tuple(dict.fromkeys(names))
    assert params.parse_names("device", names) == expected
    if names:
        assert params.parse_names("device", [",".join(names)]) == expected


def test_at_most_max_names_values_counting_repeats_as_the_openapi_document_says():
    assert params.parse_names("device", ["a"] * params.MAX_NAMES) == ("a",)
    with pytest.raises(BadParameter, match=f"at most {params.MAX_NAMES} values"):
        params.parse_names("device", ["a"] * (params.MAX_NAMES + 1))
    with pytest.raises(BadParameter, match=f"at most {params.MAX_NAMES} values"):
        params.parse_names("device", ["a,b"] * (params.MAX_NAMES // 2 + 1))


def test_a_flood_of_distinct_names_is_refused_by_its_count_in_every_form():
    """10^5 distinct names: one comma list, repeated values, or a whole query; one 400."""
    names = [f"d{i}" for i in range(100_000)]
    for values in ([",".join(names)], names):
        with pytest.raises(BadParameter, match=f"device: at most {params.MAX_NAMES} values"):
            params.parse_names("device", values)
    with pytest.raises(BadParameter, match=f"sensor: at most {params.MAX_NAMES} values"):
        params.readings_query({"sensor": names}, NOW)
    with pytest.raises(BadParameter, match=f"device: at most {params.MAX_NAMES} values"):
        params.aggregate_query({"device": [",".join(names)]}, NOW)


@pytest.mark.parametrize("text", ["", "1", "m", "-1m", "1.5h", "1y", "0s", "1 m"])
def test_durations_need_a_positive_count_and_a_unit(text):
    with pytest.raises(BadParameter, match="every"):
        params.parse_duration("every", text)
