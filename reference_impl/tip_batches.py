"""Concurrent tips share one statement: the service's group commit.

A tip that arrives while ``batches_in_flight_max`` batches are already in the database
waits; when one of them returns, everything waiting (at most ``tips_per_batch_max``) goes
as the next batch: one ``spend_tips`` statement (migration 0004), one transaction, one
commit. Under no load a batch is one tip and costs what it did alone; under load the round
trips, the commits and a hot creator's row lock are paid once per batch, not once per tip.

Each tip of a batch gets the answer it would have had alone: ``spend_tips`` decides them in
order with the rules a single tip follows (migration 0004 lists them). A batch that fails
on its data (an error no retry mends) is run again one tip at a time, so one bad tip
fails only its own request; a batch that fails because the database is away fails every
tip of it with that error, as each would have failed alone. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, TooManyRequests

from reference_impl.db import connection, retry_transient

__all__ = [
    "BATCH_TIP_SQL",
    "TipBatcher",
    "TipRequest",
    "TipRow",
    "batcher_for",
]

TIPS_PER_BATCH_MAX = 64
BATCHES_IN_FLIGHT_MAX = 4
TIPS_WAITING_MAX = 4096  # beyond, a tip is refused at once (503), as the pool refuses

BATCH_TIP_SQL = ("SELECT o_result, o_body, o_replayed FROM spend_tips("
                 "%(sender_ids)s, %(recipient_ids)s, %(amounts_tokens)s, %(keys)s,"
                 " %(fingerprints)s)")

TipRow = tuple[str, dict[str, Any], bool]  # (result, body, replayed), one row of spend_tips


@dataclass(frozen=True, slots=True, kw_only=True)
class TipRequest:
    """One tip, as ``spend_tips`` takes it (one element of each of its arrays)."""

    sender_id: int
    recipient_id: int
    amount_tokens: int
    idempotency_key: str
    request_fingerprint: str


class TipBatcher:
    """Gathers the tips of one pool into batches; at most ``batches_in_flight_max`` at once."""

    def __init__(self, pool: AsyncConnectionPool, *,
                 tips_per_batch_max: int = TIPS_PER_BATCH_MAX,
                 batches_in_flight_max: int = BATCHES_IN_FLIGHT_MAX,
                 tips_waiting_max: int = TIPS_WAITING_MAX) -> None:
        assert tips_per_batch_max >= 1, tips_per_batch_max
        assert batches_in_flight_max >= 1, batches_in_flight_max
        assert tips_waiting_max >= tips_per_batch_max, tips_waiting_max
        self._pool = pool
        self._tips_per_batch_max = tips_per_batch_max
        self._batches_in_flight_max = batches_in_flight_max
        self._tips_waiting_max = tips_waiting_max
        self._waiting: deque[tuple[TipRequest, asyncio.Future[TipRow]]] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self.batches_count = 0
        self.tips_count = 0

    async def spend(self, tip: TipRequest) -> TipRow:
        """The tip's row, once the batch that carried it has committed.

        Raises:
            TooManyRequests: ``tips_waiting_max`` tips are already waiting.
            Exception: what the database raised for this tip's batch, or for the tip alone.
        """
        if len(self._waiting) >= self._tips_waiting_max:
            raise TooManyRequests(f"{len(self._waiting)} tips are waiting for the database")
        future: asyncio.Future[TipRow] = asyncio.get_running_loop().create_future()
        self._waiting.append((tip, future))
        if len(self._drainers) < self._batches_in_flight_max:
            drainer = asyncio.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    async def _drain(self) -> None:
        """Send batches until nothing waits."""
        while self._waiting:
            count = min(len(self._waiting), self._tips_per_batch_max)
            batch = [self._waiting.popleft() for _ in range(count)]
            self.batches_count += 1
            self.tips_count += count
            try:
                rows = await _spend_tips(self._pool, [tip for tip, _ in batch])
            except (psycopg.DatabaseError, psycopg.InterfaceError) as exc:
                if len(batch) == 1 or isinstance(exc, psycopg.OperationalError):
                    _fail(batch, exc)
                    continue
                await self._one_by_one(batch)
            except Exception as exc:  # the database is away, the pool is full: all fail alike
                _fail(batch, exc)
            else:
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():  # its request may have been cancelled meanwhile
                        future.set_result(row)

    async def _one_by_one(self, batch: Sequence[tuple[TipRequest, asyncio.Future[TipRow]]],
                          ) -> None:
        for tip, future in batch:
            try:
                rows = await _spend_tips(self._pool, [tip])
            except Exception as exc:
                _fail([(tip, future)], exc)
            else:
                if not future.done():
                    future.set_result(rows[0])


def _fail(batch: Sequence[tuple[TipRequest, asyncio.Future[TipRow]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


@retry_transient
async def _spend_tips(pool: AsyncConnectionPool, tips: Sequence[TipRequest]) -> list[TipRow]:
    """One ``spend_tips`` statement: its own transaction (autocommit), one round trip.

    A connection lost during it may or may not have committed; running it again is safe,
    because each key turns a tip that did commit into a replay of its answer.
    """
    assert tips, "a batch holds at least one tip"
    async with connection(pool) as conn:
        cursor = await conn.execute(BATCH_TIP_SQL, {
            "sender_ids": [tip.sender_id for tip in tips],
            "recipient_ids": [tip.recipient_id for tip in tips],
            "amounts_tokens": [tip.amount_tokens for tip in tips],
            "keys": [tip.idempotency_key for tip in tips],
            "fingerprints": [tip.request_fingerprint for tip in tips]})
        rows = await cursor.fetchall()
    assert len(rows) == len(tips), (len(rows), len(tips))
    return [(str(row[0]), dict(row[1]), bool(row[2])) for row in rows]


_BATCHERS: weakref.WeakKeyDictionary[AsyncConnectionPool, TipBatcher] = \
    weakref.WeakKeyDictionary()


def batcher_for(pool: AsyncConnectionPool) -> TipBatcher:
    """The one batcher of ``pool``, made on first use (on the loop that uses the pool)."""
    batcher = _BATCHERS.get(pool)
    if batcher is None:
        batcher = _BATCHERS[pool] = TipBatcher(pool)
    return batcher
