"""A non-editable install must ship the twistd plugin; build the wheel and prove it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.hubproc import twistd_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


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
    assert "tantra/static/index.html" in names
    assert "tantra/hub.py" in names
    assert not any(
        name.startswith(("twisted/__init__", "twisted/plugins/__init__")) for name in names
    ), "shipping twisted/__init__.py would shadow Twisted itself"
    assert not any(name.startswith("tests/") for name in names)


def test_installed_wheel_is_found_by_twistd(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
         str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import tantra, twisted.plugins.tantra_plugin as p;"
         " print(tantra.__file__); print(p.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    package, plugin = where.stdout.split()
    assert package.startswith(str(target)), "the installed package is the one imported"
    assert plugin.startswith(str(target)), "the installed plugin is the one twistd finds"
    listing = subprocess.run(
        [twistd_path(), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert "tantra" in listing.stdout
    plugin_help = subprocess.run(
        [twistd_path(), "tantra", "--help"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert "--http=" in plugin_help.stdout and "--udp-interface=" in plugin_help.stdout
