"""``tantra send/simulate/tail/export --token`` against a real ``twistd -n tantra --auth``.

Each command as a subprocess, as an operator would run it: with the right
token it works (TCP auth line, WebSocket and API Bearer, signed UDP), without
one or with a wrong one it fails in one line, and a reader's token shows only
its scope.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

TANTRA = str(Path(sys.executable).with_name("tantra"))
WRONG = "tantra_" + "w" * 64


def tantra(*args: str, token: str | None = None, timeout: float = 30):
    env = {k: v for k, v in os.environ.items() if k != "TANTRA_TOKEN"}
    if token is not None:
        env["TANTRA_TOKEN"] = token
    return subprocess.run([TANTRA, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub")
    auth = workdir / "auth.json"
    tokens = {}
    for name, args in (
        ("pump", ["--kind", "device"]),
        ("fan", ["--kind", "device"]),
        ("sim-1", ["--kind", "device"]),
        ("ro", ["--kind", "reader", "--scope", "pump/*"]),
        ("ops", ["--kind", "admin"]),
    ):
        done = tantra("token", "add", "--auth", str(auth), *args, name)
        assert done.returncode == 0, done.stderr
        tokens[name] = json.loads(done.stdout)["token"]
    hub = HubProcess.start(workdir, "--auth", str(auth))
    hub.tokens = tokens
    yield hub
    hub.stop()


def url(hub, kind: str) -> str:
    port = hub.ports["http" if kind in ("ws", "http") else kind]
    return f"{kind}://127.0.0.1:{port}" + ("/" if kind == "ws" else "")


@pytest.mark.parametrize("kind", ["tcp", "ws", "udp"])
def test_send_with_a_device_token_is_acked(hub, kind):
    seq = {"tcp": 1, "ws": 2, "udp": 3}[kind]
    done = tantra(
        "send", "--url", url(hub, kind), "--device", "pump", "--seq", str(seq), "--token",
        hub.tokens["pump"], "flow", "3.5",
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, f'{{"ack":{seq}}}', "")


@pytest.mark.parametrize(
    ("kind", "token", "error"),
    [
        (
            "tcp",
            WRONG,
            'tantra send: the hub refused the token: the first line must be {"auth": TOKEN}'
            " with a device token",
        ),
        ("ws", None, "tantra send: the hub wants a token (--token) or refused this one (HTTP 401)"),
        (
            "ws",
            WRONG,
            "tantra send: the hub wants a token (--token) or refused this one (HTTP 401)",
        ),
        ("udp", None, "tantra send: no reply from udp://127.0.0.1:{udp} within 1 s"),
        ("udp", WRONG, "tantra send: no reply from udp://127.0.0.1:{udp} within 1 s"),
    ],
)
def test_send_without_the_right_token_fails_in_one_line(hub, kind, token, error):
    args = ["send", "--url", url(hub, kind), "--device", "pump", "--seq", "50", "--timeout", "1"]
    if token is not None:
        args += ["--token", token]
    done = tantra(*args, "flow", "1")
    assert done.returncode == 1
    assert done.stderr.strip() == error.replace("{udp}", str(hub.ports["udp"]))


def test_send_over_tcp_without_a_token_prints_the_hubs_refusal(hub):
    done = tantra("send", "--url", url(hub, "tcp"), "--seq", "1", "flow", "1")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == "unauthorized"


def test_send_signed_udp_needs_device_and_seq(hub):
    done = tantra("send", "--url", url(hub, "udp"), "--token", hub.tokens["pump"], "flow", "1")
    assert done.returncode == 2
    assert "a signed UDP reading needs --device (the token's) and --seq" in done.stderr


def test_a_device_token_sends_only_as_its_device(hub):
    done = tantra(
        "send", "--url", url(hub, "tcp"), "--device", "fan", "--seq", "9", "--token",
        hub.tokens["pump"], "flow", "1",
    )  # fmt: skip
    assert done.returncode == 1 and json.loads(done.stdout)["error"] == "forbidden"


@pytest.mark.parametrize("kind", ["tcp", "ws"])
def test_simulate_with_an_admin_token_from_the_environment(hub, kind):
    done = tantra(
        "simulate", "--url", url(hub, kind), "--devices", "3", "--count", "6", "--rate", "50",
        "--sensors", "t", "--prefix", f"adm-{kind}", "--quiet",
        token=hub.tokens["ops"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout)
    assert (totals["acked"], totals["errors"]) == (6, 0)


def test_simulate_signed_udp_as_the_tokens_device(hub):
    done = tantra(
        "simulate", "--url", url(hub, "udp"), "--devices", "1", "--count", "4", "--rate", "50",
        "--sensors", "t", "--prefix", "sim", "--quiet", "--token", hub.tokens["sim-1"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["acked"] == 4
    many = tantra("simulate", "--url", url(hub, "udp"), "--devices", "2", "--token", "x")
    assert many.returncode == 2 and "signed UDP sends as the token's own device" in many.stderr


def test_tail_and_export_with_a_reader_token_see_its_scope(hub, tmp_path):
    for device, seq in (("pump", 100), ("fan", 101)):
        done = tantra(
            "send", "--url", url(hub, "tcp"), "--device", device, "--seq", str(seq),
            "--token", hub.tokens[device], "level", str(seq),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    tail = tantra(
        "tail", "--url", url(hub, "ws"), "--sensor", "level", "--since=-1h", "--json",
        "--count", "1", "--token", hub.tokens["ro"],
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    assert [(r["device"], r["value"]) for r in map(json.loads, tail.stdout.splitlines())] == [
        ("pump", 100)
    ]
    out = tmp_path / "export.ndjson"
    done = tantra(
        "export", "--url", url(hub, "http"), "--format", "ndjson", "--sensor", "level",
        "--from=-1h", "-o", str(out), "--quiet", token=hub.tokens["ro"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["device"] for line in out.read_text().splitlines()] == ["pump"]
    admin = tantra(
        "export", "--url", url(hub, "http"), "--format", "ndjson", "--sensor", "level",
        "--from=-1h", "--quiet", "--token", hub.tokens["ops"],
    )  # fmt: skip
    assert sorted(json.loads(line)["device"] for line in admin.stdout.splitlines()) == [
        "fan",
        "pump",
    ]


def test_tail_and_export_without_a_token_fail_in_one_line(hub, tmp_path):
    tail = tantra("tail", "--url", url(hub, "ws"), "--count", "1", "--timeout", "2")
    assert tail.returncode == 1
    assert tail.stderr.strip() == (
        "tantra tail: the hub wants a token (--token) or refused this one (HTTP 401)"
    )
    out = tmp_path / "nothing.csv"
    done = tantra("export", "--url", url(hub, "http"), "-o", str(out), "--token", WRONG)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "tantra export: the hub wants a token (--token or $TANTRA_TOKEN) or refused this one"
    )
    assert not out.exists() and not Path(str(out) + ".part").exists()
