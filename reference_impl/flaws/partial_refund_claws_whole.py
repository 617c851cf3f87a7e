"""partial_refund_claws_whole: any refund, however partial, takes back every token of the purchase.

The handler treats ``charge.refunded`` as "the purchase was refunded" and takes back all
the tokens it minted, never looking at how much of the charge was refunded. A 10% refund
costs the fan the whole package.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from reference_impl.db import retry_transient
from reference_impl.errors import Answer
from reference_impl.flaws._flaw import Flaw
from reference_impl.flaws._refunds import apply_refund
from reference_impl.payments import _Payment
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_charge_refunded", "caught_by"]

caught_by = ("refunds", "conservation", "reconciliation")


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Partial refund claws back the whole purchase: the refunded amount is never read."""
    return await apply_refund(pool, event_id=event_id, facts=facts,
                              refunded_cents=refunded_cents, target_tokens=_whole_purchase)


def _whole_purchase(payment: _Payment) -> int:
    return payment.minted_tokens if payment.refunded_cents > 0 else 0


FLAW = Flaw(
    name="partial_refund_claws_whole", operation="apply_charge_refunded",
    replacement=apply_charge_refunded, caught_by=caught_by,
    description="a partial refund takes back every token of the purchase instead of its share "
                "(refunds, conservation, reconciliation)")
