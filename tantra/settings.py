"""Every setting of the hub: names, defaults, parsing and checks, from the CLI or a TOML file.

Owns: the one table of settings (:data:`SPECS`), turning raw values (command
line strings or TOML values) into a checked :class:`Settings`, and the rule
that the command line wins over the file, which wins over the defaults. Every
problem is a :class:`SettingsError` with a message a person can act on.

Does not own: wiring (``tantra.tap``) or the option parser itself.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

DISABLED = "none"


class SettingsError(ValueError):
    """A setting has a value the hub cannot use; the message says which and why."""


def _endpoint(value: Any) -> str | None:
    """A Twisted server endpoint description, checked for syntax; ``none`` disables."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"tcp:{value}"
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("must be a Twisted endpoint string such as tcp:9000, or none")
    value = value.strip()
    if value.lower() == DISABLED:
        return None
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        serverFromString(MemoryReactor(), value)
    except Exception as error:  # the parser raises many kinds; all mean "bad string"
        raise SettingsError(
            f"{value!r} is not a usable endpoint ({error}); e.g. tcp:8080,"
            " tcp:8080:interface=127.0.0.1, ssl:8443:privateKey=k.pem:certKey=c.pem,"
            " unix:/run/tantra.sock"
        ) from None
    return value


def _endpoints(value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise SettingsError("needs at least one endpoint (or none)")
    parsed = [_endpoint(item) for item in values]
    return tuple(item for item in parsed if item is not None)


def _udp_port(value: Any) -> int | None:
    if isinstance(value, str):
        if value.strip().lower() == DISABLED:
            return None
        try:
            value = int(value.strip())
        except ValueError:
            raise SettingsError(f"{value!r} is not a port number (0-65535) or none") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SettingsError(f"{value!r} is not a port number (0-65535) or none")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{value!r} is not a string")
    return value.strip()


_URI_PATTERN = re.compile(r"([^\s.#]+\.)*[^\s.#]+")


def _uri(value: Any) -> str:
    """A WAMP URI such as a realm name: dot-separated, no spaces or ``#``."""
    if not isinstance(value, str) or _URI_PATTERN.fullmatch(value.strip()) is None:
        raise SettingsError(f"{value!r} is not a WAMP URI such as tantra or com.example.farm")
    return value.strip()


def _number(minimum: float, *, integer: bool = False) -> Callable[[Any], float | int]:
    kind = "a whole number" if integer else "a number"

    def parse(value: Any) -> float | int:
        try:
            number = value if isinstance(value, (int, float)) else float(str(value))
            if isinstance(number, bool):
                raise TypeError
            if integer:
                if float(number) != int(float(number)):
                    raise ValueError
                number = int(float(number))
        except (TypeError, ValueError):
            raise SettingsError(f"{value!r} is not {kind}") from None
        if not math.isfinite(number):
            raise SettingsError(f"{value!r} is not a finite number")
        if not number >= minimum:
            raise SettingsError(f"{value!r} must be at least {minimum:g}")
        return number

    return parse


def _store(value: Any) -> str | None:
    """Where history lives: ``sqlite:PATH``, ``postgresql://…`` or ``none``."""
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("must be sqlite:PATH, postgresql://user@host/db or none")
    value = value.strip()
    if value.lower() == DISABLED:
        return None
    if value.startswith("sqlite:") and len(value) > len("sqlite:"):
        return value
    if value.startswith(("postgresql://", "postgres://")):
        return value
    raise SettingsError(
        f"{value!r} is not a store; use sqlite:PATH (e.g. sqlite:tantra.sqlite3),"
        " postgresql://user:password@host/database, or none"
    )


_DURATION = re.compile(r"(\d+)(s|m|h|d|w)")
_DURATION_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _retention(value: Any) -> int | None:
    """How long raw readings are kept, e.g. ``30d``, in ms; ``none``/``all`` keeps all."""
    text = str(value).strip().lower() if isinstance(value, (str, int)) else ""
    if text in (DISABLED, "all", ""):
        return None
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise SettingsError(f"{value!r} is not a duration such as 12h, 30d or 8w (or none)")
    return int(match.group(1)) * _DURATION_MS[match.group(2)]


@attrs.frozen
class Spec:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


SPECS: tuple[Spec, ...] = (
    Spec("http", ("tcp:8080",), _endpoints,
         "HTTP + WebSocket endpoint (dashboards at /); repeatable"),
    Spec("tcp", "tcp:9000", _endpoint, "raw newline-delimited JSON endpoint for devices"),
    Spec("udp", 9000, _udp_port, "UDP port for one-datagram readings"),
    Spec("udp-interface", "", _text, "address the UDP port binds to (default: all)"),
    Spec("ping-interval", 30.0, _number(0), "seconds between WebSocket pings (0: off)"),
    Spec("ping-timeout", 10.0, _number(0.1), "seconds a WebSocket client has to answer a ping"),
    Spec("stall-timeout", 30.0, _number(0.1),
         "seconds a dashboard may leave its buffer full before it is closed (4001)"),
    Spec("max-line", 65536, _number(64, integer=True),
         "longest TCP line / WebSocket message in bytes"),
    Spec("idle-timeout", 300.0, _number(0.1), "seconds of TCP silence before the hub hangs up"),
    Spec("udp-error-rate", 10.0, _number(0), "error replies per second per UDP source address"),
    Spec("dedupe-size", 1024, _number(1, integer=True), "seq numbers remembered per device"),
    Spec("dedupe-seconds", 300.0, _number(0.1), "seconds a seq number is remembered"),
    Spec("max-sensors", 100_000, _number(1, integer=True), "sensors kept in the last-value cache"),
    Spec("realm", "tantra", _uri, "WAMP realm served at /wamp"),
    # -- history (tantra.store) --
    Spec("store", "sqlite:tantra.sqlite3", _store,
         "where history lives: sqlite:PATH, postgresql://user@host/db, or none"),
    Spec("commit-interval", 10.0, _number(0),
         "ms at most between two history commits (group commit)"),
    Spec("retention", "none", _retention,
         "how long raw history is kept, e.g. 30d (rollups longer); none keeps all"),
)  # fmt: skip
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@attrs.frozen
class Settings:
    """The checked settings the hub runs with."""

    http: tuple[str, ...]
    tcp: str | None
    udp: int | None
    udp_interface: str
    ping_interval: float
    ping_timeout: float
    stall_timeout: float
    max_line: int
    idle_timeout: float
    udp_error_rate: float
    dedupe_size: int
    dedupe_seconds: float
    max_sensors: int
    realm: str
    store: str | None = None
    commit_interval: float = 10.0
    retention: int | None = None


def load_toml(path: str) -> dict[str, Any]:
    """Read a settings file; unreadable or malformed files are a SettingsError."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {path} is not valid TOML: {error}") from None
    unknown = sorted(key for key in data if key not in SPEC_BY_NAME)
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)};"
            f" known: {', '.join(SPEC_BY_NAME)}"
        )
    return data


def resolve(command_line: Mapping[str, Any], config_file: Mapping[str, Any]) -> Settings:
    """Defaults, overridden by the config file, overridden by the command line."""
    values: dict[str, Any] = {}
    for spec in SPECS:
        if command_line.get(spec.name) is not None:
            raw, origin = command_line[spec.name], f"--{spec.name}"
        elif spec.name in config_file:
            raw, origin = config_file[spec.name], f"{spec.name} (config file)"
        else:
            raw, origin = spec.default, None
        try:
            values[spec.name.replace("-", "_")] = spec.parse(raw)
        except SettingsError as error:
            raise SettingsError(f"{origin or spec.name}: {error}") from None
    return Settings(**values)
