"""The checks the transports call: who is this (:class:`Auth`), may it send this (:class:`Ingress`).

Owns: the tokens in force and their open connections (so a revoked token's
connections close), the device rules (a device token sends only as its own
device; signed UDP with the replay rule), and the per-device reading rate.
Every refusal is counted in ``counters.auth`` (``/stats`` section ``auth``).

Transports stay translators: they hand a presented secret to
:meth:`Auth.login` and a payload to :meth:`Ingress.ingest`, and turn what
comes back into their own replies and closes.

Does not own: token storage and matching (``tokens``, ``scopes``), the UDP
framing (``signing``), the replay rule (``replay``), the hub's validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from twisted.logger import Logger

from tantra.counters import AuthStats, Counters
from tantra.hub import Hub, IngestOutcome
from tantra.model import ParsedPayload, Reading, Rejection, parse_payload
from tantra.ratelimit import SourceRateLimiter
from tantra.security import signing
from tantra.security.replay import AHEAD, REPLAYED, SEEN, ReplayGuard
from tantra.security.tokens import Token, TokenTable

UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
RATE_LIMITED = "rate_limited"
REPLAYED_ERROR = "replayed"
RETRY = "retry"
#: Kinds that may send readings (a reader token only watches).
SENDERS = ("device", "admin")
#: Devices whose rate is tracked at once (least recently seen forgotten first).
MAX_RATE_DEVICES = 100_000

_log = Logger()


class Auth:
    """The token table in force, the connections each token holds, and the auth counters."""

    def __init__(self, table: TokenTable, counters: Counters):
        self.table = table
        self.stats: AuthStats = counters.auth
        self._closers: dict[str, dict[Callable[[], None], None]] = {}
        self.on_replace: list[Callable[[TokenTable], None]] = []

    def login(self, secret: str | bytes | None, transport: str) -> Token | None:
        """The token for ``secret``, counting the outcome by transport."""
        token = self.table.find(secret) if secret else None
        if token is None:
            self.stats.refused[f"{transport}:{'bad_token' if secret else 'no_token'}"] += 1
        else:
            self.stats.logins[transport] += 1
        return token

    def hold(self, token: Token, close: Callable[[], None]) -> Callable[[], None]:
        """Remember an open connection of ``token``; returns the call that forgets it."""
        closers = self._closers.setdefault(token.name, {})
        closers[close] = None

        def release() -> None:
            held = self._closers.get(token.name)
            if held is not None:
                held.pop(close, None)
                if not held:
                    del self._closers[token.name]

        return release

    def open_connections(self, name: str) -> int:
        return len(self._closers.get(name, ()))

    def replace(self, table: TokenTable) -> list[str]:
        """Put a new table in force; close the connections of tokens it changed or dropped.

        A token is gone when its name is missing or any of its fields changed
        (a new secret, another device, other scopes): its connections were
        admitted under the old entry. Returns the names that lost connections.
        """
        old, self.table = self.table, table
        gone = [
            name
            for name in list(self._closers)
            if table.by_name.get(name) != old.by_name.get(name) or name not in table.by_name
        ]
        for name in gone:
            closers = self._closers.pop(name, {})
            self.stats.revoked_closed += len(closers)
            for close in list(closers):
                try:
                    close()
                except Exception:
                    _log.failure("closing a connection of revoked token {name}", name=name)
        for listener in self.on_replace:
            listener(table)
        return gone


class Ingress:
    """Every device payload passes here on its way to the hub (auth on, or a rate limit set)."""

    def __init__(
        self,
        hub: Hub,
        *,
        auth: Auth | None,
        device_rate: float = 0.0,
        replay: ReplayGuard | None = None,
        on_ahead: Callable[[], None] = lambda: None,
    ):
        self.hub = hub
        self.auth = auth
        self.stats = hub.counters.auth
        self.replay = replay if replay is not None else ReplayGuard()
        self._on_ahead = on_ahead
        self._clock = hub._clock
        self._rate = (
            SourceRateLimiter(device_rate, max_sources=MAX_RATE_DEVICES) if device_rate else None
        )

    @property
    def checks_anything(self) -> bool:
        return self.auth is not None or self._rate is not None

    def ingest(
        self, payload: bytes | str, *, default_device: str, token: Token | None = None
    ) -> IngestOutcome:
        """Parse, apply the device and rate rules, then hand the rest to the hub.

        ``token`` is the connection's (None with auth off). A device token's
        readings without ``device`` are its device's; one naming another
        device is refused as ``forbidden``.
        """
        if not self.checks_anything:
            return self.hub.ingest(payload, default_device=default_device)
        now = self._clock.seconds()
        if token is not None and token.device is not None:
            default_device = token.device
        parsed = parse_payload(payload, default_device=default_device, now_ms=int(now * 1000))
        if token is not None and token.device is not None:
            parsed = self._only_as(parsed, token.device)
        if self._rate is not None:
            parsed = self._limit_rate(parsed, now)
        return self.hub.accept(parsed, source=default_device, now=now)

    def _only_as(self, parsed: ParsedPayload, device: str) -> ParsedPayload:
        if all(r.device == device for r in parsed.readings):
            return parsed
        kept: list[Reading] = []
        errors = list(parsed.errors)
        for index, reading in _indexed(parsed):
            if reading.device == device:
                kept.append(reading)
            else:
                self.stats.forbidden += 1
                errors.append(
                    Rejection(FORBIDDEN, f"this token sends as device {device} only", index)
                )
        return _rebuilt(parsed, kept, errors)

    def _limit_rate(self, parsed: ParsedPayload, now: float) -> ParsedPayload:
        assert self._rate is not None
        kept: list[Reading] = []
        errors = list(parsed.errors)
        limited = False
        for index, reading in _indexed(parsed):
            if self._rate.allow(reading.device, now):
                kept.append(reading)
            else:
                limited = True
                self.stats.rate_limited += 1
                errors.append(
                    Rejection(
                        RATE_LIMITED,
                        f"more than {self._rate.rate:g} readings per second for {reading.device}",
                        index,
                    )
                )
        return _rebuilt(parsed, kept, errors) if limited else parsed

    # -- signed UDP ------------------------------------------------------------

    def ingest_signed(self, datagram: bytes) -> IngestOutcome | None:
        """A UDP datagram under auth; None means drop it without a word (counted).

        Unsigned, unknown device, or a bad signature: None, never an answer
        (a forged source address must not get replies). A good signature
        makes the datagram as trusted as a TCP line from that device: its
        problems are answered like any other.
        """
        assert self.auth is not None
        framed = signing.split(datagram)
        if framed is None:
            self.stats.udp_unsigned += 1
            return None
        payload, signature = framed
        device = _claimed_device(payload)
        tokens = self.auth.table.for_device(device) if device else []
        if device is None or signing.verify(payload, signature, [t.key for t in tokens]) is None:
            self.stats.udp_bad_signature += 1
            return None
        self.stats.logins["udp"] += 1
        now = self._clock.seconds()
        parsed = parse_payload(payload, default_device=device, now_ms=int(now * 1000))
        return self._accept_signed(parsed, device, now)

    def _accept_signed(self, parsed: ParsedPayload, device: str, now: float) -> IngestOutcome:
        parsed = self._only_as(parsed, device)
        errors = list(parsed.errors)
        to_hub: list[Reading] = []
        seen: list[Reading] = []
        acks: list[int] = []  # in input order
        guard, rate = self.replay, self._rate
        # With a history store a retry's ack must wait for (or redo) its first
        # copy's commit, which only the hub's commit gate knows: retries go to
        # the hub, whose gate sorts them (tantra.commits). Without one the
        # guard's word is final, since the hub's window may have forgotten.
        gated = self.hub.acks_wait_for_commit
        for index, reading in _indexed(parsed):
            seq = reading.seq
            verdict = guard.check(device, seq) if seq is not None else None
            if seq is None:
                errors.append(Rejection("invalid_reading", "a signed reading needs seq", index))
            elif verdict == SEEN:
                if gated:
                    to_hub.append(reading)
                else:
                    seen.append(reading)  # a retry: acknowledged again, accepted once
                acks.append(seq)
            elif verdict == REPLAYED and self.hub.accepted_before(device, seq):
                # Below the window, but the hub holds this very reading (stored,
                # or waiting for its commit): a retry whose ack was lost, e.g.
                # across a clean restart. Acknowledged, never accepted again.
                self.stats.replayed_acked += 1
                if gated:
                    to_hub.append(reading)  # the gate makes it a duplicate; its ack waits
                else:
                    seen.append(reading)
                acks.append(seq)
            elif verdict == REPLAYED:
                self.stats.replayed += 1
                errors.append(Rejection(REPLAYED_ERROR, f"seq {seq} was used already", index))
            elif verdict == AHEAD:
                guard.reserve(device, seq)
                self._on_ahead()
                errors.append(
                    Rejection(RETRY, "seq jumped ahead; send it again in a second", index)
                )
            elif rate is not None and not rate.allow(device, now):
                self.stats.rate_limited += 1
                errors.append(
                    Rejection(RATE_LIMITED, f"more than {rate.rate:g} readings per second", index)
                )
            else:
                guard.record(device, seq)
                to_hub.append(reading)
                acks.append(seq)
        errors.sort(key=lambda e: e.index if e.index is not None else -1)
        outcome = self.hub.accept(
            ParsedPayload(tuple(to_hub), tuple(errors), parsed.is_batch), source=device, now=now
        )
        settled = outcome.settled
        if seen and settled is None:  # its first copy may be in this turn, not yet broadcast
            settled = self.hub.until_broadcast()
        return IngestOutcome(
            outcome.accepted,
            [*outcome.duplicates, *seen],
            outcome.errors,
            acks,
            outcome.is_batch,
            settled,
        )


def _indexed(parsed: ParsedPayload) -> list[tuple[int, Reading]]:
    """Each valid reading with its index in the payload (errors hold theirs)."""
    if not parsed.is_batch:
        return [(0, reading) for reading in parsed.readings]
    taken = {error.index for error in parsed.errors}
    indices = (i for i in range(len(parsed.readings) + len(parsed.errors)) if i not in taken)
    return list(zip(indices, parsed.readings, strict=False))


def _rebuilt(parsed: ParsedPayload, kept: list[Reading], errors: list[Rejection]) -> ParsedPayload:
    errors.sort(key=lambda e: e.index if e.index is not None else -1)
    return ParsedPayload(tuple(kept), tuple(errors), parsed.is_batch)


def _claimed_device(payload: bytes) -> str | None:
    """The one ``device`` a payload names (every element of a batch alike), or None."""
    try:
        document: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    elements = document if isinstance(document, list) else [document]
    names = {e.get("device") for e in elements if isinstance(e, dict)}
    if len(names) != 1:
        return None
    name = names.pop()
    return name if isinstance(name, str) else None
