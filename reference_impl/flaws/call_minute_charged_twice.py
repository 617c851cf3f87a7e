"""call_minute_charged_twice: a call minute is charged once per request, not once per minute.

The charge is deduplicated by the client's idempotency key only. A minute sent twice with
two keys (two devices, a client that retries with a fresh key, a reconnecting call) moves
the money twice; the charge record's ``INSERT ... ON CONFLICT DO NOTHING`` keeps the table
tidy and hides that the ledger was charged again.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "charge_minute"]

caught_by = ("calls", "reconciliation")


@retry_transient
async def charge_minute(pool: AsyncConnectionPool, *, fan_id: int, call_id: int, minute: int,
                        idempotency_key: str) -> Answer:
    """Call minute charged twice: charges are unique per idempotency key, not per minute."""
    request_fingerprint = idempotency.fingerprint(
        "charge_minute", {"call_id": call_id, "minute": minute})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=fan_id, key=idempotency_key,
                                         operation="charge_minute",
                                         request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        answer = await _charge(conn, fan_id=fan_id, call_id=call_id, minute=minute)
        await idempotency.record(conn, account_id=fan_id, key=idempotency_key, answer=answer)
        return answer


async def _charge(conn: AsyncConnection, *, fan_id: int, call_id: int, minute: int) -> Answer:
    cursor = await conn.execute(
        "SELECT fan_id, creator_id, rate_tokens_per_minute, ended FROM calls"
        " WHERE id = %s FOR UPDATE", (call_id,))
    call = await cursor.fetchone()
    if call is None:
        return Answer(result=Result.NOT_FOUND, body={"message": f"no call {call_id}"})
    call_fan_id, creator_id, rate_tokens, ended = int(call[0]), int(call[1]), int(call[2]), call[3]
    if call_fan_id != fan_id:
        return Answer(result=Result.FORBIDDEN,
                      body={"message": f"only the fan of call {call_id} may charge it"})
    if ended:
        return Answer(result=Result.CALL_ENDED, body={"message": f"call {call_id} has ended"})
    accounts = await ledger.lock_accounts(conn, (fan_id, creator_id))
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
    await conn.execute(
        "INSERT INTO call_charges (call_id, minute, amount_tokens, transaction_id, balance_after)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (call_id, minute) DO NOTHING",
        (call_id, minute, rate_tokens, movement.transaction_id, balance_tokens))
    return Answer(result=Result.CREATED,
                  body={"charge_id": movement.transaction_id, "balance": balance_tokens})


FLAW = Flaw(
    name="call_minute_charged_twice", operation="charge_minute", replacement=charge_minute,
    caught_by=caught_by,
    description="call charges are unique per idempotency key, not per minute, so a minute "
                "sent with two keys is charged twice (calls, reconciliation)")
