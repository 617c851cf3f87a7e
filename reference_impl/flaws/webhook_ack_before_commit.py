"""webhook_ack_before_commit: a payment's success webhook is acknowledged before its credit commits.

"Acknowledge fast, commit after": the handler writes the credit in a transaction, hands
the provider its 200, and the COMMIT follows. The window between them is widened to
``_deferred.COMMIT_DELAY_S`` and kept unobservable (see ``_deferred``): without a fault
every request sees the credit committed. A crash in the window rolls the credit back
after the provider heard 200, and a provider never redelivers an acknowledged event:
the purchase is paid for and never credited.
"""

from __future__ import annotations

import dataclasses

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import ledger
from reference_impl.db import retry_transient
from reference_impl.errors import Answer, Result
from reference_impl.flaws._deferred import answer_then_commit
from reference_impl.flaws._flaw import Flaw
from reference_impl.payments import (
    _claim_event,
    _finish_event,
    _lock_owner,
    _payment_for_update,
    _settle,
    _unmatched,
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_payment_succeeded", "caught_by"]

caught_by = ("exactly_once_credit", "reconciliation")
scenarios = ("crash-during-spends",)


@retry_transient
async def apply_payment_succeeded(pool: AsyncConnectionPool, *, event_id: str,
                                  facts: PaymentFacts | None) -> Answer:
    """Webhook ack before commit: the 200 leaves before the credit's transaction commits."""

    async def decide(conn: AsyncConnection) -> tuple[Answer, bool]:
        if not await _claim_event(conn, event_id, "payment_intent.succeeded", facts):
            return _webhook_answer(Result.DUPLICATE_EVENT, event_id), False
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = _unmatched(facts)
        elif payment.succeeded:
            result = Result.ALREADY_APPLIED
        else:
            await conn.execute("UPDATE payments SET succeeded = true WHERE id = %s",
                               (payment.id,))
            account = await _lock_owner(conn, payment)
            movement = await ledger.credit(
                conn, account, amount_tokens=payment.minted_tokens,
                kind=ledger.TransactionKind.CREDIT, reference=payment.intent_id)
            await _settle(conn, dataclasses.replace(payment, succeeded=True),
                          movement.accounts[account.id])
            result = Result.APPLIED
        await _finish_event(conn, event_id, result)
        return _webhook_answer(result, event_id), True

    return await answer_then_commit(pool, decide)


FLAW = Flaw(
    name="webhook_ack_before_commit", operation="apply_payment_succeeded",
    replacement=apply_payment_succeeded, caught_by=caught_by, scenarios=scenarios,
    description="success webhooks are acknowledged 100 ms before their credit commits, so a "
                "crash in between loses a paid credit (exactly_once_credit, reconciliation)")
