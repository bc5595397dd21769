"""Shared fixtures: a fixed clock value and a real hub subprocess for loopback tests."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tests.support.fakes import START
from tests.support.hubproc import HubProcess


@pytest.fixture
def clock() -> Clock:
    """A fake reactor clock, started at a realistic wall-clock time."""
    clock = Clock()
    clock.advance(START)
    return clock


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory):
    """One real ``twistd -n tantra`` on loopback ports for a test module."""
    hub = HubProcess.start(tmp_path_factory.mktemp("hub"))
    yield hub
    hub.stop()
