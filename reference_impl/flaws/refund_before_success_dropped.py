"""refund_before_success_dropped: a refund that arrives before the payment's success is dropped.

Webhooks are not ordered. A handler that looks up the succeeded payment, finds none
("nothing to refund yet") and acknowledges the event loses the refund for good: the late
success then credits the full purchase, and the fan keeps tokens the provider has
already given back as money.
"""

from __future__ import annotations

import dataclasses

from psycopg_pool import AsyncConnectionPool

from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.payments import (
    _claim_event,
    _finish_event,
    _payment_for_update,
    _settle_if_succeeded,
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_charge_refunded", "caught_by"]

caught_by = ("conservation", "refunds")


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Refund before success dropped: a refund of a payment not yet credited is acknowledged."""
    async with transaction(pool) as conn:
        if not await _claim_event(conn, event_id, "charge.refunded", facts):
            return _webhook_answer(Result.DUPLICATE_EVENT, event_id)
        payment = await _payment_for_update(conn, facts)
        if payment is None or not payment.succeeded:
            result = Result.IGNORED  # "no credited payment to refund"
        else:
            if refunded_cents > payment.refunded_cents:
                await conn.execute("UPDATE payments SET refunded_cents = %s WHERE id = %s",
                                   (refunded_cents, payment.id))
                payment = dataclasses.replace(payment, refunded_cents=refunded_cents)
            result = await _settle_if_succeeded(conn, payment)
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


FLAW = Flaw(
    name="refund_before_success_dropped", operation="apply_charge_refunded",
    replacement=apply_charge_refunded, caught_by=caught_by,
    description="a refund delivered before its payment's success is acknowledged and "
                "dropped, so the fan keeps refunded tokens (conservation, refunds)")
