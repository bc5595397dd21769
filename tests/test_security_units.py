"""Pure parts of tantra.security: tokens and their file, scopes, UDP signing, the replay rule."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tantra.cli import main as cli_main
from tantra.hub import Filter
from tantra.model import Reading
from tantra.security import signing
from tantra.security.replay import AHEAD, NEW, REPLAYED, SEEN, ReplayGuard, dump_state, load_floors
from tantra.security.scopes import Scope, ScopeError, parse_scope
from tantra.security.tokens import (
    Token,
    TokenFileError,
    TokenTable,
    hash_secret,
    new_secret,
    parse_tokens,
    read_tokens,
)

# -- tokens ------------------------------------------------------------------


def device_token(name="t1", device="farm-1", secret="s" * 71):
    return Token(name=name, kind="device", hash=hash_secret(secret), device=device)


def test_find_returns_the_token_for_its_secret_only():
    secret = new_secret()
    token = device_token(secret=secret)
    table = TokenTable([token])
    assert table.find(secret) is token
    assert table.find(secret[:-1]) is None
    assert table.find(secret + "x") is None
    assert table.find("") is None
    assert table.find(None) is None
    assert table.find("x" * 100_000) is None


def test_find_confirms_with_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("tantra.security.tokens.hmac.compare_digest", spy)
    secret = new_secret()
    table = TokenTable([device_token(secret=secret)])
    assert table.find(secret) is not None
    assert calls == [(hash_secret(secret), hash_secret(secret))]


def test_secrets_are_longer_than_the_hmac_block_so_the_hash_is_the_udp_key():
    secret = new_secret()
    assert len(secret.encode()) > 64
    token = device_token(secret=secret)
    payload = b'{"sensor":"t","value":1,"device":"farm-1","seq":1}'
    by_device = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    assert hmac.new(token.key, payload, hashlib.sha256).hexdigest() == by_device


@pytest.mark.parametrize("name", ["#", "+", "a/b", "a.b", "*", "farm?", "a b", "", "x" * 65, "é"])
def test_names_with_wildcards_or_separators_are_refused(name):
    with pytest.raises(TokenFileError):
        device_token(name=name)
    with pytest.raises(TokenFileError):
        device_token(device=name)


def test_kind_rules():
    h = hash_secret("x")
    with pytest.raises(TokenFileError, match="kind"):
        Token(name="a", kind="root", hash=h)
    with pytest.raises(TokenFileError, match="needs a scope"):
        Token(name="a", kind="reader", hash=h)
    with pytest.raises(TokenFileError, match="only device tokens"):
        Token(name="a", kind="reader", hash=h, device="d", scopes=("d/*",))
    assert Token(name="a", kind="admin", hash=h).scope.everything


def test_file_errors_name_the_problem(tmp_path):
    for raw, match in [
        (b"{", "not valid JSON"),
        (b"[]", "must be"),
        (b'{"version": 2, "tokens": []}', "unsupported version"),
        (b'{"version": 1, "tokens": [{"name": "a", "kind": "device", "sha256": "zz"}]}', "hash"),
        (b'{"version": 1, "tokens": [{"name": "a", "kind": "admin", "sha256": "'
         + b"0" * 64 + b'", "extra": 1}]}', "unknown field"),
    ]:  # fmt: skip
        with pytest.raises(TokenFileError, match=match):
            parse_tokens(raw)
    assert len(read_tokens(str(tmp_path / "missing.json"))) == 0


def test_cli_add_list_revoke(tmp_path, capsys):
    path = str(tmp_path / "auth.json")
    assert cli_main(["token", "add", "--auth", path, "--kind", "device", "pump"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["name"] == "pump" and added["token"].startswith("tantra_")
    args = ["token", "add", "--auth", path, "--kind", "reader", "--scope", "farm-*/t*", "ro"]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = (tmp_path / "auth.json").read_text()
    assert added["token"] not in text  # stored hashed
    table = read_tokens(path)
    assert table.find(added["token"]).device == "pump"
    assert cli_main(["token", "list", "--auth", path]) == 0
    listed = capsys.readouterr().out
    assert added["token"] not in listed and "sha256" not in listed
    assert [json.loads(line)["name"] for line in listed.splitlines()] == ["pump", "ro"]
    assert cli_main(["token", "add", "--auth", path, "--kind", "device", "pump"]) == 2
    assert "exists already" in capsys.readouterr().err
    bad = ["token", "add", "--auth", path, "--kind", "reader", "--scope", "farm/#", "r2"]
    assert cli_main(bad) == 2
    assert "scope 'farm/#'" in capsys.readouterr().err
    assert cli_main(["token", "revoke", "--auth", path, "pump"]) == 0
    assert read_tokens(path).find(added["token"]) is None
    assert cli_main(["token", "revoke", "--auth", path, "pump"]) == 2


# -- scopes ------------------------------------------------------------------

names = st.sampled_from(["farm-1", "farm-2", "farm-10", "barn", "temp", "temp2", "hum", "x"])
globs = st.sampled_from(["farm-1", "farm-*", "farm-?", "*", "barn", "t*", "temp", "hum", "?"])


@given(
    patterns=st.lists(st.tuples(globs, globs), min_size=1, max_size=4),
    devices=st.frozensets(names, max_size=3),
    sensors=st.frozensets(names, max_size=3),
    readings=st.lists(st.tuples(names, names), max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_narrow_then_check_is_exactly_scope_and_filter(patterns, devices, sensors, readings):
    scope = Scope([parse_scope(f"{d}/{s}") for d, s in patterns])
    wanted = Filter.of(devices, sensors)
    narrowed, check = scope.narrow(wanted)
    for device, sensor in readings:
        reading = Reading(device=device, sensor=sensor, value=1, ts=0)
        expected = wanted.matches(reading) and scope.allows(device, sensor)
        if narrowed is None:
            assert not expected
            continue
        seen = narrowed.matches(reading) and (not check or scope.allows(device, sensor))
        assert seen == expected


def test_exact_device_scopes_need_no_per_reading_check():
    scope = Scope([parse_scope("farm-1/*"), parse_scope("farm-2")])
    narrowed, check = scope.narrow(Filter())
    assert narrowed == Filter.of({"farm-1", "farm-2"}) and not check
    assert scope.narrow(Filter.of({"barn"})) == (None, False)


@pytest.mark.parametrize("text", ["a/b/c", "a/", "/b", "a#/b", "a/+", "a.b/c", "[ab]/c", ""])
def test_bad_scopes(text):
    with pytest.raises(ScopeError):
        parse_scope(text)


# -- UDP signing ---------------------------------------------------------------

KEY = b"k" * 32


@given(st.binary(max_size=2000))
def test_sign_split_verify_round_trip(payload):
    framed = signing.split(signing.sign(payload, KEY)) if payload else None
    if payload:
        assert framed is not None
        body, signature = framed
        assert body == payload
        assert signing.verify(body, signature, [b"other", KEY]) == 1
        assert signing.verify(body, signature, [b"other"]) is None


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=70), st.binary(max_size=5))
def test_truncated_or_extended_datagrams_never_verify(payload, cut, extra):
    datagram = signing.sign(payload or b"x", KEY)
    for changed in (
        datagram[:-cut],
        datagram + extra + b"\n",
        datagram + b"\n",
        b"\n" + datagram[:-1],
    ):
        if changed == datagram:
            continue
        framed = signing.split(changed)
        if framed is not None:
            assert signing.verify(*framed, [KEY]) is None or framed[0] != (payload or b"x")


@given(st.binary(max_size=200))
def test_split_refuses_anything_without_a_hex_last_line(data):
    framed = signing.split(data)
    if framed is not None:
        payload, signature = framed
        assert data == payload + b"\n" + signature and len(signature) == 64 and payload


def test_huge_and_uppercase():
    huge = b"x" * 70_000
    assert signing.verify(*signing.split(signing.sign(huge, KEY)), [KEY]) == 0
    upper = signing.sign(b"{}", KEY)
    assert signing.split(upper[:-64] + upper[-64:].upper()) is None or upper[-64:].isdigit()


def test_verify_uses_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(
        "tantra.security.signing.hmac.compare_digest", lambda a, b: calls.append(1) or real(a, b)
    )
    payload, signature = signing.split(signing.sign(b"{}", KEY))
    signing.verify(payload, signature, [KEY, b"a", b"b"])
    assert len(calls) == 3  # every key, no early exit


# -- replay --------------------------------------------------------------------


def test_replay_window():
    guard = ReplayGuard(margin=1000)
    assert guard.check("d", 5) == NEW
    guard.record("d", 5)
    assert guard.check("d", 5) == SEEN
    assert guard.check("d", 3) == NEW
    guard.record("d", 3)
    assert guard.check("d", 3) == SEEN
    guard.record("d", 100)
    assert guard.check("d", 36) == REPLAYED  # 100 - 64
    assert guard.check("d", 37) == NEW
    assert guard.check("d", 99) == NEW
    assert guard.check("d", 5000) == AHEAD  # more than margin above the mark on disk
    guard.reserve("d", 5000)
    guard.saved(guard.snapshot())
    assert guard.check("d", 5000) == NEW


def test_stored_marks_are_exact_floors_and_only_for_devices_the_store_knows():
    """With a history store the floor is the mark committed with the readings
    (no crash margin); a device the store has no mark for keeps the file's."""
    guard = ReplayGuard(margin=1000, floors={"d": 1008, "e": 1050})  # file marks + margin
    guard.use_stored_marks({"d": 8})
    assert guard.check("d", 8) == REPLAYED
    assert guard.check("d", 9) == NEW
    assert guard.check("e", 1050) == REPLAYED and guard.check("e", 1051) == NEW
    guard.record("d", 9)
    guard.record("d", 12)
    readings = [
        Reading("d", "t", 1, 0, seq=12),
        Reading("d", "t", 1, 0, seq=9),
        Reading("x", "t", 1, 0, seq=99),  # no signed seq accepted from x: no mark
        Reading("d", "u", 1, 0),
    ]
    assert guard.marks_of(readings) == {"d": 12}


