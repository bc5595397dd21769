"""The tantra commands against a real twistd hub, bad arguments included (each a subprocess)."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tantra.cli import COMMANDS
from tests.support.broker import HOST, PORT, clear_retained, free_port, need_broker, random_prefix
from tests.support.clients import dashboard, wait_for
from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

TANTRA = str(Path(sys.executable).with_name("tantra"))


def tantra(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([TANTRA, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = HubProcess.start(tmp_path_factory.mktemp("hub"), "--store", "none")
    yield hub
    hub.stop()


def urls(hub) -> dict[str, str]:
    return {
        "tcp": f"tcp://127.0.0.1:{hub.ports['tcp']}",
        "udp": f"udp://127.0.0.1:{hub.ports['udp']}",
        "ws": f"ws://127.0.0.1:{hub.ports['http']}/",
        "http": f"http://127.0.0.1:{hub.ports['http']}",
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    done = tantra(command, "--help")
    assert done.returncode == 0 and f"usage: tantra {command}" in done.stdout


@pytest.mark.parametrize("kind", ["tcp", "udp", "ws"])
def test_send_prints_the_ack_and_the_reading_reaches_a_dashboard(hub, kind):
    device = f"cli-send-{kind}"
    with dashboard(hub.ws_url + f"?device={device}") as ws:
        done = tantra(
            "send",
            "--url",
            urls(hub)[kind],
            "--device",
            device,
            "--seq",
            "1",
            "soilMoisture",
            "42",
            "--unit",
            "%",
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, '{"ack":1}\n', "")
        reading, _ = wait_for(ws, lambda m: m.get("device") == device)
    assert (reading["sensor"], reading["value"], reading["unit"], reading["seq"]) == (
        "soilMoisture",
        42,
        "%",
        1,
    )


@pytest.mark.parametrize(
    ("args", "status", "error"),
    [
        (["soil", "wet"], 2, "tantra send: value 'wet': must be a number, true or false\n"),
        (
            ["so il", "1"],
            2,
            "tantra send: the hub would refuse this reading: sensor must be 1-64 characters of A-Z a-z 0-9 _ -\n",
        ),
        (
            ["soil", "1", "--unit", "x" * 17],
            2,
            "tantra send: the hub would refuse this reading: unit must be a text string of at most 16 characters\n",
        ),
        (
            ["soil", "1", "--url", "http://localhost"],
            2,
            "tantra send: --url 'http://localhost': the scheme must be one of tcp, udp, ws, mqtt\n",
        ),
        (
            ["soil", "1", "--url", "tcp://localhost:99999"],
            2,
            "tantra send: --url 'tcp://localhost:99999': Port out of range 0-65535\n",
        ),
    ],
)
def test_send_refuses_bad_arguments_in_one_line(args, status, error):
    done = tantra("send", *args)
    assert (done.returncode, done.stdout, done.stderr) == (status, "", error)


def test_send_says_when_the_hub_cannot_be_reached(hub):
    done = tantra("send", "--url", "tcp://127.0.0.1:1", "--seq", "1", "soil", "1")
    assert done.returncode == 1
    assert done.stderr.startswith("tantra send: cannot reach the hub at tcp://127.0.0.1:1: ")
    assert len(done.stderr.splitlines()) == 1


def test_send_prints_the_hubs_error(hub):
    """A value the hub refuses but the sender cannot know about: a ws filter the hub rejects."""
    done = tantra("send", "--url", urls(hub)["ws"] + "?device=", "soil", "1")
    assert done.returncode == 1 and "device filter '' must be" in done.stderr


@pytest.mark.parametrize("kind", ["tcp", "udp", "ws"])
def test_simulate_sends_with_seq_and_gets_every_ack(hub, kind):
    before = hub.stats()["accepted"]
    done = tantra(
        "simulate",
        "--url",
        urls(hub)[kind],
        "--devices",
        "5",
        "--sensors",
        "a,b",
        "--count",
        "40",
        "--prefix",
        f"sim-{kind}",
    )
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout)
    assert totals == {"sent": 40, "acked": 40, "errors": 0, "retries": 0, "connect_errors": 0}
    assert "acked 40" in done.stderr  # the last progress line
    assert hub.stats()["accepted"] - before == 40


def test_simulate_retries_with_the_same_seq_when_no_ack_comes():
    """A UDP 'hub' that never answers: every reading is sent 1 + retries times, then an error."""
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        done = tantra(
            "simulate",
            "--url",
            f"udp://127.0.0.1:{port}",
            "--devices",
            "1",
            "--sensors",
            "a",
            "--count",
            "2",
            "--ack-timeout",
            "0.2",
            "--retries",
            "2",
        )
        assert done.returncode == 1
        assert json.loads(done.stdout) == {
            "sent": 6,
            "acked": 0,
            "errors": 2,
            "retries": 4,
            "connect_errors": 0,
        }
        silent.settimeout(1)
        seqs = [json.loads(silent.recv(2000))["seq"] for _ in range(6)]
        assert seqs == [1, 1, 1, 2, 2, 2]
    finally:
        silent.close()


def test_simulate_counts_every_unacked_reading_when_nothing_listens_on_udp():
    """The ICMP 'port unreachable' closes the link: each device's reading is an error, exit 1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there now
    done = tantra(
        "simulate",
        "--url",
        f"udp://127.0.0.1:{port}",
        "--count",
        "3",
        "--ack-timeout",
        "0.5",
        "--quiet",
    )
    assert done.returncode == 1, done.stderr
    totals = json.loads(done.stdout)
    assert (totals["acked"], totals["errors"], totals["connect_errors"]) == (0, 3, 0)
    assert "Traceback" not in done.stderr and "Unhandled" not in done.stderr


