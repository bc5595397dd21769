"""The auth wiring that needs no sockets: the loopback warning, the token file watcher."""

from __future__ import annotations

import errno
import json

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tantra.counters import Counters
from tantra.security import replay
from tantra.security.gate import Auth
from tantra.security.replay import ReplayGuard, ReplayStateFile, load_floors
from tantra.security.tokens import Token, TokenTable, hash_secret, write_tokens
from tantra.security.watcher import TokenFileWatcher
from tantra.settings import resolve
from tantra.tap import beyond_loopback, warn_if_open


def test_beyond_loopback_lists_listeners_reachable_from_elsewhere():
    local = resolve({"http": ["tcp:8080:interface=127.0.0.1", "unix:/tmp/t.sock"],
                     "tcp": r"tcp:9000:interface=\:\:1", "udp-interface": "127.0.0.1"}, {})  # fmt: skip
    assert beyond_loopback(local) == []
    assert beyond_loopback(resolve({}, {})) == ["tcp:8080", "tcp:9000", "udp:9000"]


def test_one_warning_line_only_with_auth_off(tmp_path):
    seen = []
    observer = seen.append
    globalLogPublisher.addObserver(observer)
    try:
        warn_if_open(resolve({}, {}))
        warn_if_open(resolve({"auth": str(tmp_path / "a.json")}, {}))
        warn_if_open(resolve({"http": ["tcp:0:interface=127.0.0.1"], "tcp": "none",
                              "udp": "none"}, {}))  # fmt: skip
    finally:
        globalLogPublisher.removeObserver(observer)
    warnings = [e for e in seen if "authentication is off" in e.get("log_format", "")]
    assert len(warnings) == 1


def token(name: str, secret: str) -> Token:
    return Token(name=name, kind="device", hash=hash_secret(secret), device=name)


def test_watcher_reloads_on_change_and_closes_revoked(tmp_path, clock):
    path = str(tmp_path / "auth.json")
    write_tokens(path, TokenTable([token("a", "A" * 71), token("b", "B" * 71)]))
    auth = Auth(TokenTable([token("a", "A" * 71), token("b", "B" * 71)]), Counters())
    closed = []
    auth.hold(auth.table.by_name["a"], lambda: closed.append("a"))
    auth.hold(auth.table.by_name["b"], lambda: closed.append("b"))
    watcher = TokenFileWatcher(path, auth, clock)
    watcher.startService()
    try:
        clock.advance(1)
        assert closed == [] and auth.stats.reloads == 0  # nothing changed
        write_tokens(path, TokenTable([token("b", "B" * 71), token("c", "C" * 71)]))
        clock.advance(1)
        assert closed == ["a"]
        assert auth.table.find("C" * 71).name == "c"
        with open(path, "w") as handle:
            handle.write("{broken")
        clock.advance(1)
        assert auth.stats.reload_errors == 1
        assert auth.table.find("B" * 71) is not None  # old tokens kept
        with open(
            path, "w"
        ) as handle:  # b's secret changed: its connection was admitted under the old one
            json.dump({"version": 1, "tokens": [token("b", "X" * 71).to_json()]}, handle)
        clock.advance(1)
        assert closed == ["a", "b"]
    finally:
        watcher.stopService()


def test_a_token_file_in_a_missing_directory_stops_the_start_in_one_line(tmp_path, clock):
    path = tmp_path / "missing" / "auth.json"
    with pytest.raises(SystemExit) as stop:
        TokenFileWatcher(str(path), Auth(TokenTable(), Counters()), clock)
    assert str(stop.value) == f"tantra: --auth {path}: no directory {tmp_path / 'missing'}"


def _start_up_warnings(path: str, clock) -> list[str]:
    """The warnings a token file watcher logs while it starts and stops."""
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    watcher = TokenFileWatcher(path, Auth(TokenTable(), Counters()), clock)
    try:
        watcher.startService()
    finally:
        watcher.stopService()
        globalLogPublisher.removeObserver(seen.append)
    return [formatEvent(e) for e in seen if e.get("log_level") == LogLevel.warn]


def test_a_token_file_not_there_yet_is_one_warning_at_start(tmp_path, clock):
    path = str(tmp_path / "auth.json")
    assert _start_up_warnings(path, clock) == [
        f"no tokens yet: every client will be refused until"
        f" `tantra token add --auth {path} ...` creates {path}"
    ]
    write_tokens(path, TokenTable([token("a", "A" * 71)]))
    assert _start_up_warnings(path, clock) == []


def test_replay_state_in_a_missing_directory_or_unwritable_is_one_line(
    tmp_path, clock, monkeypatch
):
    path = tmp_path / "missing" / "replay.json"
    with pytest.raises(SystemExit) as stop:
        load_floors(str(path), 1000)
    assert str(stop.value) == (
        f"tantra: replay state file {path}: no directory {tmp_path / 'missing'}"
    )

    def refused(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(replay, "write_atomically", refused)
    state = ReplayStateFile(str(tmp_path / "replay.json"), ReplayGuard(), clock)
    with pytest.raises(SystemExit) as stop:
        state.startService()
    assert str(stop.value) == (
        f"tantra: cannot write the replay state file {tmp_path / 'replay.json'}: Permission denied"
    )
