"""Configuration in two layers: options → settings, then settings → services."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from tantra.settings import Settings, resolve
from tantra.tap import ListenerService, Options, build_service, makeService
from tantra.transports.raw import DeviceDatagramProtocol, DeviceLineFactory


class MemoryReactorWithUDP(MemoryReactorClock):
    """MemoryReactorClock lacks listenUDP; record the calls like tcpServers."""

    def __init__(self):
        super().__init__()
        self.udpServers = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        return super().listenTCP(port, None, interface=interface)


def parse(*args: str) -> Settings:
    options = Options()
    options.parseOptions(list(args))
    return options.settings


def test_defaults_match_the_spec():
    settings = parse()
    assert settings.http == ("tcp:8080",)
    assert settings.tcp == "tcp:9000"
    assert settings.udp == 9000
    assert settings.udp_interface == ""
    assert (settings.ping_interval, settings.ping_timeout) == (30.0, 10.0)
    assert (settings.max_line, settings.idle_timeout) == (65536, 300.0)
    assert settings.udp_error_rate == 10.0


def test_http_is_repeatable_and_none_disables():
    settings = parse("--http", "tcp:8081", "--http", "unix:/tmp/t.sock", "--tcp", "none",
                     "--udp", "none")  # fmt: skip
    assert settings.http == ("tcp:8081", "unix:/tmp/t.sock")
    assert settings.tcp is None and settings.udp is None
    assert parse("--http", "none").http == ()


def test_config_file_then_command_line(tmp_path):
    config = tmp_path / "tantra.toml"
    config.write_text(
        'http = ["tcp:7001", "tcp:7002"]\ntcp = "tcp:7003"\nudp = 7004\n'
        'udp-interface = "127.0.0.1"\nidle-timeout = 60\n'
    )
    settings = parse("--config", str(config), "--tcp", "tcp:7777")
    assert settings.http == ("tcp:7001", "tcp:7002")
    assert settings.tcp == "tcp:7777", "command line wins"
    assert settings.udp == 7004
    assert settings.udp_interface == "127.0.0.1"
    assert settings.idle_timeout == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tcp", "tcp:notaport"], "--tcp: 'tcp:notaport' is not a usable endpoint"),
        (["--http", "bogus:1"], "--http: 'bogus:1' is not a usable endpoint"),
        (["--udp", "70000"], "--udp: 70000 is not a port number (0-65535) or none"),
        (["--udp", "abc"], "--udp: 'abc' is not a port number"),
        (["--idle-timeout", "-1"], "--idle-timeout: '-1' must be at least 0.1"),
        (["--idle-timeout", "soon"], "--idle-timeout: 'soon' is not a number"),
        (["--max-line", "1.5"], "--max-line: '1.5' is not a whole number"),
        (["--ping-interval", "nan"], "--ping-interval: 'nan' is not a finite number"),
        (["--config", "/nonexistent/t.toml"], "cannot read config file /nonexistent/t.toml"),
        # Sizes have a maximum: a typo's extra digits were a MemoryError at start.
        (["--dedupe-size", "99999999999999"], "--dedupe-size: '99999999999999' must be at most"),
        (["--dedupe-devices", "1e23"], "--dedupe-devices: '1e23' must be at most 10,000,000"),
        (["--max-line", "99999999999999999999"], "--max-line: '99999999999999999999' must be at"),
    ],
)
def test_bad_values_are_usage_errors(args, message):
    with pytest.raises(usage.UsageError) as raised:
        parse(*args)
    assert str(raised.value).startswith(message)


def test_an_oversized_value_in_the_config_file_is_one_line_too(tmp_path):
    config = tmp_path / "huge.toml"
    config.write_text("[dedupe]\nsize = 99999999999999\n")
    with pytest.raises(usage.UsageError) as raised:
        parse("--config", str(config))
    assert "must be at most 1,048,576" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_config_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("http = [")
    with pytest.raises(usage.UsageError, match="is not valid TOML"):
        parse("--config", str(broken))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('htp = "tcp:1"\n')
    with pytest.raises(usage.UsageError, match="unknown setting"):
        parse("--config", str(unknown))
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text("udp = true\n")
    with pytest.raises(usage.UsageError, match=r"udp \(config file\)"):
        parse("--config", str(wrong_type))


def test_make_service_builds_one_listener_per_endpoint():
    reactor = MemoryReactorWithUDP()
    settings = resolve({"http": ["tcp:8080", "tcp:8443"], "udp": "9001", "store": "none"}, {})
    top = build_service(settings, reactor)
    listeners = [child for child in top if isinstance(child, ListenerService)]
    assert [(lst.kind, lst.description) for lst in listeners] == [
        ("http", "tcp:8080"),
        ("http", "tcp:8443"),
        ("tcp", "tcp:9000"),
        ("udp", "*:9001"),
    ]
    top.startService()
    assert [port for port, *_ in reactor.tcpServers] == [8080, 8443, 9000, 9001]
    ((udp_port, udp_protocol, *_),) = reactor.udpServers
    assert udp_port == 9001 and isinstance(udp_protocol, DeviceDatagramProtocol)
    assert isinstance(reactor.tcpServers[2][1], DeviceLineFactory)
    assert all(lst.ready.called for lst in listeners)
    top.stopService()


def test_disabled_listeners_are_not_built():
    reactor = MemoryReactorClock()
    top = build_service(resolve({"tcp": "none", "udp": "none"}, {}), reactor)
    assert [lst.kind for lst in top if isinstance(lst, ListenerService)] == ["http"]


def test_make_service_accepts_plain_options():
    reactor = MemoryReactorClock()
    options = Options()
    options.parseOptions(["--udp", "none"])
    top = makeService(options, reactor)
    assert [lst.kind for lst in top if isinstance(lst, ListenerService)] == ["http", "tcp"]


def test_every_setting_is_declared_once_and_is_an_option():
    import attrs

    from tantra.settings import SPECS

    assert [spec.name.replace("-", "_") for spec in SPECS] == [
        field.name for field in attrs.fields(Settings)
    ]
    options = Options()
    for spec in SPECS:
        assert spec.name in options, spec.name


def test_config_tables_mean_the_same_as_flat_keys(tmp_path):
    tables = tmp_path / "tables.toml"
    tables.write_text(
        '[http]\nlisten = ["tcp:7001", "tcp:7002"]\n'
        '[tcp]\nlisten = "tcp:7003"\nidle-timeout = 60\n'
        '[udp]\nport = 7004\ninterface = "127.0.0.1"\nudp-error-rate = 5\n'
        "[websocket]\nping-interval = 0\n"
        "[dedupe]\nsize = 8\n"
        "[limits]\nmax-sensors = 10\n"
        '[wamp]\nrealm = "farm"\n'
    )
    flat = tmp_path / "flat.toml"
    flat.write_text(
        'http = ["tcp:7001", "tcp:7002"]\ntcp = "tcp:7003"\nidle-timeout = 60\nudp = 7004\n'
        'udp-interface = "127.0.0.1"\nudp-error-rate = 5\nping-interval = 0\n'
        'dedupe-size = 8\nmax-sensors = 10\nrealm = "farm"\n'
    )
    settings = parse("--config", str(tables))
    assert settings == parse("--config", str(flat))
    assert settings.udp_error_rate == 5 and settings.udp == 7004 and settings.realm == "farm"
    assert parse("--config", str(tables), "--udp-error-rate", "7").udp_error_rate == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[udp]\ncolour = 1\n", r"unknown setting\(s\) \[udp\] colour; known: http,"),
        ("[mqtt]\nport = 1\n", r"unknown setting\(s\) \[mqtt\] port;"),
        ("htp = 1\n[udp]\nx = 1\n", r"unknown setting\(s\) htp, \[udp\] x;"),
        ("[realm]\nx = 1\n", r"unknown setting\(s\) \[realm\];"),
        ("udp-error-rate = 1\n[udp]\nerror-rate = 2\n",
         r"udp-error-rate is given twice \(udp-error-rate and \[udp\] error-rate\)"),
        ("[udp]\nerror-rate = 1\nudp-error-rate = 2\n", "is given twice"),
        ("[udp]\nport = true\n", r"\[udp\] port \(config file\): True is not a port number"),
    ],
)  # fmt: skip
def test_bad_config_tables_name_the_key(tmp_path, text, message):
    config = tmp_path / "t.toml"
    config.write_text(text)
    with pytest.raises(usage.UsageError, match=message):
        parse("--config", str(config))


def test_readme_options_table_lists_every_setting_with_its_table():
    import pathlib
    import re

    from tantra.settings import SPECS

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| `--([a-z-]+)` \| (\S[^|]*?) \|", readme, re.MULTILINE))
    assert {name: rows.get(name) for name in (s.name for s in SPECS)} == {
        spec.name: f"`[{spec.section}] {spec.key}`" for spec in SPECS
    }


def test_checking_settings_needs_no_test_doubles_from_twisted():
    import subprocess
    import sys

    code = (
        "import sys; from tantra.tap import Options; o = Options();"
        " o.parseOptions(['--http', 'tcp:1', '--tcp', 'unix:/tmp/t.sock']);"
        " assert 'twisted.internet.testing' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_dedupe_devices_is_a_dedupe_table_key_and_reaches_the_hubs_window(tmp_path):
    config = tmp_path / "dedupe.toml"
    config.write_text("[dedupe]\ndevices = 20\nsize = 8\n")
    settings = parse("--config", str(config))
    assert (settings.dedupe_devices, settings.dedupe_size) == (20, 8)
    assert parse().dedupe_devices == 500_000
    assert parse("--config", str(config), "--dedupe-devices", "30").dedupe_devices == 30
    window = build_service(settings, MemoryReactorClock()).hub._dedupe
    assert (window.max_devices, window.size) == (20, 8)
    with pytest.raises(usage.UsageError, match="dedupe-devices"):
        parse("--dedupe-devices", "0")


def test_help_says_what_an_empty_default_means_and_never_all_for_a_file():
    from tantra.tap import Options

    text = " ".join(str(Options()).split())
    assert "(default: off; tantra token add ...)" in text
    assert "(default: beside --auth)" in text
    assert "[default: all]" not in text and "[default: ]" not in text
    assert "[default: 65536]" in text  # a real default is still shown
