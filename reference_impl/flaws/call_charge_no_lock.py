"""call_charge_no_lock: a call minute is charged from balances read without a row lock.

The check-then-act race of a per-minute biller: the call and the fan's balance are read
with plain ``SELECT``s, the balance is compared with the rate in application code, and
the charge is then posted. Charges of several minutes (and tips) of one fan that overlap
all pass the check against the same balance; the later ones then drive the balance below
zero, which the database's ``CHECK (balance >= 0)`` refuses, and the charge fails with a
500 instead of a clean 402 that ends the call.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "charge_minute"]

caught_by = ("errors",)


@retry_transient
async def charge_minute(pool: AsyncConnectionPool, *, fan_id: int, call_id: int, minute: int,
                        idempotency_key: str) -> Answer:
    """No row lock on call charge: the funds check runs on a balance read without a lock."""
    request_fingerprint = idempotency.fingerprint(
        "charge_minute", {"call_id": call_id, "minute": minute})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=fan_id, key=idempotency_key,
                                         operation="charge_minute",
                                         request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        answer = await _charge_unlocked(conn, fan_id=fan_id, call_id=call_id, minute=minute)
        await idempotency.record(conn, account_id=fan_id, key=idempotency_key, answer=answer)
        return answer


async def _charge_unlocked(conn: Any, *, fan_id: int, call_id: int, minute: int) -> Answer:
    cursor = await conn.execute(
        "SELECT fan_id, creator_id, rate_tokens_per_minute, ended FROM calls WHERE id = %s",
        (call_id,))
    call = await cursor.fetchone()
    if call is None:
        return Answer(result=Result.NOT_FOUND, body={"message": f"no call {call_id}"})
    call_fan_id, creator_id, rate_tokens, ended = int(call[0]), int(call[1]), int(call[2]), call[3]
    if call_fan_id != fan_id:
        return Answer(result=Result.FORBIDDEN,
                      body={"message": f"only the fan of call {call_id} may charge it"})
    cursor = await conn.execute(
        "SELECT id, balance_after FROM call_charges WHERE call_id = %s AND minute = %s",
        (call_id, minute))
    first = await cursor.fetchone()
    if first is not None:
        return Answer(result=Result.EXISTS,
                      body={"charge_id": int(first[0]), "balance": int(first[1])})
    if ended:
        return Answer(result=Result.CALL_ENDED, body={"message": f"call {call_id} has ended"})
    cursor = await conn.execute(
        "SELECT id, kind, balance, debt FROM accounts WHERE id = ANY(%s)",
        ([fan_id, creator_id],))
    accounts = {int(row[0]): ledger.Account(id=int(row[0]), kind=str(row[1]),
                                            balance_tokens=int(row[2]), debt_tokens=int(row[3]))
                for row in await cursor.fetchall()}
    fan, creator = accounts[fan_id], accounts[creator_id]
    if fan.balance_tokens < rate_tokens:
        await conn.execute(
            "UPDATE calls SET ended = true, end_reason = 'insufficient_funds', ended_at = now()"
            " WHERE id = %s", (call_id,))
        return Answer(result=Result.INSUFFICIENT_FUNDS, body={
            "message": f"the balance of {fan.balance_tokens} tokens does not cover "
                       f"{rate_tokens}", "balance": fan.balance_tokens, "call_ended": True})
    movement = await ledger.transfer(
        conn, sender=fan, recipient=creator, amount_tokens=rate_tokens,
        kind=ledger.TransactionKind.CALL_CHARGE, reference=f"call:{call_id}:{minute}")
    balance_tokens = movement.accounts[fan_id].balance_tokens
    cursor = await conn.execute(
        "INSERT INTO call_charges (call_id, minute, amount_tokens, transaction_id, balance_after)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (call_id, minute, rate_tokens, movement.transaction_id, balance_tokens))
    row = await cursor.fetchone()
    assert row is not None
    return Answer(result=Result.CREATED, body={"charge_id": int(row[0]), "balance": balance_tokens})


FLAW = Flaw(
    name="call_charge_no_lock", operation="charge_minute", replacement=charge_minute,
    caught_by=caught_by,
    description="call charges check the balance without locking the row, so overlapping "
                "minutes overspend into the CHECK constraint and answer 500 (errors)")
