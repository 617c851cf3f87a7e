"""tip_ignores_idempotency_key: a tip accepts an Idempotency-Key and never looks at it.

The header is required by the API and logged, but no key is claimed or remembered, so a
client that retries a tip after a timeout (or a double-click that sends it twice) pays
twice, and every copy answers with a new tip id.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from reference_impl import ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "tip"]

caught_by = ("idempotency", "reconciliation")


@retry_transient
async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Tip ignores its idempotency key: every retry of one tip is applied again."""
    del idempotency_key  # accepted, never used
    async with transaction(pool) as conn:
        accounts = await ledger.lock_accounts(conn, (sender_id, recipient_id))
        sender, recipient = accounts.get(sender_id), accounts.get(recipient_id)
        assert sender is not None, f"the authenticated sender {sender_id} has no account"
        if recipient is None:
            return Answer(result=Result.NOT_FOUND,
                          body={"message": f"no user {recipient_id} to tip"})
        if sender.balance_tokens < amount_tokens:
            return Answer(result=Result.INSUFFICIENT_FUNDS, body={
                "message": f"the balance of {sender.balance_tokens} tokens does not cover "
                           f"{amount_tokens}", "balance": sender.balance_tokens})
        movement = await ledger.transfer(
            conn, sender=sender, recipient=recipient, amount_tokens=amount_tokens,
            kind=ledger.TransactionKind.TIP, reference=f"tip:{sender_id}")
        return Answer(result=Result.CREATED, body={
            "tip_id": movement.transaction_id,
            "balance": movement.accounts[sender_id].balance_tokens})


FLAW = Flaw(
    name="tip_ignores_idempotency_key", operation="tip", replacement=tip, caught_by=caught_by,
    description="tips never claim their Idempotency-Key, so a retried tip is paid again under "
                "a new tip id (idempotency, reconciliation)")
