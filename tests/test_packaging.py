"""A non-editable install must ship the twistd plugin; build the wheel and prove it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent

#: A C compiler and Python's headers: what ``tantra._fanout`` needs to be built
#: (optional: without them the install goes on and the loop runs in Python).
CAN_BUILD_C = (
    shutil.which("cc") is not None
    and (Path(sysconfig.get_paths()["include"]) / "Python.h").exists()
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("tantra-*.whl")
    return built


def test_wheel_ships_plugin_package_and_page(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/tantra_plugin.py" in names
    assert "tantra/web/static/index.html" in names
    for name in ("app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.LICENSE"):
        assert f"tantra/web/static/{name}" in names
    assert "tantra/hub.py" in names
    if CAN_BUILD_C:
        assert any(name.startswith("tantra/_fanout.") and name.endswith(".so") for name in names), (
            "setup.py builds the compiled broadcast loop where it can"
        )
    assert not any(
        name.startswith(("twisted/__init__", "twisted/plugins/__init__")) for name in names
    ), "shipping twisted/__init__.py would shadow Twisted itself"
    assert not any(name.startswith("tests/") for name in names)


def test_wheel_in_a_fresh_venv_gives_twistd_the_plugin(wheel, tmp_path):
    """What a user does: a new virtualenv, a non-editable install, ``twistd``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=600,
    )  # fmt: skip
    where = subprocess.run(
        [str(python), "-c", "import tantra, twisted.plugins.tantra_plugin as p, tantra.fanout as f;"
         " print(tantra.__file__); print(p.__file__); print(f.extension is not None)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    package, plugin, compiled = where.stdout.split()
    assert package.startswith(str(venv)) and plugin.startswith(str(venv))
    assert compiled == str(CAN_BUILD_C), "the compiled loop is importable where it was built"
    listing = subprocess.run(
        [str(venv / "bin" / "twistd"), "--help"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert "tantra" in listing.stdout
    plugin_help = subprocess.run(
        [str(venv / "bin" / "twistd"), "tantra", "--help"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert "--http=" in plugin_help.stdout and "--udp-interface=" in plugin_help.stdout