def started(command: list[str], ready: str, timeout: float = 15) -> subprocess.Popen:
    """A ``tantra`` subprocess, once a line with ``ready`` is on its stdout (``stderr:``: stderr).

    The stream is read in a thread, so a silent process fails the test after
    ``timeout`` instead of blocking it; the rest is left for ``communicate``.
    """
    process = subprocess.Popen(
        [TANTRA, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stream = process.stderr if ready.startswith("stderr:") else process.stdout
    ready = ready.removeprefix("stderr:")
    found = threading.Event()
    seen: list[str] = []

    def read() -> None:
        for line in iter(stream.readline, ""):
            seen.append(line)
            if ready in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout):
        process.kill()
        process.wait(5)
        raise AssertionError(f"{command} never printed {ready!r}: {''.join(seen)!r}")
    return process


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_tail_stops_quietly_on_ctrl_c_or_sigterm(hub, sig, status):
    device = f"cli-stop-{sig.name}"
    tantra("send", "--url", urls(hub)["tcp"], "--device", device, "--seq", "1", "rpm", "7")
    tail = started(["tail", "--url", urls(hub)["ws"], "--device", device, "--json"], device)
    tail.send_signal(sig)
    out, err = tail.communicate(timeout=15)
    assert (tail.returncode, out, err) == (status, "", "")


def test_simulate_prints_its_totals_then_exits_130_on_ctrl_c(hub):
    simulate = started(
        ["simulate", "--url", urls(hub)["tcp"], "--devices", "1", "--duration", "60"],
        "stderr:acked",
    )
    simulate.send_signal(signal.SIGINT)
    out, err = simulate.communicate(timeout=15)
    assert simulate.returncode == 130, err
    totals = json.loads(out)
    assert totals["sent"] >= 1 and totals["errors"] == 0
    assert "Traceback" not in err and "Unhandled" not in err and "cannot reach" not in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--devices", "0"], "tantra simulate: --devices must be from 1 to 100000\n"),
        (["--rate", "0"], "tantra simulate: --rate must be more than 0\n"),
        (
            ["--sensors", "a b"],
            "tantra simulate: 'a b' is not a valid name (1-64 of A-Z a-z 0-9 _ -)\n",
        ),
        (
            ["--url", "http://localhost"],
            "tantra simulate: --url 'http://localhost':"
            " the scheme must be one of tcp, udp, ws, mqtt\n",
        ),
        (
            ["--transport", "mqtt", "--url", "tcp://localhost:9000"],
            "tantra simulate: --transport mqtt and --url 'tcp://localhost:9000' disagree\n",
        ),
    ],
)
def test_simulate_refuses_bad_arguments(args, error):
    done = tantra("simulate", *args)
    assert (done.returncode, done.stderr) == (2, error)


