"""The Arduino Mega firmware, built with Debian's arduino-mk, running in simavr.

`firmware/sim/mega_sim.c` is a small test bench on libsimavr: it puts known
millivolts on A0 (soil probe) and A1 (turbine divider), a square wave on pin 2
(turbine pulses), runs the *shipped* firmware (default 2 s sample period; no
simulation-only build flags) for a bounded amount of simulated time, and
prints every line the firmware writes on Serial1 (the ESP8266 link). Every
such line must be a valid reading by the hub's own validator, and the values
must be what the calibration in firmware/mega/config.h says.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
ELF = FIRMWARE / "mega" / "build-mega-atmega2560" / "mega_.elf"
SIM = FIRMWARE / "build" / "mega-sim"

pytestmark = pytest.mark.integration

# Debian packages that provide each required file or tool.
REQUIRED = {
    "make": "make",
    "avr-g++": "gcc-avr",
    "/usr/lib/avr/include/avr/io.h": "avr-libc",
    "/usr/share/arduino/Arduino.mk": "arduino-mk",
    "/usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h": "arduino-core-avr",
    "/usr/include/simavr/sim_avr.h": "libsimavr-dev",
    "cc": "gcc",
}


def missing_tools() -> list[str]:
    missing = []
    for need, package in REQUIRED.items():
        found = Path(need).exists() if need.startswith("/") else shutil.which(need)
        if not found:
            missing.append(f"{need} (apt: {package})")
    return missing


def config_value(name: str) -> float:
    """A #define from firmware/mega/config.h, so the test follows recalibration."""
    text = (FIRMWARE / "mega" / "config.h").read_text()
    match = re.search(rf"#define {name} ([0-9.]+)", text)
    assert match, name
    return float(match.group(1))


def hub_validate(line: bytes):
    """The hub's own validator: one payload -> readings + errors."""
    from tantra.model import parse_payload

    return parse_payload(line, default_device="mega-sim", now_ms=int(time.time() * 1000))


@pytest.fixture(scope="module")
def firmware_elf() -> Path:
    missing = missing_tools()
    if missing:
        pytest.skip(f"Mega firmware simulation needs: {', '.join(missing)}")
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE), "-j2", "mega", "sim"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ELF.exists() and SIM.exists()
    return ELF


def run_sim(elf: Path, *, lines: int, soil_mv: int, volt_mv: int, pulse_hz: int):
    """Runs the test bench; returns (Serial1 lines, USB lines, summary)."""
    # 2.5 sample periods of simulated time per 3 lines is plenty; the wall
    # timeout only guards against a broken simulator.
    max_ms = int((lines // 3 + 1) * config_value("SAMPLE_PERIOD_MS") + 1000)
    result = subprocess.run(
        [
            str(SIM),
            str(elf),
            "--lines",
            str(lines),
            "--max-ms",
            str(max_ms),
            "--soil-mv",
            str(soil_mv),
            "--volt-mv",
            str(volt_mv),
            "--pulse-hz",
            str(pulse_hz),
        ],
        capture_output=True,
        timeout=120,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr[-3000:]
    serial1 = result.stdout.splitlines()
    usb = [line[5:].encode() for line in stderr.splitlines() if line.startswith("usb: ")]
    summary = stderr.strip().splitlines()[-1]
    return serial1, usb, summary


def adc_counts(mv: int) -> int:
    # 10-bit ADC against a 5 V reference (simavr: mv * 1023 / 5000, truncated).
    return mv * 1023 // 5000


def test_every_serial1_line_is_a_valid_reading_with_calibrated_values(firmware_elf):
    soil_mv, volt_mv, pulse_hz = 2000, 1000, 50
    serial1, usb, summary = run_sim(
        firmware_elf, lines=9, soil_mv=soil_mv, volt_mv=volt_mv, pulse_hz=pulse_hz
    )
    print(summary)
    print("\n".join(line.decode() for line in serial1))
    assert len(serial1) == 9

    readings = []
    for line in serial1:
        parsed = hub_validate(line)
        assert parsed.errors == (), (line, parsed.errors)
        assert len(parsed.readings) == 1, line
        readings.append(parsed.readings[0])

    # The sketch's order, every period: soil, rpm, voltage.
    assert [r.sensor for r in readings] == ["soilMoisture", "turbineRpm", "turbineVoltage"] * 3
    assert {r.unit for r in readings} == {"%", "rpm", "V"}

    dry, wet = config_value("SOIL_RAW_DRY"), config_value("SOIL_RAW_WET")
    soil = (dry - adc_counts(soil_mv)) * 100 / (dry - wet)
    rpm = pulse_hz * 60 / config_value("RPM_PULSES_PER_REV")
    volts = (
        adc_counts(volt_mv) * config_value("ADC_VREF") / 1023 * config_value("VOLT_DIVIDER_RATIO")
    )
    one_pulse_rpm = (
        60 / config_value("RPM_PULSES_PER_REV") / (config_value("SAMPLE_PERIOD_MS") / 1000)
    )
    for r in readings:
        if r.sensor == "soilMoisture":
            assert r.value == pytest.approx(soil, abs=0.3)
        elif r.sensor == "turbineRpm":
            assert r.value == pytest.approx(rpm, abs=one_pulse_rpm + 1)
        else:
            assert r.value == pytest.approx(volts, abs=0.06)

    # The USB port mirrors the same lines (it is how a person watches the
    # Mega); the bench stops on Serial1's count, so USB may be one line behind.
    assert len(usb) >= len(serial1) - 1
    assert usb == serial1[: len(usb)]


def test_sensor_extremes_clamp_and_stay_valid(firmware_elf):
    # Probe reading drier than "dry" and wetter than "wet", no pulses, full scale voltage.
    for soil_mv, expected_soil in ((5000, 0.0), (0, 100.0)):
        serial1, _, _ = run_sim(firmware_elf, lines=3, soil_mv=soil_mv, volt_mv=5000, pulse_hz=0)
        values = {}
        for line in serial1:
            parsed = hub_validate(line)
            assert parsed.errors == (), (line, parsed.errors)
            values[parsed.readings[0].sensor] = parsed.readings[0].value
        assert values["soilMoisture"] == expected_soil
        assert values["turbineRpm"] == 0
        assert values["turbineVoltage"] == pytest.approx(
            5.0 * config_value("VOLT_DIVIDER_RATIO"), abs=0.06
        )
