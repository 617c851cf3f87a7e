"""Answer first, commit after: a transaction whose answer leaves before its COMMIT.

The correct service answers only after COMMIT returned: an answer is a promise that the
work is durable. A service that answers first decides in a transaction, hands the answer
to the client, and commits after. A crash in between rolls the work back while the
client holds an answer for it.

In a real service the gap is the COMMIT's own round trip, too short for a test to land a
kill in, and any request served inside a longer gap could read the uncommitted state,
which would show the bug without a fault. So this module makes the gap long and
unobservable: once the answer has been handed to the server to send, the whole process
stops for ``COMMIT_DELAY_S`` (a blocking sleep: no other request is served meanwhile),
then commits with a blocking call. Every later request finds the work committed; only a
kill during the stop finds it not. Only flaws use this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from psycopg import AsyncConnection, pq
from psycopg_pool import AsyncConnectionPool

from reference_impl.errors import Answer

__all__ = ["COMMIT_DELAY_S", "answer_then_commit"]

log = logging.getLogger(__name__)

# The stop between handing the answer over and committing: far longer than a client needs
# to act on the answer (a test kills the service on seeing it), short enough that a burst
# of requests still finishes within any client's timeout.
COMMIT_DELAY_S = 0.1
# Loop turns given to the server to write the answer out before the stop: it does so in
# the first turn after the answer is ready (the handler resumes and sends at once).
_SEND_TURNS = 3

_PENDING: set[asyncio.Task[None]] = set()  # strong references, so no task is collected


async def answer_then_commit(
        pool: AsyncConnectionPool,
        decide: Callable[[AsyncConnection], Awaitable[tuple[Answer, bool]]]) -> Answer:
    """Run ``decide`` in a transaction; return its answer, and commit after it is sent.

    ``decide`` returns the answer and whether it wrote anything; a transaction that wrote
    nothing (a replay, a duplicate) commits at once. An error before the answer
    propagates as usual (so deadlocks are retried by the caller's ``retry_transient``);
    an error at the late commit is only logged: the client has its answer already.
    """
    answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_decide_then_commit(pool, decide, answered))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
    return await answered


async def _decide_then_commit(
        pool: AsyncConnectionPool,
        decide: Callable[[AsyncConnection], Awaitable[tuple[Answer, bool]]],
        answered: asyncio.Future[Answer]) -> None:
    try:
        async with pool.connection() as conn:
            await conn.execute("BEGIN")
            try:
                answer, wrote = await decide(conn)
            except BaseException:
                if not conn.broken:
                    await conn.execute("ROLLBACK")
                raise
            answered.set_result(answer)
            if not wrote:
                await conn.execute("COMMIT")
                return
            for _ in range(_SEND_TURNS):
                await asyncio.sleep(0)  # the handler resumes and writes the answer out
            time.sleep(COMMIT_DELAY_S)  # blocking on purpose: the whole service stops
            result = conn.pgconn.exec_(b"COMMIT")  # blocking too: committed before any
            if result.status != pq.ExecStatus.COMMAND_OK:  # other request runs
                log.error("the commit after the answer failed: %s",
                          (result.error_message or b"").decode(errors="replace"))
    except Exception as exc:
        if not answered.done():
            answered.set_exception(exc)
        else:
            log.error("the commit after the answer failed: %s", exc)
    except asyncio.CancelledError:
        if not answered.done():
            answered.cancel()
        raise
