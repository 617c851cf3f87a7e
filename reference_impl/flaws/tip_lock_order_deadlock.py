"""tip_lock_order_deadlock: a tip locks the sender's row, then the recipient's, and never retries.

Locking "me first, then the other side" is natural in code and fatal under load: a tip
from A to B and one from B to A at the same moment each hold one row and wait for the
other. PostgreSQL breaks the cycle by aborting one transaction with a deadlock error, and
a service that does not retry it answers 503 (or, with a long lock timeout, very late).
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "tip"]

caught_by = ("errors",)


async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Lock-order deadlock on tip: sender locked before recipient, no deadlock retry."""
    request_fingerprint = idempotency.fingerprint(
        "tip", {"to": recipient_id, "amount": amount_tokens})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=sender_id, key=idempotency_key,
                                         operation="tip", request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        sender = await _lock_one(conn, sender_id)
        recipient = await _lock_one(conn, recipient_id)
        assert sender is not None, f"the authenticated sender {sender_id} has no account"
        if recipient is None:
            answer = Answer(result=Result.NOT_FOUND,
                            body={"message": f"no user {recipient_id} to tip"})
        elif sender.balance_tokens < amount_tokens:
            answer = Answer(result=Result.INSUFFICIENT_FUNDS, body={
                "message": f"the balance of {sender.balance_tokens} tokens does not cover "
                           f"{amount_tokens}", "balance": sender.balance_tokens})
        else:
            movement = await ledger.transfer(
                conn, sender=sender, recipient=recipient, amount_tokens=amount_tokens,
                kind=ledger.TransactionKind.TIP, reference=f"tip:{sender_id}:{idempotency_key}")
            answer = Answer(result=Result.CREATED, body={
                "tip_id": movement.transaction_id,
                "balance": movement.accounts[sender_id].balance_tokens})
        await idempotency.record(conn, account_id=sender_id, key=idempotency_key, answer=answer)
        return answer


async def _lock_one(conn: AsyncConnection, account_id: int) -> ledger.Account | None:
    accounts = await ledger.lock_accounts(conn, (account_id,))
    return accounts.get(account_id)


FLAW = Flaw(
    name="tip_lock_order_deadlock", operation="tip", replacement=tip, caught_by=caught_by,
    description="tips lock the sender's row then the recipient's with no deadlock retry, so "
                "tips in a cycle deadlock and answer 503 (errors)")
