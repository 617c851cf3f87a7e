"""no_reconnect_after_database_restart: the service opens its connections once and never again.

A home-made pool: the connections made at start-up, handed out in turn, never checked
and never replaced. Without a fault nothing shows. After PostgreSQL restarts, or an
operator terminates the service's sessions, every one of them is closed for good: each
request takes a dead connection, fails, and answers 503 (health included) until the
service itself is restarted, long after the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
from psycopg import AsyncConnection, pq
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from reference_impl import db
from reference_impl.flaws._flaw import Flaw
from reference_impl.settings import Settings

__all__ = ["FLAW", "caught_by", "create_pool"]

caught_by = ("durability",)
scenarios = ("database-restart",)


def create_pool(settings: Settings) -> AsyncConnectionPool:
    """No reconnect after a database restart: connections opened once, never checked."""
    correct = db.create_pool(settings)  # for its connection options only; never opened
    return _OpenedOnce(conninfo=correct.conninfo, kwargs=correct.kwargs,
                       min_size=settings.pool_size_max, max_size=settings.pool_size_max,
                       open=False, timeout=settings.pool_timeout_s, name=correct.name)


class _OpenedOnce(AsyncConnectionPool[AsyncConnection[Any]]):
    """``max_size`` connections made by ``open``, lent in turn, returned whatever their state."""

    _lent: asyncio.Queue[AsyncConnection[Any]] | None = None
    _made: tuple[AsyncConnection[Any], ...] = ()

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        if self._lent is not None:
            return
        kwargs = dict(self.kwargs) if isinstance(self.kwargs, dict) else {}
        assert isinstance(self.conninfo, str), "the service passes a URL"
        self._made = tuple([await AsyncConnection.connect(self.conninfo, **kwargs)
                            for _ in range(self.max_size)])
        self._lent = asyncio.Queue()
        for conn in self._made:
            conn._pool = self  # so leaving ``async with conn`` does not close it
            self._lent.put_nowait(conn)

    async def getconn(self, timeout: float | None = None) -> AsyncConnection[Any]:
        if self._lent is None:
            raise psycopg.OperationalError("the pool is not open")
        try:
            return await asyncio.wait_for(self._lent.get(), timeout or self.timeout)
        except TimeoutError:
            raise PoolTimeout(f"no connection free after {timeout or self.timeout:.2f} sec") \
                from None

    async def putconn(self, conn: AsyncConnection[Any]) -> None:
        assert self._lent is not None
        if conn.pgconn.transaction_status in (pq.TransactionStatus.INTRANS,
                                              pq.TransactionStatus.INERROR):
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        self._lent.put_nowait(conn)  # closed by the server or not: it goes back in line

    async def close(self, timeout: float = 5.0) -> None:
        for conn in self._made:
            conn._pool = None
            await conn.close()
        self._made, self._lent = (), None


FLAW = Flaw(
    name="no_reconnect_after_database_restart", operation="create_pool",
    replacement=create_pool, caught_by=caught_by, scenarios=scenarios,
    description="connections are opened once and never checked or replaced, so after a "
                "database restart every request answers 503 until a restart (durability)")
