"""refund_ignores_bonus: a refund converts refunded cents to tokens at the list price.

``tokens = amount_refunded / 5`` looks right (1 token = 5 cents) and is, for packages
without a bonus. A 5000-token package mints 5250 tokens for 25000 cents, so a refund must
take back its share of the 5250; converting cents at the list price leaves the bonus
share of every refund with the fan.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from reference_impl.db import retry_transient
from reference_impl.errors import Answer
from reference_impl.flaws._flaw import Flaw
from reference_impl.flaws._refunds import apply_refund
from reference_impl.money import CENTS_PER_TOKEN, DisputeStatus
from reference_impl.payments import _Payment
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_charge_refunded", "caught_by"]

caught_by = ("refunds", "conservation", "reconciliation")


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Refund ignores the bonus: refunded cents become tokens at 5 cents each, not as a share."""
    return await apply_refund(pool, event_id=event_id, facts=facts,
                              refunded_cents=refunded_cents, target_tokens=_at_list_price)


def _at_list_price(payment: _Payment) -> int:
    if payment.dispute_status in (DisputeStatus.OPEN, DisputeStatus.LOST):
        return payment.minted_tokens
    return payment.refunded_cents // CENTS_PER_TOKEN


FLAW = Flaw(
    name="refund_ignores_bonus", operation="apply_charge_refunded",
    replacement=apply_charge_refunded, caught_by=caught_by,
    description="refunds convert cents to tokens at the list price, so the bonus tokens of a "
                "refunded bonus package stay with the fan (refunds, conservation, reconciliation)")
