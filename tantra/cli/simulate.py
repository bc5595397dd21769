"""Simulate N devices sending readings at a rate, with seq, acks and retries like the firmware.

Each device opens its own link (``--url tcp://``, ``udp://``, ``ws://`` or
``mqtt://broker/PREFIX``: see ``tantra.cli.links.LINKS``; ``--transport``
picks one on localhost) and sends one
reading of each of its sensors every ``1/--rate`` seconds, each with the
next ``seq``. A reading not acked within ``--ack-timeout`` is sent again with
the same ``seq`` (the hub drops the repeat and acks it again), at most
``--retries`` times, as the ESP8266 firmware does; then it counts as an
error. A progress line (sent, acked, errors, retries per second and in
total) is written to stderr every second; the totals are printed at the end.
Stops after ``--duration`` seconds or ``--count`` readings, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

import attrs

from tantra.cli import CommandError
from tantra.cli.links import (
    LINKS,
    SCHEMES,
    add_token_argument,
    connection_error,
    encode,
    parse_url,
    run_reactor,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="tcp://, udp://, ws:// hub address or mqtt://broker[:port][/PREFIX]"
        " [default: the --transport on localhost]",
    )
    parser.add_argument(
        "--transport",
        choices=SCHEMES,
        help="tcp, udp, ws or mqtt (a device on the broker the hub bridges)"
        " [default: the --url's, else tcp]",
    )
    parser.add_argument(
        "--devices", type=int, default=10, help="how many devices [default: %(default)s]"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="readings per second per device and sensor [default: %(default)s]",
    )
    parser.add_argument(
        "--sensors",
        default="soilMoisture,turbineRpm,turbineVoltage",
        help="sensor names, comma-separated [default: %(default)s]",
    )
    parser.add_argument(
        "--prefix",
        default="sim",
        help="device names are PREFIX-1 ... PREFIX-N [default: %(default)s]",
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="seconds to run [default: 10 unless --count]")
    stop.add_argument("--count", type=int, help="readings to send in all, then stop")
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=1.0,
        help="seconds to wait for an ack [default: %(default)s]",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="re-sends of an unacked reading [default: %(default)s]",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line, only the totals")
    add_token_argument(parser, "tcp/ws: an admin token sends as every PREFIX-N; udp: signs")


@attrs.define
class Totals:
    sent: int = 0
    acked: int = 0
    errors: int = 0
    retries: int = 0
    connect_errors: int = 0

    def line(self, last: Totals, seconds: float) -> str:
        def rate(now: int, then: int) -> str:
            return f"{(now - then) / seconds:.0f}/s"

        return (
            f"sent {self.sent} ({rate(self.sent, last.sent)})  acked {self.acked} "
            f"({rate(self.acked, last.acked)})  errors {self.errors}  retries {self.retries}"
        )


def _check(args: argparse.Namespace) -> None:
    from tantra.model import NAME_PATTERN

    if args.devices < 1 or args.devices > 100_000:
        raise CommandError("--devices must be from 1 to 100000")
    if not args.rate > 0:
        raise CommandError("--rate must be more than 0")
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.duration is not None and not args.duration > 0:
        raise CommandError("--duration must be more than 0")
    if args.retries < 0 or not args.ack_timeout > 0:
        raise CommandError("--retries must be 0 or more and --ack-timeout more than 0")
    sensors = [name for name in args.sensors.split(",") if name]
    for name in [*sensors, f"{args.prefix}-{args.devices}"]:
        if not NAME_PATTERN.fullmatch(name):
            raise CommandError(f"{name!r} is not a valid name (1-64 of A-Z a-z 0-9 _ -)")
    if not sensors:
        raise CommandError("--sensors names no sensor")
    args.sensor_list = sensors


#: ``--transport`` alone: the hub's (or the broker's) default address on this machine.
LOCAL = {
    "tcp": "tcp://localhost:9000",
    "udp": "udp://localhost:9000",
    "ws": "ws://localhost:8080/",
    "mqtt": "mqtt://localhost:1883/tantra",
}


def _url(args: argparse.Namespace) -> Any:
    if args.url is None:
        return parse_url(LOCAL[args.transport or "tcp"])
    url = parse_url(args.url)
    if args.transport is not None and args.transport != url.scheme:
        raise CommandError(f"--transport {args.transport} and --url {args.url!r} disagree")
    return url


def run(args: argparse.Namespace) -> int:
    _check(args)
    url = _url(args)
    if args.token and url.scheme == "udp" and args.devices != 1:
        raise CommandError(
            "signed UDP sends as the token's own device: use --devices 1 and a --prefix"
            " so that PREFIX-1 is that device (over tcp or ws an admin token sends as any)"
        )
    if args.duration is None and args.count is None:
        args.duration = 10.0
    totals = Totals()
    interrupted: KeyboardInterrupt | None = None
    try:
        run_reactor(_simulate, url, args, totals)
    except KeyboardInterrupt as stop:  # Ctrl-C: print the totals so far, then exit 130
        interrupted = stop
    print(json.dumps(attrs.asdict(totals)))
    if interrupted is not None:
        raise interrupted
    if totals.connect_errors == args.devices:
        raise CommandError(f"no device could reach the hub at {url}", status=1)
    return 1 if totals.errors or totals.connect_errors else 0


class Device:
    """One simulated device: its link, its seq, its sensors' values (a random walk)."""

    def __init__(self, name: str, sensors: list[str], link: Any):
        self.name = name
        self.link = link
        self.seq = 0
        self.values = {sensor: random.uniform(0, 100) for sensor in sensors}

    def next_reading(self, sensor: str) -> dict[str, Any]:
        self.seq += 1
        value = self.values[sensor] = round(self.values[sensor] + random.uniform(-1, 1), 3)
        return {"device": self.name, "sensor": sensor, "value": value, "seq": self.seq}


