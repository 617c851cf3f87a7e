"""The correct refund handling with the clawback arithmetic passed in, for arithmetic flaws.

``apply_refund`` is ``payments.apply_charge_refunded`` step by step (event id claimed,
payment locked, cumulative refund recorded, the account moved by the difference between
the target and what was taken so far, shortfalls to debt), except that the target is
computed by the caller's ``target_tokens``. A flaw whose bug is only the arithmetic passes
its wrong formula and nothing else differs. Only flaws use this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import ledger
from reference_impl.db import transaction
from reference_impl.errors import Answer, Result
from reference_impl.payments import (
    _claim_event,
    _finish_event,
    _lock_owner,
    _Payment,
    _payment_for_update,
    _webhook_answer,
)
from reference_impl.schemas import PaymentFacts

__all__ = ["TargetTokens", "apply_refund"]

TargetTokens = Callable[[_Payment], int]  # tokens that should have been taken back in total


async def apply_refund(pool: AsyncConnectionPool, *, event_id: str, facts: PaymentFacts | None,
                       refunded_cents: int, target_tokens: TargetTokens) -> Answer:
    """Apply one ``charge.refunded`` with ``target_tokens`` deciding the total clawback."""
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
                payment = dataclasses.replace(payment, refunded_cents=refunded_cents)
            result = Result.RECORDED
            if payment.succeeded:
                result = await _settle(conn, payment, target_tokens(payment))
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


async def _settle(conn: AsyncConnection, payment: _Payment, target_tokens: int) -> Result:
    change_tokens = min(target_tokens, payment.minted_tokens) - payment.clawed_tokens
    if change_tokens == 0:
        return Result.ALREADY_APPLIED
    account = await _lock_owner(conn, payment)
    if change_tokens > 0:
        await ledger.claw_back(conn, account, amount_tokens=change_tokens,
                               reference=payment.intent_id)
    else:
        await ledger.credit(conn, account, amount_tokens=-change_tokens,
                            kind=ledger.TransactionKind.REINSTATEMENT,
                            reference=payment.intent_id)
    await conn.execute("UPDATE payments SET clawed_tokens = %s WHERE id = %s",
                       (payment.clawed_tokens + change_tokens, payment.id))
    return Result.APPLIED
