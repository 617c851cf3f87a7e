"""The database plumbing: the connection pool, the migrations, and transient-error retries.

This module knows how to reach PostgreSQL and keep its schema current; it knows nothing of
tokens. Operations live in ``service.py`` and ``payments.py``; they take the pool made
here, open their one transaction with ``transaction(pool)`` (``pool.connection()`` plus
``conn.transaction()``, telling a connection lost before COMMIT from one lost during it),
and wrap themselves in ``retry_transient``.

A request waiting for a pooled connection waits as long as the pool is merely busy, but
not for a database that is down: the pool's connection class counts its failed attempts
to connect, and a waiter that sees one fail gives up at once with
``DatabaseUnreachable`` (a 503), instead of holding the client until the pool's timeout.

Migrations are the ``migrations/*.sql`` files, applied in name order, each once, each
recorded with its checksum in ``schema_migrations``. Start-up takes a transaction-scoped
advisory lock first, so two services starting at once on one database apply each file
exactly once; a recorded file whose text has changed stops the service.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, ParamSpec, TypeVar

import psycopg
import psycopg.errors
from psycopg import AsyncConnection, pq
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from reference_impl.errors import ConfigError
from reference_impl.settings import Settings

__all__ = [
    "TRANSACTION_ATTEMPTS_MAX",
    "ConnectionLost",
    "DatabaseUnreachable",
    "apply_migrations",
    "connection",
    "create_pool",
    "open_pool",
    "redact_url",
    "retry_transient",
    "transaction",
]

log = logging.getLogger(__name__)

# A deadlock or serialization failure aborts one transaction; running it again almost
# always succeeds, but under contention (many transactions on a few rows, a CPU-starved
# machine) the retry can collide again. Ten attempts with full-jitter backoff doubling
# from 10 ms and capped at 500 ms bound the extra wait to about 2.5 s at most (1.2 s on
# average), enough for contention to clear, and still bounded.
TRANSACTION_ATTEMPTS_MAX = 10
RETRY_BACKOFF_MS_BASE = 10
RETRY_BACKOFF_MS_MAX = 500
assert sum(min(RETRY_BACKOFF_MS_BASE * 2**attempt, RETRY_BACKOFF_MS_MAX)
           for attempt in range(TRANSACTION_ATTEMPTS_MAX - 1)) < 3000
# Any constant shared by every instance of the service works; this one spells "tokencha".
_MIGRATION_LOCK_KEY = 0x746F6B656E636861
_APPLICATION_NAME = "tokenchaos-reference"
_OPEN_POLL_S = 0.25

P = ParamSpec("P")
T = TypeVar("T")


def create_pool(settings: Settings) -> AsyncConnectionPool:
    """A closed pool with every option written out; open it with ``open_pool``.

    Connections are in autocommit mode: every operation opens its one transaction
    explicitly with ``conn.transaction()``, so nothing ever runs in an implicit one.
    """
    options = (f"-c statement_timeout={settings.statement_timeout_ms} "
               f"-c lock_timeout={settings.lock_timeout_ms} "
               f"-c idle_in_transaction_session_timeout={settings.statement_timeout_ms}")
    return AsyncConnectionPool(
        conninfo=settings.database_url,
        kwargs={"autocommit": True, "connect_timeout": settings.connect_timeout_s,
                "application_name": _APPLICATION_NAME, "options": options},
        min_size=settings.pool_size_min,
        max_size=settings.pool_size_max,
        open=False,
        connection_class=_counting_connection_class(),
        configure=None,
        check=_check_connection,  # a connection killed by a fault is replaced, not used
        reset=None,
        name=_APPLICATION_NAME,
        close_returns=False,
        timeout=settings.pool_timeout_s,
        max_waiting=settings.pool_waiting_max,
        max_lifetime=settings.pool_lifetime_s_max,
        max_idle=settings.pool_idle_s_max,
        reconnect_timeout=settings.pool_reconnect_timeout_s,
        reconnect_failed=None,
        num_workers=3,
    )


async def open_pool(pool: AsyncConnectionPool, settings: Settings) -> None:
    """Open the pool and wait until the database answers through it.

    Raises:
        ConfigError: the database did not answer within ``pool_open_timeout_s``.
    """
    await pool.open(wait=False)
    deadline = time.monotonic() + settings.pool_open_timeout_s
    while True:
        remaining_s = deadline - time.monotonic()
        try:
            async with pool.connection(timeout=max(remaining_s, 0.1)) as conn:
                await conn.execute("SELECT 1")
            return
        except (PoolTimeout, psycopg.OperationalError) as exc:
            if time.monotonic() >= deadline:
                await pool.close()
                raise ConfigError(
                    f"the database at {redact_url(settings.database_url)} did not accept "
                    f"connections within {settings.pool_open_timeout_s:.0f} s ({exc}); check "
                    "TOKENCHAOS_DATABASE_URL and that PostgreSQL is running") from exc
            await asyncio.sleep(min(_OPEN_POLL_S, max(remaining_s, 0)))


async def apply_migrations(pool: AsyncConnectionPool) -> list[str]:
    """Apply every migration not applied yet, in one transaction; return their names.

    Raises:
        ConfigError: a migration applied earlier has been edited since.
    """
    migrations = _read_migrations()
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT name, checksum FROM schema_migrations")
        applied = {str(name): str(checksum) for name, checksum in await cursor.fetchall()}
        newly_applied: list[str] = []
        for name, sql, checksum in migrations:
            if name in applied:
                if applied[name] != checksum:
                    raise ConfigError(
                        f"migration {name} was applied with checksum {applied[name][:12]} "
                        f"but now reads {checksum[:12]}; never edit an applied migration, "
                        "add a new one")
                continue
            await conn.execute(sql.encode())  # bytes: a query with no parameters
            await conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                               (name, checksum))
            newly_applied.append(name)
    for name in newly_applied:
        log.info("applied migration %s", name)
    return newly_applied


async def _check_connection(conn: psycopg.AsyncConnection) -> None:
    """Refuse a pooled connection the server has hung up on, without a round trip.

    Run on every checkout. The pool's own check sends an empty query (a round trip per
    request); this one only reads what arrived while the connection sat idle: a backend
    terminated by an operator or a restart has sent a FATAL error and closed the socket,
    which shows up here, so the pool replaces the connection and the request never sees it.
    """
    pgconn = conn.pgconn
    if conn.closed or pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the pooled connection is closed")
    pgconn.consume_input()  # raises when the server closed the socket
    if pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the server closed the pooled connection")
    if not pgconn.is_busy() and pgconn.get_result() is not None:
        raise psycopg.OperationalError("the server sent an error to an idle connection")


class ConnectionLost(Exception):
    """The database connection broke before COMMIT was sent: nothing was applied.

    Raised by ``transaction`` and ``connection`` in place of psycopg's OperationalError
    when that is certain, so ``retry_transient`` may run the work again on a fresh
    connection. A connection lost *during* COMMIT leaves the outcome unknown; that error
    propagates unchanged (the caller answers 503 and the client retries with its key).
    From ``connection`` (no explicit transaction), a write statement is its own
    transaction and may have committed when its connection broke: only a statement that
    is safe to run again may be run there (``service.tip``: its key makes a second run a
    replay).
    """


class DatabaseUnreachable(Exception):
    """The pool tried to connect while this request waited for a connection, and failed.

    Nothing was sent: the request never had a connection. Not retried here (each retry
    would wait for the next failed attempt); the caller answers 503 and the client retries
    with its key once the database is back.
    """


class _ConnectAttempts:
    """The failed connection attempts of one pool, as a signal its waiters can await."""

    def __init__(self) -> None:
        self.failures_count = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def failed(self) -> None:
        self.failures_count += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def next_failure(self) -> None:
        """Return when an attempt started after this call fails."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)


