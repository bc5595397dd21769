"""Real databases for the store contract tests: SQLite in a tmp dir, PostgreSQL on loopback.

PostgreSQL: 127.0.0.1:5432, database ``test``, user ``postgres`` (or ``root``),
trust auth. Each test gets its own schema, dropped afterwards. When the server
is unreachable the PostgreSQL cases are skipped, except in CI (``CI=true``),
where that is a failure: CI must prove both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_USERS = ("postgres", "root")
PG_BASE = "postgresql://{user}@127.0.0.1:5432/test"


def _pg_admin_url() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in PG_USERS:
        url = PG_BASE.format(user=user)
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.OperationalError:
            continue
    return None


def require_postgres() -> str:
    url = _pg_admin_url()
    if url is None:
        message = "PostgreSQL is not reachable on 127.0.0.1:5432 (database test)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must run the PostgreSQL store tests")
        pytest.skip(message)
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    admin = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # a writer that is still connected must not keep the schema alive
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{schema}%",),
            )
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def store_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:{tmp_path / 'history.sqlite3'}"
    else:
        with postgres_schema() as url:
            yield url


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
]
