"""The firmware core's own C++ tests (doctest), run through pytest.

`make -C firmware test` builds the portable core and its doctest suite with
AddressSanitizer and UBSan and runs it; this wrapper makes that suite part of
the project's test run. Skips only when the C++ toolchain or doctest is
missing (Debian: g++ make doctest-dev).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # compiles the C++ core and its tests with sanitizers

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def missing_tools() -> list[str]:
    missing = [tool for tool in ("make", "g++") if shutil.which(tool) is None]
    if not Path("/usr/include/doctest/doctest.h").exists():
        missing.append("doctest (apt: doctest-dev)")
    return missing


def test_core_doctest_suite():
    missing = missing_tools()
    if missing:
        pytest.skip(f"firmware host tests need: {', '.join(missing)}")
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE), "-j2", "test"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
    assert result.returncode == 0, tail
    assert "Status: SUCCESS!" in result.stdout, tail


def test_esp8266_sketch_type_checks_against_the_core_api():
    """No ESP8266 core is packaged here: check the sketch (TCP and UDP
    settings) as C++ against declarations of the API it uses."""
    if shutil.which("make") is None or shutil.which("g++") is None:
        pytest.skip("the sketch check needs make and g++")
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE), "esp-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