class _CountingConnection(AsyncConnection[Any]):
    """A connection whose class counts failed attempts to make one (one class per pool)."""

    attempts: ClassVar[_ConnectAttempts]

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().connect(*args, **kwargs)
        except psycopg.OperationalError:
            cls.attempts.failed()
            raise


def _counting_connection_class() -> type[_CountingConnection]:
    return type("CountingConnection", (_CountingConnection,), {"attempts": _ConnectAttempts()})


async def _getconn(pool: AsyncConnectionPool) -> AsyncConnection:
    """A pooled connection; ``DatabaseUnreachable`` as soon as the pool fails to connect.

    A busy pool makes the request wait up to the pool's timeout (``PoolTimeout``); a
    database that refuses connections fails the wait at the pool's next attempt, which a
    waiting request itself provokes (the pool grows for it), so the client hears a 503 in
    about a connect timeout, not in ``pool_timeout_s``.
    """
    counting = pool.connection_class
    if not issubclass(counting, _CountingConnection):
        return await pool.getconn()  # a pool made elsewhere: its own rules
    failing = asyncio.ensure_future(counting.attempts.next_failure())
    getting = asyncio.ensure_future(pool.getconn())
    try:
        await asyncio.wait((getting, failing), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request was cancelled: leave no connection behind
        failing.cancel()
        if getting.done() and not getting.cancelled() and getting.exception() is None:
            await pool.putconn(getting.result())
        getting.cancel()
        raise
    failing.cancel()
    if not getting.done():
        getting.cancel()  # a connection assigned meanwhile goes back to the pool
        try:
            return await getting  # it was assigned before the cancellation landed
        except asyncio.CancelledError:
            raise DatabaseUnreachable("the database refused a new connection while this "
                                      "request waited for one") from None
    return getting.result()


@asynccontextmanager
async def _pooled(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """``pool.connection()``, waiting through ``_getconn``."""
    conn = await _getconn(pool)
    try:
        async with conn:
            yield conn
    finally:
        await pool.putconn(conn)


@asynccontextmanager
async def transaction(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """``async with pool.connection() as conn, conn.transaction():``, with lost connections
    told apart: before COMMIT, ``ConnectionLost`` (safe to retry); during it, unchanged."""
    async with _pooled(pool) as conn:
        committing = False
        try:
            async with conn.transaction():
                yield conn
                committing = True
        except psycopg.OperationalError as exc:
            if conn.broken and not committing:
                raise ConnectionLost(str(exc)) from exc
            raise


@asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A connection outside an explicit transaction (reads, and statements that are their
    own transaction); a lost one is ``ConnectionLost``."""
    async with _pooled(pool) as conn:
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if conn.broken:
                raise ConnectionLost(str(exc)) from exc
            raise


_TRANSIENT_ERRORS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                     ConnectionLost)


def retry_transient(operation: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run ``operation`` again when its transaction died of a deadlock, a serialization
    failure, or a connection lost before COMMIT (``ConnectionLost``).

    The operation must own its whole transaction (it opens and commits it), so running it
    again is running the transaction again. At most ``TRANSACTION_ATTEMPTS_MAX`` attempts;
    the last failure propagates.
    """

    @functools.wraps(operation)
    async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt_index in range(TRANSACTION_ATTEMPTS_MAX):
            try:
                return await operation(*args, **kwargs)
            except _TRANSIENT_ERRORS as exc:
                if attempt_index + 1 == TRANSACTION_ATTEMPTS_MAX:
                    log.warning("%s: giving up after %d attempts: %s", operation.__name__,
                                TRANSACTION_ATTEMPTS_MAX, exc)
                    raise
                backoff_ms = random.uniform(0, min(RETRY_BACKOFF_MS_BASE * 2**attempt_index,
                                                   RETRY_BACKOFF_MS_MAX))
                await asyncio.sleep(backoff_ms / 1000)
        raise AssertionError("unreachable: the loop returns or raises")

    return retried


def redact_url(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    if "://" not in url:
        return "(a key=value connection string)"
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _read_migrations() -> list[tuple[str, str, str]]:
    """(name, sql, sha256) of every migration file, in name order."""
    folder = importlib.resources.files("reference_impl") / "migrations"
    found = sorted((entry.name, entry.read_text(encoding="utf-8"))
                   for entry in folder.iterdir() if entry.name.endswith(".sql"))
    assert found, "no migrations found: the package data is missing"
    return [(name, sql, hashlib.sha256(sql.encode()).hexdigest()) for name, sql in found]
