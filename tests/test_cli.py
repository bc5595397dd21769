"""The ``tantra`` console script's frame: help, version, dispatch, one-line errors."""

import argparse
import signal
import sys
import types

import pytest

from tantra import __version__, cli


@pytest.fixture
def fake_command(monkeypatch):
    module = types.ModuleType("tantra_fake_command")
    calls = []

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fail", action="store_true")

    def run(args) -> int:
        calls.append(args)
        if args.fail:
            raise cli.CommandError("the thing is wrong")
        return 0

    module.add_arguments = add_arguments
    module.run = run
    monkeypatch.setitem(sys.modules, "tantra_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("tantra_fake_command", "a fake command"))
    return calls


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tantra {__version__}"


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: tantra" in capsys.readouterr().out


def test_dispatches_to_the_command(fake_command):
    assert cli.main(["fake"]) == 0
    assert len(fake_command) == 1


def test_command_errors_are_one_line_and_non_zero(fake_command, capsys):
    assert cli.main(["fake", "--fail"]) == 2
    assert capsys.readouterr().err == "tantra fake: the thing is wrong\n"


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["no-such-command"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# -- one-line errors before anything is sent (in-process: none of these runs the reactor) -----


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (["send", "s", "1"], "tcp://[::1"),
        (["send", "s", "1"], "udp://[::1:9000"),
        (["send", "s", "1"], "ws://[::1/"),
        (["send", "s", "1"], "mqtt://[::1/tantra"),
        (["simulate"], "tcp://[::1"),
        (["tail"], "ws://[::1/"),
        (["export"], "http://[::1"),
    ],
)
def test_an_invalid_ipv6_url_is_one_line_naming_it(command, url, capsys):
    assert cli.main([*command, "--url", url]) == 2
    assert capsys.readouterr().err == f"tantra {command[0]}: --url {url!r}: Invalid IPv6 URL\n"


@pytest.fixture
def no_hub(monkeypatch):
    """``tantra export`` must not ask the hub anything: its copy fails the test if called."""
    from tantra.cli import export

    def copy(*args):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(export, "_copy", copy)


def test_export_to_a_missing_directory_fails_before_asking_the_hub(no_hub, tmp_path, capsys):
    target = tmp_path / "missing" / "x.csv"
    assert cli.main(["export", "-o", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"tantra export: -o {target}: no directory {tmp_path / 'missing'}\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_directory_fails_before_asking_the_hub(no_hub, tmp_path, capsys):
    target = tmp_path / "out"
    target.mkdir()
    assert cli.main(["export", "-o", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"tantra export: -o {target}: is a directory (name a file in it)\n"
    )
    assert list(tmp_path.iterdir()) == [target]


def test_export_dash_is_stdout(monkeypatch, tmp_path, capsys):
    from tantra.cli import export

    seen = []
    monkeypatch.setattr(export, "_copy", lambda address, out, args: seen.append(out) or 3)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", "-o", "-"]) == 0
    assert seen == [sys.stdout.buffer]
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    assert capsys.readouterr().err == "exported 3 reading(s)\n"


def test_export_leaves_no_part_file_when_the_rename_fails(monkeypatch, tmp_path, capsys):
    from tantra.cli import export

    target = tmp_path / "x.csv"

    def copy(address, out, args):
        out.write(b"id\n1\n")
        target.mkdir()  # the rename at the end cannot replace a directory
        return 1

    monkeypatch.setattr(export, "_copy", copy)
    assert cli.main(["export", "-o", str(target)]) == 1
    assert capsys.readouterr().err == f"tantra export: -o {target}: Is a directory\n"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(("signum", "status"), [(None, 130), (signal.SIGTERM, 143)])
def test_export_interrupted_leaves_no_part_file_and_says_nothing(
    monkeypatch, tmp_path, capsys, signum, status
):
    from tantra.cli import export

    def copy(address, out, args):
        out.write(b"id\n")
        raise KeyboardInterrupt() if signum is None else cli.Interrupted(signum)

    monkeypatch.setattr(export, "_copy", copy)
    assert cli.main(["export", "-o", str(tmp_path / "x.csv")]) == status
    assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []


def test_sigterm_is_interrupted_143_for_commands_off_the_reactor(fake_command, monkeypatch):
    import os

    def run(args) -> int:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # the kill would end pytest
            raise AssertionError("the command runs without a SIGTERM handler")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(sys.modules["tantra_fake_command"], "run", run)
    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a shell (pytest has one)
    try:
        assert cli.main(["fake"]) == 143
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_token_add_to_a_missing_directory_is_one_line(tmp_path, capsys):
    path = tmp_path / "missing" / "auth.json"
    assert cli.main(["token", "add", "--auth", str(path), "--kind", "device", "z"]) == 2
    assert capsys.readouterr() == (
        "",
        f"tantra token: --auth {path}: no directory {tmp_path / 'missing'}\n",
    )


def test_simulate_counts_and_reports_a_device_that_stops_on_an_unexpected_error(
    monkeypatch, capsys, clock
):
    """Never swallowed: each crashed device is an error, and one line says why."""
    from twisted.internet import defer

    from tantra.cli import simulate
    from tantra.cli.links import LINKS, parse_url

    class Link:
        @classmethod
        def open(cls, reactor, url, timeout, token=None):
            return defer.succeed(cls())

        def close(self):
            pass

    def broken(self, sensor):
        raise RuntimeError("boom")

    monkeypatch.setitem(LINKS, "tcp", Link)
    monkeypatch.setattr(simulate.Device, "next_reading", broken)
    args = cli.build_parser().parse_args(
        ["simulate", "--url", "tcp://127.0.0.1:9", "--devices", "2", "--count", "4", "--quiet"]
    )
    simulate._check(args)
    clock.addSystemEventTrigger = lambda *args: None  # a reactor that never shuts down
    totals = simulate.Totals()
    done = defer.ensureDeferred(simulate._simulate(clock, parse_url(args.url), args, totals))
    assert done.called and done.result is None
    assert (totals.sent, totals.errors) == (0, 2)
    assert capsys.readouterr().err.splitlines()[-1] == (
        "tantra simulate: 2 device(s) stopped on an error: sim-1: RuntimeError: boom"
    )
