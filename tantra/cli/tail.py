"""Print readings live as the hub relays them, as a table or JSON lines.

Connects as a dashboard (``ws://HOST:PORT/?device=..&sensor=..``: the hub
filters), so it first prints the latest reading of every matching sensor,
then each new one. ``--since ID`` (a reading id, as the hub's readings carry
when it keeps history: ``id:N``, or a plain number below 10^12) resumes
after that reading: the hub replays what it stored after it, then goes on
live, each reading once (``?since=ID``, ``tantra.resume``). ``--since WHEN``
(ms since the epoch, ISO 8601, or relative like ``-15m``) first prints the
stored readings from then on from the history API (``/api/v1/readings``,
streamed as NDJSON), then continues live without a gap: readings that
arrive while the history loads are held and printed after it, minus those
the history already had.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any
from urllib.parse import urlencode

from tantra.cli import CommandError
from tantra.cli.links import (
    WsLink,
    add_token_argument,
    bearer,
    connection_error,
    parse_url,
    run_reactor,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default="ws://localhost:8080/",
        help="the hub's WebSocket address [default: %(default)s]",
    )
    parser.add_argument(
        "--device", action="append", default=[], help="only this device (repeatable)"
    )
    parser.add_argument(
        "--sensor", action="append", default=[], help="only this sensor (repeatable)"
    )
    parser.add_argument(
        "--since",
        help="first the stored readings after reading id ID (id:N, or a number below 10^12)"
        " or from time WHEN (ms, ISO 8601, -15m); needs a hub with history",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )
    parser.add_argument("--count", type=int, help="stop after this many readings")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for the connection [default: %(default)s]",
    )
    add_token_argument(parser, "a reader sees its scope; sent as Authorization: Bearer")


class Printer:
    """Prints readings one per line; counts them; knows when ``--count`` is reached."""

    def __init__(self, as_json: bool, count: int | None, out: Any = None):
        self.as_json = as_json
        self.left = count
        self.out = out or sys.stdout
        self.header_done = as_json

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0

    def show(self, reading: dict[str, Any]) -> None:
        if self.done:
            return
        if self.as_json:
            line = json.dumps(reading, separators=(",", ":"))
        else:
            if not self.header_done:
                print(
                    f"{'time':<23} {'device':<20} {'sensor':<20} {'value':>12} unit  seq",
                    file=self.out,
                )
                self.header_done = True
            ts = reading.get("ts")
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts / 1000)) + f".{ts % 1000:03d}"
                if isinstance(ts, int)
                else "?"
            )
            seq = reading.get("seq")
            line = (
                f"{when:<23} {reading.get('device', ''):<20} {reading.get('sensor', ''):<20} "
                f"{json.dumps(reading.get('value')):>12} {reading.get('unit') or '':<5} "
                f"{'' if seq is None else seq}"
            )
        print(line, file=self.out, flush=True)
        if self.left is not None:
            self.left -= 1


def run(args: argparse.Namespace) -> int:
    url = parse_url(args.url, ("ws",))
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    resume = reading_id(args.since)
    pairs = [("device", d) for d in args.device] + [("sensor", s) for s in args.sensor]
    if resume is not None:
        pairs.append(("since", str(resume)))
        args.since = None  # the hub replays; no history request of our own
    query = urlencode(pairs)
    base = url.path.split("?", 1)[0]
    live_url = parse_url(
        f"ws://{url.host}:{url.port}{base}" + (f"?{query}" if query else ""), ("ws",)
    )
    printer = Printer(args.json, args.count)
    try:
        run_reactor(_tail, live_url, url, args, printer)
    except BrokenPipeError:  # tantra tail | head
        return 0
    return 0  # Ctrl-C: Interrupted, exit 130 (tantra.cli.main)


#: Below this a plain number is a reading id, not ms since the epoch (2001-09-09).
ID_CEILING = 10**12


def reading_id(since: str | None) -> int | None:
    """The reading id ``--since`` names (``id:N`` or a number below 10^12), else None (a time)."""
    if since is None:
        return None
    text = since.strip()
    explicit = text.startswith("id:")
    if explicit:
        text = text[3:]
    if text.isascii() and text.isdigit() and (explicit or int(text) < ID_CEILING):
        return int(text)
    if explicit:
        raise CommandError(f"--since {since}: id: must be followed by a reading id (a number)")
    return None


async def _tail(
    reactor: Any, live_url: Any, url: Any, args: argparse.Namespace, printer: Printer
) -> None:
    from twisted.internet import defer, threads

    finished: defer.Deferred = defer.Deferred()
    held: list[dict[str, Any]] | None = [] if args.since else None

    def on_reading(reading: dict[str, Any]) -> None:
        if held is not None:
            held.append(reading)
            return
        printer.show(reading)
        if printer.done and not finished.called:
            finished.callback(None)

    try:
        link = await WsLink.open(
            reactor, live_url, args.timeout, on_reading=on_reading, token=args.token
        )
    except Exception as error:
        raise connection_error(error, live_url) from None

    def closed(failure: Any) -> None:
        if not finished.called:
            finished.errback(failure)

    link.replies.next().addErrback(closed)
    try:
        if args.since:
            seen = await threads.deferToThread(_history, url, args, printer)
            waiting, held = held or [], None
            for reading in waiting:
                if _key(reading) not in seen:
                    on_reading(reading)
            if printer.done and not finished.called:
                finished.callback(None)
        await finished
    except Exception as error:
        if isinstance(error, CommandError):
            raise
        raise connection_error(error, live_url) from None
    finally:
        link.close()


def _key(reading: dict[str, Any]) -> tuple:
    return (reading.get("device"), reading.get("sensor"), reading.get("ts"), reading.get("seq"))


def _history(url: Any, args: argparse.Namespace, printer: Printer) -> set[tuple]:
    """Stream ``/api/v1/readings?from=SINCE&format=ndjson`` (in a thread: this is a CLI)."""
    import urllib.error
    import urllib.request

    query = urlencode(
        [("from", args.since), ("format", "ndjson")]
        + [("device", d) for d in args.device]
        + [("sensor", s) for s in args.sensor]
    )
    address = f"http://{url.host}:{url.port}/api/v1/readings?{query}"
    seen: set[tuple] = set()
    try:
        request = urllib.request.Request(address, headers=bearer(args.token))
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            for line in response:
                if line.strip():
                    reading = json.loads(line)
                    seen.add(_key(reading))
                    printer.show(reading)
    except urllib.error.HTTPError as error:
        if error.code in (404, 503):
            raise CommandError(
                "--since needs a hub that keeps history (this one has no store)", 1
            ) from None
        if error.code == 401:
            raise CommandError(
                "--since: the hub wants a token (--token or $TANTRA_TOKEN) or refused this one", 1
            ) from None
        detail = error.read(500).decode(errors="replace").strip()
        raise CommandError(f"--since: the hub said {error.code}: {detail}", 1) from None
    return seen
