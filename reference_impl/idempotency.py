"""Client idempotency keys: claim a key, do the work, store the answer, in one transaction.

A key belongs to one account (two users may use the same key independently). The first
request with a key claims it by inserting its row; a concurrent request with the same key
waits on that insert until the first transaction commits, then reads the stored answer.
So however a client retries, the work is applied at most once, and every replay of the
same request gets the same status and body. The same key with another request (another
operation, or other parameters) is refused as ``idempotency_conflict``.

This module reads and writes the ``idempotency_keys`` table and nothing else; it never
opens a transaction (its caller's transaction is the one that must commit the answer
together with the work).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from reference_impl.errors import Answer, Result

__all__ = ["IDEMPOTENCY_KEY_CHARS_MAX", "claim", "conflict", "fingerprint", "lookup", "record"]

# Stripe allows 255 characters; a UUID needs 36.
IDEMPOTENCY_KEY_CHARS_MAX = 255


def fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    """A digest of one request: the operation and its parsed parameters, order-free."""
    canonical = json.dumps({"operation": operation, "params": dict(params)}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(conn: AsyncConnection, *, account_id: int, key: str | None, operation: str,
                request_fingerprint: str) -> Answer | None:
    """Claim ``key`` for this request, or return the answer the key already stands for.

    Returns:
        None when the caller now owns the key (or passed no key) and must do the work,
        then call ``record``; otherwise the stored answer (``replayed=True``) or an
        ``idempotency_conflict`` answer, which the caller returns without doing anything.
    """
    if key is None:
        return None
    cursor = await conn.execute(
        "INSERT INTO idempotency_keys (account_id, key, operation, fingerprint)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, key) DO NOTHING RETURNING 1",
        (account_id, key, operation, request_fingerprint))
    if await cursor.fetchone() is not None:
        return None
    stored = await lookup(conn, account_id=account_id, key=key, operation=operation,
                          request_fingerprint=request_fingerprint)
    assert stored is not None, "a key that conflicted on insert must be readable"
    return stored


async def lookup(conn: AsyncConnection, *, account_id: int, key: str, operation: str,
                 request_fingerprint: str) -> Answer | None:
    """The answer stored for ``key``: a replay, a conflict, or None if the key is unused."""
    cursor = await conn.execute(
        "SELECT operation, fingerprint, result, body FROM idempotency_keys"
        " WHERE account_id = %s AND key = %s", (account_id, key))
    row = await cursor.fetchone()
    if row is None:
        return None
    stored_operation, stored_fingerprint, result, body = row
    if stored_fingerprint != request_fingerprint:
        return conflict(key=key, stored_operation=stored_operation)
    assert stored_operation == operation, (stored_operation, operation)
    assert result is not None, "a committed key always holds its answer"
    return Answer(result=Result(result), body=dict(body), replayed=True)


def conflict(*, key: str, stored_operation: str) -> Answer:
    """The answer to a request whose key was used for another one (nothing is stored)."""
    return Answer(result=Result.IDEMPOTENCY_CONFLICT, body={
        "message": f"Idempotency-Key {key!r} was used for another request "
                   f"({stored_operation} with other parameters); use a new key for a "
                   "new request"})


async def record(conn: AsyncConnection, *, account_id: int, key: str | None,
                 answer: Answer) -> None:
    """Store the answer of the request that claimed ``key`` (no-op without a key)."""
    if key is None:
        return
    assert not answer.replayed, "a replayed answer is already stored"
    assert answer.result != Result.IDEMPOTENCY_CONFLICT, "conflicts are not stored"
    cursor = await conn.execute(
        "UPDATE idempotency_keys SET result = %s, status_code = %s, body = %s"
        " WHERE account_id = %s AND key = %s AND result IS NULL",
        (str(answer.result), answer.status_code, Jsonb(dict(answer.body)), account_id, key))
    assert cursor.rowcount == 1, f"key {key!r} of account {account_id} was not claimed here"
