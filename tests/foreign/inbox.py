"""The foreign service's webhook inbox: events are stored, answered 202, and applied later.

A verified event is written to ``webhook_inbox`` and answered at once; a worker applies
the events that have waited at least ``INBOX_DELAY_MS``, oldest first, each in one
transaction with the mark that it was applied (so none is applied twice, also across
workers: rows are claimed with SKIP LOCKED). ``GET /admin/inbox`` says how many are still
pending (``operations.count_pending``), which is what a profile's ``[settle]`` asks before
reading the end state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from tests.foreign.operations import Facts

__all__ = ["INBOX_DELAY_MS", "apply_due", "queue_event", "run_worker"]

log = logging.getLogger(__name__)

INBOX_DELAY_MS = 150  # an event waits at least this long: later than its delivery's answer
EVENTS_PER_PASS_MAX = 32
IDLE_SLEEP_S = 0.05


def queue_event(pool: ConnectionPool[Any], facts: Facts) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO webhook_inbox (facts) VALUES (%s)", (Jsonb(asdict(facts)),))


def apply_due(pool: ConnectionPool[Any], apply: Callable[[psycopg.Connection[Any], Facts], Any],
              *, delay_ms: int = INBOX_DELAY_MS) -> int:
    """Apply up to ``EVENTS_PER_PASS_MAX`` due events, one transaction each; how many."""
    applied = 0
    while applied < EVENTS_PER_PASS_MAX:
        with pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT inbox_no, facts FROM webhook_inbox WHERE applied_at IS NULL"
                " AND received_at <= clock_timestamp() - make_interval(secs => %s)"
                " ORDER BY inbox_no LIMIT 1 FOR UPDATE SKIP LOCKED",
                (delay_ms / 1000,)).fetchone()
            if row is None:
                return applied
            apply(conn, Facts(**row[1]))
            conn.execute("UPDATE webhook_inbox SET applied_at = clock_timestamp()"
                         " WHERE inbox_no = %s", (row[0],))
        applied += 1
    return applied


async def run_worker(pool: ConnectionPool[Any],
                     apply: Callable[[psycopg.Connection[Any], Facts], Any],
                     *, delay_ms: int = INBOX_DELAY_MS) -> None:
    """Apply due events until cancelled; a failed pass is logged and retried."""
    assert delay_ms >= 0, delay_ms
    while True:
        try:
            count = await run_in_threadpool(partial(apply_due, pool, apply, delay_ms=delay_ms))
        except psycopg.Error:
            log.exception("the inbox worker failed; retrying")
            count = 0
        if count < EVENTS_PER_PASS_MAX:
            await asyncio.sleep(IDLE_SLEEP_S)
