"""Export stored readings to CSV or NDJSON, streamed from the hub's history API.

Reads ``/api/v1/readings?format=csv|ndjson`` (the hub streams the whole
range in bounded memory) and writes it to ``--output`` or stdout (also
``-o -``), with a progress line on stderr (rows, bytes, rows per second). A
file is written as ``FILE.part`` and renamed when the hub finished the
transfer, so an interrupted export never leaves a short file that looks
whole; ``FILE.part`` is opened before the hub is asked (a wrong ``-o`` fails
at once) and removed on any failure, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import IO, Any
from urllib.parse import urlencode

from tantra.cli import CommandError
from tantra.cli.links import add_token_argument, bearer, parse_url

CHUNK = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default="http://localhost:8080",
        help="the hub's HTTP address [default: %(default)s]",
    )
    parser.add_argument(
        "--format", choices=("csv", "ndjson"), default="csv", help="[default: %(default)s]"
    )
    parser.add_argument(
        "--from",
        dest="start",
        default="-1d",
        help="ms, ISO 8601 or relative like -7d [default: %(default)s]",
    )
    parser.add_argument("--to", dest="end", help="ms, ISO 8601 or relative [default: now]")
    parser.add_argument(
        "--device", action="append", default=[], help="only this device (repeatable)"
    )
    parser.add_argument(
        "--sensor", action="append", default=[], help="only this sensor (repeatable)"
    )
    parser.add_argument("-o", "--output", help="file to write; - is stdout [default: stdout]")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds the hub may stay silent [default: %(default)s]",
    )
    add_token_argument(parser, "a reader exports its scope; sent as Authorization: Bearer")


def run(args: argparse.Namespace) -> int:
    url = parse_url(args.url, ("http", "https"))
    query = [("from", args.start), ("format", args.format)]
    if args.end:
        query.append(("to", args.end))
    query += [("device", d) for d in args.device] + [("sensor", s) for s in args.sensor]
    address = f"{url.scheme}://{url.host}:{url.port}/api/v1/readings?{urlencode(query)}"
    if args.output and args.output != "-":
        out, partial = _open_partial(args.output)  # before the hub is asked for anything
        try:
            with out:
                rows = _copy(address, out, args)
            os.replace(partial, args.output)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            if isinstance(error, OSError):
                raise CommandError(f"-o {args.output}: {error.strerror or error}", 1) from None
            raise
    else:
        rows = _copy(address, sys.stdout.buffer, args)
    if not args.quiet:
        print(f"exported {rows} reading(s)", file=sys.stderr)
    return 0


def _open_partial(output: str) -> tuple[IO[bytes], str]:
    """``OUTPUT.part``, opened for writing, or a one-line error saying why it cannot be."""
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise CommandError(f"-o {output}: no directory {directory}")
    if os.path.isdir(output):
        raise CommandError(f"-o {output}: is a directory (name a file in it)")
    partial = output + ".part"
    try:
        return open(partial, "wb"), partial  # closed by run()
    except OSError as error:
        raise CommandError(f"-o {output}: cannot write {partial}: {error.strerror}") from None


def _copy(address: str, out: IO[bytes], args: argparse.Namespace) -> int:
    import http.client
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(address, headers=bearer(args.token))
        response: Any = urllib.request.urlopen(request, timeout=args.timeout)
    except urllib.error.HTTPError as error:
        if error.code in (404, 503):
            raise CommandError("this hub keeps no history (start it with a store)", 1) from None
        if error.code == 401:
            raise CommandError(
                "the hub wants a token (--token or $TANTRA_TOKEN) or refused this one", 1
            ) from None
        detail = error.read(500).decode(errors="replace").strip()
        raise CommandError(f"the hub said {error.code}: {detail}", 1) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CommandError(
            f"cannot reach the hub at {address.split('/api')[0]}: {reason}", 1
        ) from None
    rows = size = 0
    started = last = time.monotonic()
    header = args.format == "csv"
    with response:
        while True:
            try:
                chunk = response.read1(CHUNK)
            except (http.client.IncompleteRead, OSError) as error:
                raise CommandError(
                    f"the transfer broke off after {rows} reading(s): {error}", 1
                ) from None
            if not chunk:
                if response.length:  # Content-Length promised more: the hub hung up early
                    raise CommandError(
                        f"the transfer broke off after {rows} line(s): "
                        f"{response.length} byte(s) missing",
                        1,
                    )
                break
            out.write(chunk)
            size += len(chunk)
            rows += chunk.count(b"\n")
            now = time.monotonic()
            if not args.quiet and now - last >= 1.0:
                last = now
                done = rows - header
                print(
                    f"\r{done} readings, {size / 1e6:.1f} MB, {done / (now - started):.0f}/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    out.flush()
    return max(0, rows - header)
