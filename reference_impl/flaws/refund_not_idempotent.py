"""refund_not_idempotent: every charge.refunded delivery takes back its tokens again.

Stripe's Charge carries ``amount_refunded``, the cumulative amount refunded so far. A
handler that neither deduplicates event ids nor keeps what it already took back treats
each delivery as a fresh refund of that amount: a replayed or retried event claws the
tokens back a second time, and so does the next partial refund of the same charge.
"""

from __future__ import annotations

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
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_charge_refunded", "caught_by"]

caught_by = ("refunds", "conservation", "reconciliation")


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Refund not idempotent: each delivery claws back the share of amount_refunded again."""
    async with transaction(pool) as conn:
        await _claim_event(conn, event_id, "charge.refunded", facts)  # logged only
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = Result.IGNORED
        else:
            await conn.execute(
                "UPDATE payments SET refunded_cents = GREATEST(refunded_cents, %s) WHERE id = %s",
                (refunded_cents, payment.id))
            if not payment.succeeded or payment.amount_cents is None:
                result = Result.RECORDED  # the success settles it, as in the correct service
            else:
                tokens = (payment.minted_tokens * min(refunded_cents, payment.amount_cents)
                          // payment.amount_cents)
                if tokens > 0:
                    await ledger.claw_back(conn, await _lock_owner(conn, payment),
                                           amount_tokens=tokens, reference=payment.intent_id)
                result = Result.APPLIED
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


FLAW = Flaw(
    name="refund_not_idempotent", operation="apply_charge_refunded",
    replacement=apply_charge_refunded, caught_by=caught_by,
    description="each charge.refunded delivery claws back the whole refunded share again, so "
                "a replayed refund takes tokens twice (refunds, conservation, reconciliation)")