def test_floors_after_crash_cover_everything_accepted(tmp_path):
    guard = ReplayGuard(margin=1000)
    guard.saved(guard.snapshot())
    accepted = []
    for seq in range(0, 5000, 7):
        verdict = guard.check("d", seq)
        if verdict == AHEAD:
            guard.reserve("d", seq)
            if seq % 3 == 0:  # the save lands only sometimes before the crash
                guard.saved(guard.snapshot())
            continue
        if verdict == NEW:
            guard.record("d", seq)
            accepted.append(seq)
    on_disk = dict(guard.durable)
    path = tmp_path / "replay.json"
    path.write_bytes(dump_state(on_disk, clean=False))
    floors = load_floors(str(path), 1000)
    after = ReplayGuard(margin=1000, floors=floors)
    assert accepted
    assert all(after.check("d", seq) == REPLAYED for seq in accepted)
    path.write_bytes(dump_state({"d": 4998}, clean=True))
    assert load_floors(str(path), 1000) == {"d": 4998}


# -- the token taken out of a WebSocket request's query (tantra.security.web) -----

_QUERY_PART = st.binary(max_size=12).map(lambda b: b.replace(b"&", b"").replace(b"=", b""))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_QUERY_PART, _QUERY_PART), max_size=6),
    st.lists(_QUERY_PART, max_size=3),
    st.integers(0, 6),
)
def test_take_secret_removes_every_token_keeps_the_rest_as_sent_and_never_raises(pairs, tokens, at):
    from urllib.parse import quote_from_bytes

    from tantra.security.web import take_secret

    others = [quote_from_bytes(k).encode() + b"=" + quote_from_bytes(v).encode() for k, v in pairs]
    others = [segment for segment in others if not segment.startswith(b"token=")]
    token_segments = [b"token=" + quote_from_bytes(t).encode() for t in tokens]
    segments = others[:at] + token_segments + others[at:]

    class Request:
        uri = b"/?" + b"&".join(segments) if segments else b"/"
        requestHeaders = None

        def getHeader(self, name):
            return None

    request = Request()
    secret = take_secret(request)
    assert secret == (tokens[0].decode("utf-8", "replace") if tokens else None)
    if not token_segments:
        assert request.uri == Request.uri, "a query without a token is left as sent"
    else:
        query = request.uri.partition(b"?")[2]
        assert (query.split(b"&") if query else []) == others
