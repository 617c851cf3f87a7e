"""purchase_blocks_credit: the purchase call records its intent as settled, so no webhook credits.

The purchase call writes the payment row itself as soon as the provider answers, marked
``succeeded`` when the provider said so. That flag is exactly what the success webhook's
crediting is guarded by (the uniqueness that stops a second credit), so when the purchase
call gets there first the webhook sees the intent as already credited and credits
nothing: the user paid and never got the tokens.
"""

from __future__ import annotations

import dataclasses

import stripe
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency
from reference_impl.db import retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.money import package_for
from reference_impl.payments import _confirm_intent, _reserve_purchase, _stored_answer

__all__ = ["FLAW", "caught_by", "create_purchase"]

caught_by = ("conservation", "exactly_once_credit", "reconciliation")


async def create_purchase(pool: AsyncConnectionPool, *, stripe_client: stripe.StripeClient,
                          user_id: int, tokens: int, payment_method: str,
                          idempotency_key: str | None) -> Answer:
    """Purchase blocks credit: the purchase call marks its intent settled before the webhook."""
    package = package_for(tokens)
    if package is None:
        return Answer(result=Result.INVALID, body={"message": f"{tokens} is not a package"})
    request_fingerprint = idempotency.fingerprint(
        "create_purchase", {"tokens": tokens, "payment_method": payment_method})
    if idempotency_key is not None:
        stored = await _stored_answer(pool, user_id=user_id, key=idempotency_key,
                                      request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
    reserved = await _reserve_purchase(pool, user_id=user_id, package=package,
                                       idempotency_key=idempotency_key,
                                       request_fingerprint=request_fingerprint)
    if isinstance(reserved, Answer):
        return reserved
    answer, intent_id = await _confirm_intent(
        stripe_client, user_id=user_id, package=package, payment_method=payment_method,
        idempotency_key=idempotency_key, purchase_id=reserved)
    if answer.result == Result.IDEMPOTENCY_CONFLICT:
        return answer
    return await _record_settled_purchase(
        pool, user_id=user_id, purchase_id=reserved, answer=answer, intent_id=intent_id,
        idempotency_key=idempotency_key, request_fingerprint=request_fingerprint)


@retry_transient
async def _record_settled_purchase(pool: AsyncConnectionPool, *, user_id: int,
                                   purchase_id: int, answer: Answer, intent_id: str | None,
                                   idempotency_key: str | None,
                                   request_fingerprint: str) -> Answer:
    async with transaction(pool) as conn:
        stored = await idempotency.claim(
            conn, account_id=user_id, key=idempotency_key, operation="create_purchase",
            request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        if intent_id is not None:
            # The bug: "the provider said succeeded, so the payment is settled".
            await conn.execute(
                "UPDATE payments SET intent_id = COALESCE(intent_id, %s), purchase_status = %s,"
                " succeeded = succeeded OR %s, updated_at = now() WHERE id = %s",
                (intent_id, answer.body["status"], answer.body["status"] == "succeeded",
                 purchase_id))
            answer = dataclasses.replace(answer, body={"purchase_id": purchase_id, **answer.body})
        await idempotency.record(conn, account_id=user_id, key=idempotency_key, answer=answer)
        return answer


FLAW = Flaw(
    name="purchase_blocks_credit", operation="create_purchase", replacement=create_purchase,
    caught_by=caught_by,
    description="the purchase call writes its intent as settled, so the success webhook finds "
                "it credited and never credits (conservation, exactly_once_credit, reconciliation)")
