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


@pytest.fixture(scope="session", autouse=True)
def no_history_file_in_the_checkout():
    """Tests must not leave the default ``tantra.sqlite3`` in the working directory.

    A hub built with default settings stores history there; in-process tests
    pass ``store=none`` (or a tmp path) and subprocess hubs run in a tmp dir.
    """
    from pathlib import Path

    before = Path("tantra.sqlite3").exists()
    yield
    if not before and Path("tantra.sqlite3").exists():
        pytest.fail("a test left tantra.sqlite3 in the working directory (use store=none)")
