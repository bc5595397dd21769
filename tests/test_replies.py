"""Reply wording, order and the UDP byte budget."""

from hypothesis import given
from hypothesis import strategies as st

from tantra.model import Rejection
from tantra.replies import encode, fit_to_budget, reply_messages

ERROR = Rejection("invalid_reading", "value must be a finite number or boolean", 1)


def test_ack_first_then_errors():
    assert reply_messages([4, 5], [ERROR], is_batch=True) == [{"ack": [4, 5]}, ERROR.to_dict()]
    assert reply_messages([4], [], is_batch=False) == [{"ack": 4}]
    assert reply_messages([], [], is_batch=True) == []


def test_budget_shrinks_errors_before_dropping_them():
    messages = [{"ack": 4}, ERROR.to_dict()]
    full = sum(len(encode(m)) for m in messages)
    assert fit_to_budget(messages, full) == ([encode(m) for m in messages], 0)
    sent, dropped = fit_to_budget(messages, len(b'{"ack":4}') + 40)
    assert sent == [b'{"ack":4}', b'{"error":"invalid_reading","index":1}']
    sent, dropped = fit_to_budget(messages, 10)
    assert sent == [b'{"ack":4}'] and dropped == 1


@given(st.integers(0, 400), st.lists(st.integers(0, 2**53), max_size=5))
def test_never_over_budget(budget, acks):
    messages = reply_messages(acks, [ERROR, Rejection("invalid_json", "x" * 80)], is_batch=True)
    sent, dropped = fit_to_budget(messages, budget)
    assert sum(map(len, sent)) <= budget
    assert len(sent) + dropped == len(messages)
