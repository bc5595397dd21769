"""The ``tantra`` console script's frame: help, version, dispatch, one-line errors."""

import argparse
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
