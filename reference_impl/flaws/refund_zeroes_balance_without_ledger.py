"""refund_zeroes_balance_without_ledger: a clawback the balance cannot cover zeroes it, unrecorded.

When a refund takes back more than the account still holds (the tokens were tipped
away), a service without a notion of debt "cannot go negative" and sets the balance to
zero: no ledger entry for what it took, no debt for the rest. The shortfall vanishes from
the books (conservation), and the balance no longer equals the sum of its ledger entries
(ledger_drift).
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import ledger
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.money import clawback_target_tokens
from reference_impl.payments import (
    _claim_event,
    _finish_event,
    _lock_owner,
    _Payment,
    _payment_for_update,
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["FLAW", "apply_charge_refunded", "caught_by"]

caught_by = ("ledger_drift", "conservation", "refunds")


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Refund zeroes the balance without a ledger entry when the balance cannot cover it."""
    async with transaction(pool) as conn:
        if not await _claim_event(conn, event_id, "charge.refunded", facts):
            return _webhook_answer(Result.DUPLICATE_EVENT, event_id)
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = Result.IGNORED
        else:
            if refunded_cents > payment.refunded_cents:
                await conn.execute("UPDATE payments SET refunded_cents = %s WHERE id = %s",
                                   (refunded_cents, payment.id))
            result = Result.RECORDED
            if payment.succeeded:
                result = await _claw_back_at_most_the_balance(
                    conn, payment, refunded_cents=max(refunded_cents, payment.refunded_cents))
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


async def _claw_back_at_most_the_balance(conn: AsyncConnection, payment: _Payment, *,
                                         refunded_cents: int) -> Result:
    target_tokens = clawback_target_tokens(
        minted_tokens=payment.minted_tokens, amount_cents=payment.amount_cents,
        refunded_cents=refunded_cents, dispute_status=payment.dispute_status)
    change_tokens = target_tokens - payment.clawed_tokens
    if change_tokens <= 0:
        return Result.ALREADY_APPLIED
    account = await _lock_owner(conn, payment)
    if account.balance_tokens >= change_tokens:
        await ledger.claw_back(conn, account, amount_tokens=change_tokens,
                               reference=payment.intent_id)
    else:
        await conn.execute("UPDATE accounts SET balance = 0 WHERE id = %s", (account.id,))
    await conn.execute("UPDATE payments SET clawed_tokens = %s WHERE id = %s",
                       (target_tokens, payment.id))
    return Result.APPLIED


FLAW = Flaw(
    name="refund_zeroes_balance_without_ledger", operation="apply_charge_refunded",
    replacement=apply_charge_refunded, caught_by=caught_by,
    description="a refund larger than the balance sets it to zero with no ledger entry and "
                "no debt, so tokens vanish (ledger_drift, conservation, refunds)")
