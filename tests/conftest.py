"""Shared fixtures: one PostgreSQL server per xdist worker, a fresh database per test.

``TOKENCHAOS_DATABASE_URL`` points the tests at a server you run (its database is used as
the admin connection for creating test databases); otherwise each worker starts the
embedded PostgreSQL on a free port, in ``Durability.FAST`` mode (no fsync, no synchronous
commit): these tests never crash the server, so they do not need what a crash would lose.
Tests that crash it start their own durable server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.pg import Durability, EmbeddedPostgres, create_database, drop_database


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL server this worker may create databases on."""
    url = os.environ.get("TOKENCHAOS_DATABASE_URL")
    if url:
        yield url
        return
    with EmbeddedPostgres(durability=Durability.FAST) as server:
        yield server.url


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url.rsplit("/", 1)[-1].split("?")[0])
