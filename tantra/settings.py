"""Every setting of the hub: names, defaults, parsing and checks, from the CLI or a TOML file.

Owns: the one declaration of every setting (the fields of :class:`Settings`,
each with its default, check, help and TOML table; :data:`SPECS` is derived
from them), the shape of the config file (flat keys or ``[tables]``),
turning raw values (command line strings or TOML values) into a checked
:class:`Settings`, and the rule that the command line wins over the file,
which wins over the defaults. Every problem is a :class:`SettingsError` with
a message a person can act on.

A new setting is one field here (``setting(default, check, help,
section=...)``) and its use in ``tantra.tap``.

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


class _ParsingOnly:
    """Stands in for the reactor while an endpoint string is only checked.

    ``serverFromString`` parses the string and builds an endpoint that keeps
    its reactor for a later ``listen()``; it never calls it. Settings must not
    need the real reactor (or a test double from ``twisted.internet.testing``).
    """

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"an endpoint used its reactor ({name}) while only being parsed")


_PARSING_ONLY = _ParsingOnly()


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

    try:
        serverFromString(_PARSING_ONLY, value)
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


def _path(value: Any) -> str:
    """A file path, or empty for none."""
    if not isinstance(value, str):
        raise SettingsError(f"{value!r} is not a file path")
    return value.strip()


def _origins(value: Any) -> tuple[str, ...]:
    """Browser origins (``https://farm.example:8443``), comma-separated or a list; empty: any."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise SettingsError(f"{value!r} is not a list of origins")
    origins = tuple(i.strip().rstrip("/").lower() for i in items if i.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(f"{origin!r} is not an origin such as https://farm.example:8443")
    return origins


#: Bytes in a mebibyte, for the size settings' maxima.
MIB = 1024 * 1024


def _number(
    minimum: float, *, integer: bool = False, maximum: float = math.inf
) -> Callable[[Any], float | int]:
    """A number from ``minimum`` to ``maximum``. Sizes get a maximum so that a
    typo's extra digits stop start-up with one line instead of a MemoryError."""
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
        if number > maximum:
            raise SettingsError(f"{value!r} must be at most {maximum:,.0f}")
        return number

    return parse


def _flag(value: Any) -> bool:
    """A switch: true/false in a file, present or absent on the command line."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise SettingsError(f"{value!r} is not true or false")


def _mqtt_url(value: Any) -> str | None:
    """A broker URL, mqtt[s]://[user:password@]host[:port]; none (the default) disables."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", DISABLED)):
        return None
    from tantra.bus.client import BrokerUrl, BrokerUrlError

    try:
        BrokerUrl.parse(_text(value))
    except BrokerUrlError as error:
        raise SettingsError(str(error)) from None
    return _text(value)


def _topic_prefix(value: Any) -> str:
    from tantra.bus.topics import check_prefix

    prefix = _text(value).strip("/")
    problem = check_prefix(prefix)
    if problem:
        raise SettingsError(problem)
    return prefix


def _qos(value: Any) -> int:
    qos = _number(0, integer=True)(value)
    if qos > 1:
        raise SettingsError(f"{value!r}: QoS must be 0 or 1")
    return int(qos)


def _optional_name(value: Any) -> str | None:
    """A cluster name or client id: a name of [A-Za-z0-9_-] (a topic level), or none."""
    if value is None:
        return None
    text = _text(value)
    if text.lower() in ("", DISABLED):
        return None
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) is None:
        raise SettingsError(f"{text!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return text


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
    """One setting as the command line and the config file know it.

    ``name`` is the option (``--udp-error-rate``) and the flat TOML key;
    ``section`` is its TOML table and ``key`` its name there (``[udp]
    error-rate``): the name without the section's prefix, unless declared.
    """

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    section: str
    key: str


def setting(
    default: Any, parse: Callable[[Any], Any], help: str, *, section: str, key: str | None = None
) -> Any:
    """Declare one field of :class:`Settings`: everything the option and the file need."""
    return attrs.field(
        metadata={_SPEC: {"default": default, "parse": parse, "help": help,
                          "section": section, "key": key}}
    )  # fmt: skip


_SPEC = "tantra.setting"


@attrs.frozen
class Settings:
    """The checked settings the hub runs with; each field declares its option once."""

    http: tuple[str, ...] = setting(
        ("tcp:8080",),
        _endpoints,
        "HTTP + WebSocket endpoint (dashboards at /); repeatable",
        section="http",
        key="listen",
    )
    tcp: str | None = setting(
        "tcp:9000",
        _endpoint,
        "raw newline-delimited JSON endpoint for devices",
        section="tcp",
        key="listen",
    )
    udp: int | None = setting(
        9000, _udp_port, "UDP port for one-datagram readings", section="udp", key="port"
    )
    udp_interface: str = setting(
        "", _text, "address the UDP port binds to (default: all)", section="udp"
    )
    ping_interval: float = setting(
        30.0, _number(0), "seconds between WebSocket pings (0: off)", section="websocket"
    )
    ping_timeout: float = setting(
        10.0, _number(0.1), "seconds a WebSocket client has to answer a ping", section="websocket"
    )
    stall_timeout: float = setting(
        30.0,
        _number(0.1),
        "seconds a dashboard may leave its buffer full before it is closed (4001)",
        section="websocket",
    )
    max_line: int = setting(
        65536,
        _number(64, integer=True, maximum=16 * MIB),
        "longest TCP line / WebSocket message in bytes",
        section="limits",
    )
    reply_buffer: int = setting(
        65536,
        _number(1024, integer=True, maximum=64 * MIB),
        "unwritten bytes per connection before the hub stops reading a client"
        " that does not read its replies (and conflates a dashboard)",
        section="limits",
    )
    backlog: int = setting(
        4096,
        _number(1, integer=True, maximum=65535),
        "listen backlog of the TCP listeners (the kernel caps it at net.core.somaxconn)",
        section="limits",
    )
    idle_timeout: float = setting(
        300.0, _number(0.1), "seconds of TCP silence before the hub hangs up", section="tcp"
    )
    udp_error_rate: float = setting(
        10.0, _number(0), "error replies per second per UDP source address", section="udp"
    )
    dedupe_size: int = setting(
        1024,
        _number(1, integer=True, maximum=1 << 20),
        "seq numbers remembered per device",
        section="dedupe",
    )
    dedupe_seconds: float = setting(
        300.0,
        _number(0.1),
        "seconds of silence after which a device's seq window is forgotten",
        section="dedupe",
    )
    dedupe_devices: int = setting(
        500_000,
        _number(1, integer=True, maximum=10_000_000),
        "devices tracked for de-duplication (~200-450 bytes each)",
        section="dedupe",
    )
    max_sensors: int = setting(
        100_000,
        _number(1, integer=True, maximum=10_000_000),
        "sensors kept in the last-value cache",
        section="limits",
    )
    realm: str = setting("tantra", _uri, "WAMP realm served at /wamp", section="wamp")
    wamp_max_subscriptions: int = setting(
        1000,
        _number(1, integer=True, maximum=1_000_000),
        "subscriptions one WAMP session may hold",
        section="wamp",
    )
    wamp_max_registrations: int = setting(
        100,
        _number(1, integer=True, maximum=1_000_000),
        "procedures one WAMP session may register",
        section="wamp",
    )
    wamp_max_pending_calls: int = setting(
        1000,
        _number(1, integer=True, maximum=1_000_000),
        "calls one WAMP session may have waiting for an answer (callees and built-ins together)",
        section="wamp",
    )
    wamp_call_timeout: float = setting(
        60.0,
        _number(0),
        "seconds a WAMP callee has to answer (wamp.error.timeout; 0: no limit)",
        section="wamp",
    )
    auth: str = setting(
        "",
        _path,
        "token file; turns authentication on for every transport"
        " (default: off; tantra token add ...)",
        section="auth",
        key="file",
    )
    replay_state: str = setting(
        "",
        _path,
        "file keeping signed-UDP replay marks across restarts (default: beside --auth)",
        section="auth",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        _origins,
        "browser origins allowed for WebSocket and API requests, comma-separated (default: any)",
        section="auth",
    )
    device_rate: float = setting(
        0.0,
        _number(0),
        "readings per second per device, burst of the same size (0: no limit)",
        section="auth",
    )
    max_connections_per_address: int = setting(
        0,
        _number(0, integer=True, maximum=1_000_000),
        "open TCP/HTTP/WebSocket connections per client address (0: no limit)",
        section="auth",
    )
    wamp_max_outgoing: int = setting(
        1048576,
        _number(1024, integer=True, maximum=64 * MIB),
        "largest WAMP message sent to a client, in bytes (larger: an ERROR)",
        section="wamp",
    )
    mqtt: str | None = setting(
        None,
        _mqtt_url,
        "MQTT broker to bridge and cluster through: mqtt[s]://[user:password@]host[:port]",
        section="mqtt",
        key="url",
    )
    mqtt_prefix: str = setting(
        "tantra", _topic_prefix, "first topic level(s) of every hub topic", section="mqtt"
    )
    mqtt_qos: int = setting(
        1, _qos, "QoS of readings, acks and errors the hub publishes (0 or 1)", section="mqtt"
    )
    mqtt_discovery: bool = setting(
        False, _flag, "publish Home Assistant discovery configs for new sensors", section="mqtt"
    )
    mqtt_client_id: str | None = setting(
        None,
        _optional_name,
        "MQTT client id (default: tantra-<random>); a fixed id keeps a broker session",
        section="mqtt",
    )
    mqtt_connect_timeout: float = setting(
        10.0,
        _number(0.1),
        "seconds to connect to the broker (TCP, TLS, CONNACK) before trying again",
        section="mqtt",
    )
    cluster: str | None = setting(
        None,
        _optional_name,
        "cluster name: hubs on one broker with the same name act as one hub (needs --mqtt)",
        section="mqtt",
    )
    # -- history (tantra.store) --
    store: str | None = setting(
        "sqlite:tantra.sqlite3",
        _store,
        "where history lives: sqlite:PATH, postgresql://user@host/db, or none",
        section="store",
        key="url",
    )
    commit_interval: float = setting(
        10.0,
        _number(0, maximum=60_000),
        "ms at most between two history commits (group commit)",
        section="store",
    )
    retention: int | None = setting(
        "none",
        _retention,
        "how long raw history is kept, e.g. 30d (rollups longer); none keeps all",
        section="store",
    )


def _spec_of(field: attrs.Attribute) -> Spec:
    declared = field.metadata[_SPEC]
    name = field.name.replace("_", "-")
    section, key = declared["section"], declared["key"]
    if key is None:
        key = name.removeprefix(f"{section}-")
    return Spec(name, declared["default"], declared["parse"], declared["help"], section, key)


#: Every setting, in declaration order (the order of ``--help``).
SPECS: tuple[Spec, ...] = tuple(_spec_of(field) for field in attrs.fields(Settings))
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
#: TOML table -> key (short, or the full name) -> setting.
SECTIONS: dict[str, dict[str, Spec]] = {}
for _spec in SPECS:
    SECTIONS.setdefault(_spec.section, {}).update({_spec.key: _spec, _spec.name: _spec})
del _spec


def _known() -> str:
    tables = "; ".join(
        f"[{section}] " + ", ".join(spec.key for spec in SPECS if spec.section == section)
        for section in SECTIONS
    )
    return f"{', '.join(SPEC_BY_NAME)}, or in tables: {tables}"


def flatten(data: Mapping[str, Any], where: str) -> dict[str, tuple[Any, str]]:
    """A config file's settings by name, with how each was written (for messages).

    Flat keys (``udp-error-rate = 5``) and tables (``[udp]`` with
    ``error-rate = 5``, or the full name) mean the same; a table value is
    a section, anything else a setting. Every unknown key is named in one
    error, and so is a setting given twice.
    """
    found: dict[str, tuple[Any, str]] = {}
    unknown: list[str] = []

    def put(spec: Spec, value: Any, spelled: str) -> None:
        if spec.name in found:
            raise SettingsError(
                f"{where}: {spec.name} is given twice ({found[spec.name][1]} and {spelled})"
            )
        found[spec.name] = (value, spelled)

    for key, value in data.items():
        if isinstance(value, dict) and key in SECTIONS:
            for inner, inner_value in value.items():
                spec = SECTIONS[key].get(inner)
                if spec is None:
                    unknown.append(f"[{key}] {inner}")
                else:
                    put(spec, inner_value, f"[{key}] {inner}")
        elif not isinstance(value, dict) and key in SPEC_BY_NAME:
            put(SPEC_BY_NAME[key], value, key)
        else:
            unknown.append(f"[{key}]" if isinstance(value, dict) else key)
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {_known()}")
    return found


def load_toml(path: str) -> dict[str, Any]:
    """Read a settings file; unreadable or malformed files are a SettingsError."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {path} is not valid TOML: {error}") from None
    flatten(data, f"config file {path}")
    return data


def resolve(command_line: Mapping[str, Any], config_file: Mapping[str, Any]) -> Settings:
    """Defaults, overridden by the config file, overridden by the command line.

    ``config_file`` is what :func:`load_toml` returns: flat keys, tables, or both.
    """
    from_file = flatten(config_file, "config file")
    values: dict[str, Any] = {}
    for spec in SPECS:
        if command_line.get(spec.name) is not None:
            raw, origin = command_line[spec.name], f"--{spec.name}"
        elif spec.name in from_file:
            raw, spelled = from_file[spec.name]
            origin = f"{spelled} (config file)"
        else:
            raw, origin = spec.default, None
        try:
            values[spec.name.replace("-", "_")] = spec.parse(raw)
        except SettingsError as error:
            raise SettingsError(f"{origin or spec.name}: {error}") from None
    if values["cluster"] and not values["mqtt"]:
        raise SettingsError("--cluster needs --mqtt (the hubs of a cluster meet on a broker)")
    return Settings(**values)
