"""dispute_won_not_reinstated: a dispute closed in the fan's favour never gives the tokens back.

The handler for ``charge.dispute.closed`` only knows chargebacks as losses: it marks the
dispute closed-lost whatever its outcome. When the merchant wins, the money comes back
to the platform but the tokens the dispute took stay taken (and a fan left in debt by the
dispute stays in debt).
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from reference_impl.db import retry_transient
from reference_impl.errors import Answer
from reference_impl.flaws._flaw import Flaw
from reference_impl.money import DisputeStatus
from reference_impl.payments import _apply_dispute
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_dispute_closed", "caught_by"]

caught_by = ("conservation", "reconciliation")


@retry_transient
async def apply_dispute_closed(pool: AsyncConnectionPool, *, event_id: str,
                               facts: PaymentFacts | None, dispute_id: str,
                               won: bool) -> Answer:
    """Dispute won not reinstated: every closed dispute is recorded as lost."""
    del won  # read by the correct handler; this one treats every close as a loss
    return await _apply_dispute(pool, event_id=event_id, event_type="charge.dispute.closed",
                                facts=facts, dispute_id=dispute_id, status=DisputeStatus.LOST)


FLAW = Flaw(
    name="dispute_won_not_reinstated", operation="apply_dispute_closed",
    replacement=apply_dispute_closed, caught_by=caught_by,
    description="a dispute closed as won is recorded as lost, so the tokens it took are never "
                "given back (conservation, reconciliation)")
