"""Manage the hub's tokens: add (prints the new token once), list, revoke.

Owns the ``tantra token`` command. The running hub notices the file change by
itself within a second (or on SIGHUP): a revoked token's connections close.

Does not own: the file format and checks (``tantra.security.tokens``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tantra.cli import CommandError
from tantra.security.tokens import (
    KINDS,
    Token,
    TokenFileError,
    TokenTable,
    hash_secret,
    new_secret,
    read_tokens,
    write_tokens,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="make a token and print it (once)")
    add.add_argument("--auth", required=True, metavar="FILE", help="the hub's token file")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--device", metavar="NAME", help="the device a device token sends as")
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="DEVICE/SENSOR",
        help="what a reader token may see (globs * and ?); repeatable",
    )
    add.add_argument("name", help="the token's name (1-64 of A-Z a-z 0-9 _ -)")
    listing = actions.add_parser("list", help="the tokens, without secrets")
    listing.add_argument("--auth", required=True, metavar="FILE")
    revoke = actions.add_parser("revoke", help="remove a token; its connections close")
    revoke.add_argument("--auth", required=True, metavar="FILE")
    revoke.add_argument("name")


def _load(path: str) -> TokenTable:
    try:
        return read_tokens(path)
    except TokenFileError as error:
        raise CommandError(str(error)) from None


def _write(path: str, table: TokenTable) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"--auth {path}: no directory {directory}")
    try:
        write_tokens(path, table)
    except OSError as error:
        raise CommandError(f"--auth {path}: cannot write it: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    table = _load(args.auth)
    if args.action == "list":
        for token in table.by_name.values():
            print(json.dumps(token.describe()))
        return 0
    if args.action == "revoke":
        if args.name not in table.by_name:
            raise CommandError(f"no token named {args.name!r} in {args.auth}")
        remaining = [t for t in table.by_name.values() if t.name != args.name]
        _write(args.auth, TokenTable(remaining))
        print(json.dumps({"revoked": args.name}))
        return 0
    if args.name in table.by_name:
        raise CommandError(f"a token named {args.name!r} exists already (revoke it first)")
    if args.kind == "device" and not args.device:
        args.device = args.name
    if args.kind != "device" and args.device:
        raise CommandError("--device is for device tokens only")
    if args.kind != "reader" and args.scope:
        raise CommandError("--scope is for reader tokens only (a device sees itself, an admin all)")
    secret = new_secret()
    try:
        token = Token(
            name=args.name,
            kind=args.kind,
            hash=hash_secret(secret),
            device=args.device if args.kind == "device" else None,
            scopes=tuple(args.scope),
            created=int(time.time()),
        )
    except TokenFileError as error:
        raise CommandError(str(error)) from None
    _write(args.auth, TokenTable([*table.by_name.values(), token]))
    print(json.dumps({"name": token.name, "token": secret}))
    return 0
