"""Shared fixtures: a fixed clock value and a real hub subprocess for loopback tests."""

from __future__ import annotations

import pytest

from tests.support.hubproc import HubProcess

NOW_MS = 1_764_000_000_000


@pytest.fixture
def now_ms() -> int:
    return NOW_MS


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory):
    """One real ``twistd -n tantra`` on loopback ports for a test module."""
    hub = HubProcess.start(tmp_path_factory.mktemp("hub"))
    yield hub
    hub.stop()