def test_simulate_with_no_hub_fails_in_one_line():
    done = tantra("simulate", "--url", "tcp://127.0.0.1:1", "--devices", "2", "--count", "1")
    assert done.returncode == 1
    assert (
        done.stderr.splitlines()[-1]
        == "tantra simulate: no device could reach the hub at tcp://127.0.0.1:1"
    )


def test_tail_prints_the_snapshot_then_live_readings_filtered(hub):
    device = "cli-tail"
    tail = subprocess.Popen(
        [
            TANTRA,
            "tail",
            "--url",
            urls(hub)["ws"],
            "--device",
            device,
            "--sensor",
            "rpm",
            "--json",
            "--count",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with dashboard(hub.ws_url + f"?device={device}") as watcher:
        for n in (1, 2):
            tantra(
                "send", "--url", urls(hub)["tcp"], "--device", device, "--seq", str(n), "other", "0"
            )
            tantra(
                "send",
                "--url",
                urls(hub)["tcp"],
                "--device",
                device,
                "--seq",
                str(10 + n),
                "rpm",
                str(1000 + n),
            )
        wait_for(watcher, lambda m: m.get("value") == 1002)
    out, err = tail.communicate(timeout=20)
    assert tail.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    # tail may have joined before or after the first rpm reading; it never shows "other"
    assert [r["sensor"] for r in lines] == ["rpm", "rpm"] and lines[-1]["value"] in (1001, 1002)


def test_tail_table_shows_the_snapshot(hub):
    tantra(
        "send",
        "--url",
        urls(hub)["tcp"],
        "--device",
        "cli-table",
        "--seq",
        "1",
        "volts",
        "12.5",
        "--unit",
        "V",
    )
    done = tantra("tail", "--url", urls(hub)["ws"], "--device", "cli-table", "--count", "1")
    header, row = done.stdout.splitlines()
    assert header.split() == ["time", "device", "sensor", "value", "unit", "seq"]
    assert row.split()[2:] == ["cli-table", "volts", "12.5", "V", "1"]


@pytest.mark.parametrize(
    ("args", "status", "error"),
    [
        (["--device", "bad name"], 1, "device filter 'bad name' must be"),
        (
            ["--since=-1h"],
            1,
            "tantra tail: --since needs a hub that keeps history (this one has no store)",
        ),
        (["--since", "5"], 1, "since needs a hub that keeps history (--store)"),
        (["--since", "id:x"], 2, "--since id:x: id: must be followed by a reading id"),
        (["--count", "0"], 2, "tantra tail: --count must be at least 1"),
    ],
)
def test_tail_errors_are_one_line(hub, args, status, error):
    done = tantra("tail", "--url", urls(hub)["ws"], *args, timeout=20)
    assert done.returncode == status and error in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_export_without_a_store_says_so(hub, tmp_path):
    target = tmp_path / "out.csv"
    done = tantra("export", "--url", urls(hub)["http"], "-o", str(target))
    assert (done.returncode, done.stderr) == (
        1,
        "tantra export: this hub keeps no history (start it with a store)\n",
    )
    assert not target.exists() and not Path(str(target) + ".part").exists()


class FakeHistory(http.server.BaseHTTPRequestHandler):
    """/api/v1/readings as the history API streams it (CSV), or a transfer cut short."""

    body = b"id,ts,time,device,sensor,value,unit,seq\n" + b"".join(
        b"%d,1764000000000,2025-11-24T16:00:00Z,farm-1,soil,%d,%%,\n" % (n, n) for n in range(5000)
    )

    def do_GET(self):
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "text/csv")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        if "device=cut" in self.path:
            self.wfile.write(self.body[:1000])  # then hang up: an incomplete transfer
            return
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_history():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHistory)
    server.paths = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_export_streams_the_api_to_a_file(fake_history, tmp_path):
    target = tmp_path / "out.csv"
    url = f"http://127.0.0.1:{fake_history.server_address[1]}"
    done = tantra("export", "--url", url, "--from=-7d", "--device", "farm-1", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == FakeHistory.body
    assert done.stderr.endswith("exported 5000 reading(s)\n")
    assert fake_history.paths == ["/api/v1/readings?from=-7d&format=csv&device=farm-1"]


def test_export_cut_short_leaves_no_file(fake_history, tmp_path):
    target = tmp_path / "out.csv"
    url = f"http://127.0.0.1:{fake_history.server_address[1]}"
    done = tantra("export", "--url", url, "--device", "cut", "-o", str(target))
    assert done.returncode == 1 and "the transfer broke off" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_metrics_healthz_readyz_on_the_real_hub(hub):
    import urllib.request

    base = urls(hub)["http"]

    def metrics() -> dict:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.labels
        }

    before = metrics()
    tantra("send", "--url", urls(hub)["tcp"], "--device", "cli-metrics", "--seq", "1", "m", "1")
    after = metrics()
    assert after["tantra_readings_accepted_total"] == before["tantra_readings_accepted_total"] + 1
    assert (
        after["tantra_delivery_latency_seconds_count"]
        > before["tantra_delivery_latency_seconds_count"]
    )
    with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
        assert json.load(response)["checks"]["listeners"] == {"ok": True, "reason": ""}
    assert "cli-metrics" not in urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()


