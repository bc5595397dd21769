"""Send one reading to a hub and print its reply (a debugging aid for device authors).

``tantra send --url tcp://localhost:9000 --device d --seq 1 soilMoisture 42 --unit %``
prints the hub's reply line (``{"ack":1}``, or the error naming the field).
The reading is checked with the hub's own validator before it is sent.
Exit status: 0 when the hub acked (or, without ``--seq``, said nothing
within ``--timeout``), 1 when it answered with an error or cannot be
reached, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import attrs

from tantra.cli import CommandError
from tantra.cli.links import (
    LINKS,
    add_token_argument,
    connection_error,
    encode,
    make_reading,
    parse_url,
    parse_value,
    run_reactor,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sensor", help="sensor name (1-64 of A-Z a-z 0-9 _ -)")
    parser.add_argument("value", help="a number, true or false")
    parser.add_argument(
        "--url",
        default="tcp://localhost:9000",
        help="tcp://, udp://, ws:// hub address or mqtt://broker[:port][/PREFIX]"
        " (with --device) [default: %(default)s]",
    )
    parser.add_argument(
        "--device", help="device name (default: the hub names it after your address)"
    )
    parser.add_argument("--unit", help="unit, at most 16 characters")
    parser.add_argument("--seq", type=int, help="sequence number: the hub acks it")
    parser.add_argument("--ts", type=int, help="device time, ms since the epoch")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait [default: %(default)s]"
    )
    add_token_argument(parser, "tcp: the auth line; ws: Bearer; udp: signs the datagram")


def run(args: argparse.Namespace) -> int:
    url = parse_url(args.url)
    if args.token and url.scheme == "udp" and (args.device is None or args.seq is None):
        raise CommandError("a signed UDP reading needs --device (the token's) and --seq")
    if url.scheme == "mqtt" and args.device and "?" not in url.path:
        url = attrs.evolve(url, path=f"{url.path}?device={args.device}")  # the topic names it
    reading = make_reading(
        args.sensor,
        parse_value(args.value),
        device=args.device,
        unit=args.unit,
        seq=args.seq,
        ts=args.ts,
        now_ms=int(time.time() * 1000),
    )
    outcome: dict[str, Any] = {}
    run_reactor(
        _send, url, encode(reading), args.timeout, args.seq is not None, outcome, args.token
    )
    if "error" in outcome:
        raise outcome["error"]
    reply = outcome.get("reply")
    if reply is None:
        print("(no reply: readings without --seq are acked only by errors)")
        return 0
    print(reply.decode(errors="replace"))
    return 1 if b'"error"' in reply else 0


async def _send(
    reactor: Any,
    url,
    payload: bytes,
    timeout: float,
    acked: bool,
    outcome: dict,
    token: str | None = None,
) -> None:
    from twisted.internet import defer

    try:
        link = await defer.Deferred.fromCoroutine(_open(reactor, url, timeout, token))
    except Exception as error:
        outcome["error"] = connection_error(error, url)
        return
    try:
        waiting = link.replies.next()
        link.send(payload)
        waiting.addTimeout(timeout, reactor)
        try:
            outcome["reply"] = await waiting
        except defer.TimeoutError:
            if acked:
                outcome["error"] = CommandError(f"no reply from {url} within {timeout:g} s", 1)
        except Exception as error:
            outcome["error"] = connection_error(error, url)
    finally:
        link.close()


async def _open(reactor: Any, url, timeout: float, token: str | None = None) -> Any:
    return await LINKS[url.scheme].open(reactor, url, timeout, token=token)
