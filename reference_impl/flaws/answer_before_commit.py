"""answer_before_commit: a tip is answered 201 before its transaction commits.

"Answer fast, commit after": the tip is decided and written in a transaction, the 201
with the new balance is handed to the server, and the COMMIT follows. The window between
them is widened to ``_deferred.COMMIT_DELAY_S`` and kept unobservable (see
``_deferred``): without a fault every request sees the tip committed. A crash in the
window rolls the tip back after the client was told it happened: an acknowledged spend
is lost, and its retry with the same key runs as a new tip.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import retry_transient
from reference_impl.errors import Answer, Result
from reference_impl.flaws._deferred import answer_then_commit
from reference_impl.flaws._flaw import Flaw
from reference_impl.service import _insufficient

__all__ = ["FLAW", "caught_by", "tip"]

caught_by = ("durability",)
scenarios = ("crash-during-spends", "database-restart")


@retry_transient
async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Tip answered before commit: the 201 leaves before the transaction commits."""
    assert sender_id != recipient_id, "the route refuses tips to oneself"
    assert amount_tokens > 0, amount_tokens
    request_fingerprint = idempotency.fingerprint(
        "tip", {"to": recipient_id, "amount": amount_tokens})

    async def decide(conn: AsyncConnection) -> tuple[Answer, bool]:
        stored = await idempotency.claim(conn, account_id=sender_id, key=idempotency_key,
                                         operation="tip", request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored, False
        accounts = await ledger.lock_accounts(conn, (sender_id, recipient_id))
        sender, recipient = accounts.get(sender_id), accounts.get(recipient_id)
        assert sender is not None, f"the authenticated sender {sender_id} has no account"
        if recipient is None:
            answer = Answer(result=Result.NOT_FOUND,
                            body={"message": f"no user {recipient_id} to tip"})
        elif sender.balance_tokens < amount_tokens:
            answer = _insufficient(sender, amount_tokens)
        else:
            movement = await ledger.transfer(
                conn, sender=sender, recipient=recipient, amount_tokens=amount_tokens,
                kind=ledger.TransactionKind.TIP, reference=f"tip:{sender_id}:{idempotency_key}")
            answer = Answer(result=Result.CREATED, body={
                "tip_id": movement.transaction_id,
                "balance": movement.accounts[sender_id].balance_tokens})
        await idempotency.record(conn, account_id=sender_id, key=idempotency_key, answer=answer)
        return answer, True

    return await answer_then_commit(pool, decide)


FLAW = Flaw(
    name="answer_before_commit", operation="tip", replacement=tip, caught_by=caught_by,
    scenarios=scenarios,
    description="tips answer 201 about 100 ms before their transaction commits, so a crash "
                "in between loses acknowledged tips (durability)")