async def _simulate(reactor: Any, url: Any, args: argparse.Namespace, totals: Totals) -> None:
    from twisted.internet import defer, task

    def url_of(index: int) -> Any:
        # A WebSocket device gets every reading the hub relays; subscribe it to
        # its own only, or N devices would cost N^2 messages. An MQTT device's
        # name is part of its topics.
        if url.scheme in ("ws", "mqtt") and "?" not in url.path:
            return attrs.evolve(url, path=f"{url.path}?device={args.prefix}-{index}")
        return url

    opening = [
        defer.maybeDeferred(
            LINKS[url.scheme].open, reactor, url_of(index), args.ack_timeout * 5, token=args.token
        )
        for index in range(1, args.devices + 1)
    ]
    devices = []
    first_error = None
    for index, result in enumerate(await defer.DeferredList(opening, consumeErrors=True), 1):
        ok, value = result
        if ok:
            devices.append(Device(f"{args.prefix}-{index}", args.sensor_list, value))
        else:
            totals.connect_errors += 1
            first_error = first_error or connection_error(value.value, url)
    if first_error is not None:
        print(f"tantra simulate: {totals.connect_errors} device(s): {first_error}", file=sys.stderr)
    if not devices:
        return
    budget = [args.count if args.count is not None else float("inf")]
    last = [attrs.evolve(totals)]

    def progress() -> None:
        if not args.quiet:  # one line rewritten in place on a terminal, else a line each
            if sys.stderr.isatty():
                print("\r" + totals.line(last[0], 1.0), end="  ", file=sys.stderr, flush=True)
            else:
                print(totals.line(last[0], 1.0), file=sys.stderr, flush=True)
        last[0] = attrs.evolve(totals)

    ticker = task.LoopingCall(progress)
    ticker.clock = reactor
    ticker.start(1.0, now=False)
    crashed: list[str] = []

    def died(failure: Any, device: Device) -> None:
        """A device that stopped on an unexpected error: counted and reported, never swallowed."""
        if failure.check(defer.CancelledError):  # --duration is over
            return
        totals.errors += 1
        crashed.append(f"{device.name}: {failure.type.__name__}: {failure.getErrorMessage()}")

    stopping: list[bool] = []  # Ctrl-C: the reactor closes the links; that is no failure
    reactor.addSystemEventTrigger("before", "shutdown", stopping.append, True)
    runs = [
        defer.ensureDeferred(_device(reactor, device, args, totals, budget, stopping)).addErrback(
            died, device
        )
        for device in devices
    ]
    everything = defer.DeferredList(runs, consumeErrors=True)
    if args.duration is not None:
        everything.addTimeout(args.duration, reactor, onTimeoutCancel=lambda r, t: None)
    try:
        await everything
    finally:
        ticker.stop()
        progress()
        if not args.quiet and sys.stderr.isatty():
            print(file=sys.stderr)
        if crashed:
            print(
                f"tantra simulate: {len(crashed)} device(s) stopped on an error: {crashed[0]}",
                file=sys.stderr,
            )
        for device in devices:
            device.link.close()


async def _device(
    reactor: Any,
    device: Device,
    args: argparse.Namespace,
    totals: Totals,
    budget: list,
    stopping: list | None = None,
) -> None:
    """Send, wait for the ack (re-send with the same seq on timeout), sleep, repeat.

    A reading not acked is an error, unless the run was stopped while it
    waited (``--duration`` over: cancelled; Ctrl-C: ``stopping``).
    """
    from twisted.internet import defer, task

    period = 1.0 / args.rate
    while True:
        started = reactor.seconds()
        for sensor in args.sensor_list:
            if budget[0] <= 0:
                return
            budget[0] -= 1
            reading = device.next_reading(sensor)
            payload = encode(reading)
            for attempt in range(args.retries + 1):
                if attempt:
                    totals.retries += 1
                waiting = device.link.replies.next()
                try:
                    device.link.send(payload)
                    totals.sent += 1
                    waiting.addTimeout(args.ack_timeout, reactor)
                    reply = json.loads(await waiting)
                except defer.TimeoutError:
                    continue
                except defer.CancelledError:
                    raise
                except Exception:  # the link is gone (closed, refused) or the reply is not JSON
                    waiting.addErrback(lambda _: None)  # a reply that can no longer come
                    if not stopping:
                        totals.errors += 1  # this reading was not acked
                    return
                if isinstance(reply, dict) and reply.get("ack") == reading["seq"]:
                    totals.acked += 1
                else:
                    totals.errors += 1
                break
            else:
                totals.errors += 1
        await task.deferLater(reactor, max(0.0, period - (reactor.seconds() - started)))
