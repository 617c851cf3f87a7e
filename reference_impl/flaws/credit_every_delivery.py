"""credit_every_delivery: every delivery of a payment's success webhook credits its tokens.

The handler written as "on payment_intent.succeeded, credit the user": the event id is
logged but never checked, and nothing records that the intent was already credited.
Providers deliver at least once (retries after a timeout, duplicates, replays), so every
extra delivery mints the purchase's tokens again.
"""

from __future__ import annotations

import dataclasses

from psycopg_pool import AsyncConnectionPool

from reference_impl import ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.payments import (
    _claim_event,
    _finish_event,
    _lock_owner,
    _payment_for_update,
    _settle,
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_payment_succeeded", "caught_by"]

caught_by = ("conservation", "exactly_once_credit", "reconciliation")


@retry_transient
async def apply_payment_succeeded(pool: AsyncConnectionPool, *, event_id: str,
                                  facts: PaymentFacts | None) -> Answer:
    """Credit on every webhook delivery: neither the event id nor the intent is deduplicated."""
    async with transaction(pool) as conn:
        await _claim_event(conn, event_id, "payment_intent.succeeded", facts)  # logged only
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = Result.IGNORED
        else:
            await conn.execute("UPDATE payments SET succeeded = true WHERE id = %s",
                               (payment.id,))
            account = await _lock_owner(conn, payment)
            movement = await ledger.credit(
                conn, account, amount_tokens=payment.minted_tokens,
                kind=ledger.TransactionKind.CREDIT, reference=payment.intent_id)
            if not payment.succeeded:  # refunds that came first are settled as they should be
                await _settle(conn, dataclasses.replace(payment, succeeded=True),
                              movement.accounts[account.id])
            result = Result.APPLIED
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


FLAW = Flaw(
    name="credit_every_delivery", operation="apply_payment_succeeded",
    replacement=apply_payment_succeeded, caught_by=caught_by,
    description="every delivery of a success webhook credits the purchase again: no event or "
                "intent uniqueness (conservation, exactly_once_credit, reconciliation)")