@pytest.fixture(scope="module")
def mqtt_hub(tmp_path_factory):
    """A hub bridging a random prefix on the shared broker, with a SQLite store (acks after commit)."""
    need_broker()
    prefix = random_prefix()
    hub = HubProcess.start(
        tmp_path_factory.mktemp("mqtt-hub"), "--mqtt", f"mqtt://{HOST}:{PORT}",
        "--mqtt-prefix", prefix,
    )  # fmt: skip
    try:
        for _ in range(100):
            if hub.stats()["mqtt"]["state"] == "connected":
                break
            time.sleep(0.05)
        yield hub, f"mqtt://{HOST}:{PORT}/{prefix}"
    finally:
        try:
            hub.stop()
        finally:
            clear_retained(prefix)


def test_simulate_over_mqtt_gets_every_ack_after_the_commit(mqtt_hub):
    hub, url = mqtt_hub
    before = hub.stats()
    done = tantra(
        "simulate", "--transport", "mqtt", "--url", url, "--devices", "4", "--sensors", "a,b",
        "--count", "40", "--prefix", "sim-mqtt",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "sent": 40, "acked": 40, "errors": 0, "retries": 0, "connect_errors": 0,
    }  # fmt: skip
    after = hub.stats()
    assert after["accepted"] - before["accepted"] == 40
    assert after["mqtt"]["acks_sent"] - before["mqtt"]["acks_sent"] == 40
    assert after["store"]["stored"] - before["store"]["stored"] == 40  # acked means stored


def test_send_over_mqtt_prints_the_ack_and_the_error(mqtt_hub):
    hub, url = mqtt_hub
    done = tantra("send", "--url", url, "--device", "cli-mqtt", "--seq", "9", "t", "1")
    assert (done.returncode, done.stdout.strip()) == (0, '{"ack":9}'), done.stderr
    assert hub.stats()["mqtt"]["received"] >= 1
    done = tantra("send", "--url", url, "t", "1")
    assert done.returncode == 2
    assert (
        done.stderr
        == f"tantra send: {url.rsplit('/', 1)[0]}: name the device (--device, or ?device=NAME)\n"
    )


def test_simulate_with_no_broker_fails_in_one_line():
    port = free_port()
    done = tantra("simulate", "--url", f"mqtt://127.0.0.1:{port}", "--devices", "2", "--count", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"tantra simulate: 2 device(s): cannot reach the hub at mqtt://127.0.0.1:{port}:"
        f" cannot connect to the broker at 127.0.0.1:{port}",
        f"tantra simulate: no device could reach the hub at mqtt://127.0.0.1:{port}",
    ]
