"""tip_lost_update: a tip reads both balances, checks in Python, and writes absolute values.

The read-modify-write found in many first versions of a wallet: ``SELECT balance``
without ``FOR UPDATE``, ``if balance >= amount`` in application code, then ``UPDATE
accounts SET balance = <computed>``. Two tips from one sender that overlap both read the
same balance; the second write overwrites the first, so the sender pays once for two
tips, and a recipient credited by two tips at once keeps one. The journal entries are
still written, so the books and the balances disagree.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.flaws._journal import journal

__all__ = ["FLAW", "caught_by", "tip"]

caught_by = ("conservation", "reconciliation")


@retry_transient
async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Lost update on tip: read the balances unlocked, check in Python, write absolute values."""
    request_fingerprint = idempotency.fingerprint(
        "tip", {"to": recipient_id, "amount": amount_tokens})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=sender_id, key=idempotency_key,
                                         operation="tip", request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        cursor = await conn.execute(
            "SELECT id, balance FROM accounts WHERE id = ANY(%s) AND kind <> 'system'",
            ([sender_id, recipient_id],))
        balances = {int(row[0]): int(row[1]) for row in await cursor.fetchall()}
        if recipient_id not in balances:
            answer = Answer(result=Result.NOT_FOUND,
                            body={"message": f"no user {recipient_id} to tip"})
        elif balances[sender_id] < amount_tokens:
            answer = Answer(result=Result.INSUFFICIENT_FUNDS, body={
                "message": f"the balance of {balances[sender_id]} tokens does not cover "
                           f"{amount_tokens}", "balance": balances[sender_id]})
        else:
            sender_balance = balances[sender_id] - amount_tokens
            await conn.execute("UPDATE accounts SET balance = %s WHERE id = %s",
                               (sender_balance, sender_id))
            await conn.execute("UPDATE accounts SET balance = %s WHERE id = %s",
                               (balances[recipient_id] + amount_tokens, recipient_id))
            tip_id = await journal(conn, kind=ledger.TransactionKind.TIP,
                                   reference=f"tip:{sender_id}:{idempotency_key}",
                                   entries={sender_id: -amount_tokens,
                                            recipient_id: amount_tokens})
            answer = Answer(result=Result.CREATED,
                            body={"tip_id": tip_id, "balance": sender_balance})
        await idempotency.record(conn, account_id=sender_id, key=idempotency_key, answer=answer)
        return answer


FLAW = Flaw(
    name="tip_lost_update", operation="tip", replacement=tip, caught_by=caught_by,
    description="tips read the balance unlocked and write back an absolute value, so "
                "overlapping tips overwrite each other (conservation, reconciliation)")
