"""The ``tantra`` console script: small tools around a running hub.

Owns: the command line of ``tantra`` and the dispatch to its subcommands.
Each subcommand is a module of this package with two functions,
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status), listed
in :data:`COMMANDS`; its module docstring's first line is its one-line help.
A subcommand is imported only when it runs, so ``tantra --help`` stays fast
and one command's dependencies never break another.

Errors a person can act on are one line on stderr and a non-zero exit
(:class:`CommandError`), never a traceback. Ctrl-C (SIGINT) or SIGTERM
stops any command quietly with the shell's status for the signal: 130 or 143
(:class:`Interrupted`).

Does not own: the hub itself (``twistd -n tantra``, ``tantra.tap``).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from tantra import __version__

#: Subcommand name -> (module, one-line help). The module is imported on use.
COMMANDS: dict[str, tuple[str, str]] = {}


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 (or ``status``)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """A signal stopped the command: nothing is printed, the exit status is 128 + the signal."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.status = 128 + signum


def _terminated(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def register(name: str, module: str, help: str) -> None:
    """Add a subcommand (used below; one line per command keeps merges easy)."""
    COMMANDS[name] = (module, help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tantra",
        description="Tools for a Tantra telemetry hub (the hub itself: twistd -n tantra).",
    )
    parser.add_argument("--version", action="version", version=f"tantra {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        _load(module_name).add_arguments(sub)
    return parser


def _load(module_name: str):
    return importlib.import_module(module_name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # SIGTERM as Ctrl-C: a command's clean-up runs (no FILE.part left behind).
    # Commands on the reactor install their own handlers (links.run_reactor).
    previous = None
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread
        pass
    try:
        return int(_load(args._module).run(args) or 0)
    except CommandError as error:
        print(f"tantra {args.command}: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt as stop:
        return getattr(stop, "status", 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# -- the subcommands (one line each) -------------------------------------------
register("token", "tantra.cli.token", "manage the tokens of --auth FILE: add, list, revoke")
register("send", "tantra.cli.send", "send one reading and print the reply")
register("simulate", "tantra.cli.simulate", "simulate N devices sending readings at a rate")
register("tail", "tantra.cli.tail", "print live readings (with filters, and --since from history)")
register("export", "tantra.cli.export", "export stored readings to CSV or NDJSON")
