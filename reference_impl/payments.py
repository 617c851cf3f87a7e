"""Operations on money from the provider: purchases, and the webhooks that settle them.

The webhook, never the purchase call, is the single source of truth for crediting. The
purchase call creates and confirms a PaymentIntent and records it (an upsert that never
blocks the webhook's); ``payment_intent.succeeded`` credits the intent's tokens once.

Refunds and disputes are kept as *state* on the payment (the largest cumulative refund
seen, the dispute's status) plus what has been taken back so far; each event moves the
account by the difference between ``money.clawback_target_tokens`` and what was taken.
So a replayed event changes nothing, an older refund with a smaller cumulative amount
changes nothing, and a refund or dispute that arrives before the success is recorded and
applied when the success arrives, with the same net effect as in order.

Every webhook operation claims its event id and applies the event in one transaction,
locking the payment row before the account row (the same order everywhere). Nothing here
knows HTTP; provider failures that leave no answer become ``ApiError`` (502).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import stripe
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import connection, retry_transient, transaction
from reference_impl.errors import Answer, ApiError, Result, WebhookRejected
from reference_impl.money import DisputeStatus, Package, clawback_target_tokens, package_for
from reference_impl.schemas import PaymentFacts

__all__ = [
    "acknowledge_event",
    "apply_charge_refunded",
    "apply_dispute_closed",
    "apply_dispute_created",
    "apply_payment_succeeded",
    "create_purchase",
    "verify_webhook",
]

log = logging.getLogger(__name__)

_PROVIDER_KEY_CHARS_MAX = 255  # Stripe's limit on Idempotency-Key
_DECLINED_STATUSES = frozenset({"requires_payment_method", "canceled"})


async def create_purchase(pool: AsyncConnectionPool, *, stripe_client: stripe.StripeClient,
                          user_id: int, tokens: int, payment_method: str,
                          idempotency_key: str | None) -> Answer:
    """Create and confirm a PaymentIntent for a package; record it; credit nothing.

    The client's key goes to the provider scoped to the user, so a retried purchase makes
    one intent; the answer is stored under the key, so a replay answers the same.

    Returns:
        ``created`` with ``{purchase_id, intent_id, status}``; ``card_declined``;
        ``invalid`` (not a package); ``idempotency_conflict``.

    Raises:
        ApiError: 502 when the provider cannot be reached or fails.
    """
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
    answer, intent_id = await _confirm_intent(
        stripe_client, user_id=user_id, package=package, payment_method=payment_method,
        idempotency_key=idempotency_key)
    if answer.result == Result.IDEMPOTENCY_CONFLICT:
        return answer  # the provider's verdict on its own key; nothing to store
    return await _record_purchase(
        pool, user_id=user_id, package=package, answer=answer, intent_id=intent_id,
        idempotency_key=idempotency_key, request_fingerprint=request_fingerprint)


@retry_transient
async def _stored_answer(pool: AsyncConnectionPool, *, user_id: int, key: str,
                         request_fingerprint: str) -> Answer | None:
    async with connection(pool) as conn:
        return await idempotency.lookup(conn, account_id=user_id, key=key,
                                        operation="create_purchase",
                                        request_fingerprint=request_fingerprint)


async def _confirm_intent(stripe_client: stripe.StripeClient, *, user_id: int,
                          package: Package, payment_method: str,
                          idempotency_key: str | None) -> tuple[Answer, str | None]:
    """Ask the provider; an expected refusal is an Answer, no answer at all an ApiError."""
    params: dict[str, Any] = {
        "amount": package.amount_cents, "currency": "usd", "confirm": True,
        "payment_method": payment_method, "payment_method_types": ["card"],
        "metadata": {"user_id": str(user_id), "tokens": str(package.minted_tokens)},
    }
    options: dict[str, Any] = {}
    if idempotency_key is not None:
        options["idempotency_key"] = _provider_key(user_id, idempotency_key)
    try:
        intent = await stripe_client.v1.payment_intents.create_async(
            params=params, options=options)  # type: ignore[arg-type]
    except stripe.CardError as exc:
        return _declined(exc.user_message or str(exc), _error_intent_id(exc)), None
    except stripe.IdempotencyError as exc:
        return Answer(result=Result.IDEMPOTENCY_CONFLICT, body={
            "message": f"the provider refused the key: {exc.user_message or exc}"}), None
    except stripe.APIConnectionError as exc:
        log.warning("payment provider unreachable: %s", exc)
        raise ApiError(502, "provider_unavailable", "the payment provider could not be "
                       "reached; retry with the same Idempotency-Key") from exc
    except stripe.StripeError as exc:
        log.warning("payment provider failed (%s): %s", exc.http_status, exc)
        raise ApiError(502, "provider_error",
                       f"the payment provider failed ({exc.http_status}): "
                       f"{exc.user_message or type(exc).__name__}; retry with the same "
                       "Idempotency-Key") from exc
    status = str(intent.status)
    if status in _DECLINED_STATUSES:
        return _declined(f"the payment ended as {status}", intent.id), None
    return Answer(result=Result.CREATED, body={"intent_id": intent.id, "status": status}), \
        str(intent.id)


def _declined(message: str, intent_id: str | None) -> Answer:
    body: dict[str, Any] = {"message": f"the card was declined: {message}"}
    if intent_id:
        body["intent_id"] = intent_id
    return Answer(result=Result.CARD_DECLINED, body=body)


def _error_intent_id(exc: stripe.StripeError) -> str | None:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    intent = body.get("error", {}).get("payment_intent")
    return str(intent["id"]) if isinstance(intent, dict) and intent.get("id") else None


def _provider_key(user_id: int, key: str) -> str:
    """The key the provider sees: scoped to the user, and within Stripe's length limit."""
    scoped = f"tokenchaos-{user_id}-{key}"
    if len(scoped) <= _PROVIDER_KEY_CHARS_MAX:
        return scoped
    return f"tokenchaos-{user_id}-sha256-{hashlib.sha256(key.encode()).hexdigest()}"


@retry_transient
async def _record_purchase(pool: AsyncConnectionPool, *, user_id: int, package: Package,
                           answer: Answer, intent_id: str | None, idempotency_key: str | None,
                           request_fingerprint: str) -> Answer:
    async with transaction(pool) as conn:
        stored = await idempotency.claim(
            conn, account_id=user_id, key=idempotency_key, operation="create_purchase",
            request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored  # a concurrent request with this key got here first
        if intent_id is not None:
            # The webhook may have created the row already: update it, never fail on it.
            cursor = await conn.execute(
                "INSERT INTO payments"
                " (intent_id, account_id, amount_cents, minted_tokens, purchase_status)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (intent_id) DO UPDATE"
                " SET purchase_status = EXCLUDED.purchase_status, updated_at = now()"
                " RETURNING id",
                (intent_id, user_id, package.amount_cents, package.minted_tokens,
                 answer.body["status"]))
            row = await cursor.fetchone()
            assert row is not None
            answer = dataclasses.replace(answer, body={"purchase_id": int(row[0]), **answer.body})
        await idempotency.record(conn, account_id=user_id, key=idempotency_key, answer=answer)
        return answer


def verify_webhook(payload: bytes, signature_header: str | None, *, secret: str,
                   tolerance_s: int) -> dict[str, Any]:
    """Check a webhook's signature and timestamp the way Stripe's SDK does; return the event.

    Raises:
        WebhookRejected: ``bad_signature`` (missing, malformed, or not ours),
        ``stale_webhook`` (signed more than ``tolerance_s`` ago), or ``malformed_webhook``
        (signed, but not a JSON object).
    """
    try:
        stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=tolerance_s)
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc):
            raise WebhookRejected("stale_webhook",
                                  f"the signature is older than {tolerance_s} s") from None
        raise WebhookRejected("bad_signature", f"the Stripe-Signature does not verify: "
                                               f"{exc.user_message or exc}") from None
    except Exception:  # the SDK parses the body after verifying it, and may fail anywhere
        raise WebhookRejected("malformed_webhook", "the body is not a Stripe event") from None
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise WebhookRejected("malformed_webhook", "the body is not a JSON object")
    return event


# ---------------------------------------------------------------------------------------
# Webhook operations: one transaction each, the event id claimed in it.


@dataclass(frozen=True, slots=True, kw_only=True)
class _Payment:
    id: int
    intent_id: str
    account_id: int
    amount_cents: int | None
    minted_tokens: int
    succeeded: bool
    refunded_cents: int
    dispute_status: DisputeStatus | None
    clawed_tokens: int


@retry_transient
async def apply_payment_succeeded(pool: AsyncConnectionPool, *, event_id: str,
                                  facts: PaymentFacts | None) -> Answer:
    """Credit the intent's minted tokens once, then apply any refund or dispute recorded."""
    async with transaction(pool) as conn:
        if not await _claim_event(conn, event_id, "payment_intent.succeeded", facts):
            return _webhook_answer(Result.DUPLICATE_EVENT, event_id)
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = Result.IGNORED
        elif payment.succeeded:
            result = Result.ALREADY_APPLIED  # another event for this intent credited it
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
    return _webhook_answer(result, event_id)


@retry_transient
async def apply_charge_refunded(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, refunded_cents: int) -> Answer:
    """Take back the increase of ``floor(t * R / a)``; R only ever grows."""
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
            result = await _settle_if_succeeded(conn, payment)
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


@retry_transient
async def apply_dispute_created(pool: AsyncConnectionPool, *, event_id: str,
                                facts: PaymentFacts | None, dispute_id: str) -> Answer:
    """Take back everything not taken yet, while the dispute is open."""
    return await _apply_dispute(pool, event_id=event_id, event_type="charge.dispute.created",
                                facts=facts, dispute_id=dispute_id, status=DisputeStatus.OPEN)


@retry_transient
async def apply_dispute_closed(pool: AsyncConnectionPool, *, event_id: str,
                               facts: PaymentFacts | None, dispute_id: str,
                               won: bool) -> Answer:
    """Won: give back what the dispute took. Lost: keep it."""
    status = DisputeStatus.WON if won else DisputeStatus.LOST
    return await _apply_dispute(pool, event_id=event_id, event_type="charge.dispute.closed",
                                facts=facts, dispute_id=dispute_id, status=status)


async def _apply_dispute(pool: AsyncConnectionPool, *, event_id: str, event_type: str,
                         facts: PaymentFacts | None, dispute_id: str,
                         status: DisputeStatus) -> Answer:
    async with transaction(pool) as conn:
        if not await _claim_event(conn, event_id, event_type, facts):
            return _webhook_answer(Result.DUPLICATE_EVENT, event_id)
        payment = await _payment_for_update(conn, facts)
        if payment is None:
            result = Result.IGNORED
        else:
            # Statuses only move forward: none -> open -> won | lost. A late "created"
            # after the close changes nothing.
            current = payment.dispute_status
            if current is None or (current == DisputeStatus.OPEN and status != current):
                await conn.execute(
                    "UPDATE payments SET dispute_status = %s,"
                    " dispute_id = COALESCE(dispute_id, %s) WHERE id = %s",
                    (str(status), dispute_id, payment.id))
                payment = dataclasses.replace(payment, dispute_status=status)
            result = await _settle_if_succeeded(conn, payment)
        await _finish_event(conn, event_id, result)
    return _webhook_answer(result, event_id)


@retry_transient
async def acknowledge_event(pool: AsyncConnectionPool, *, event_id: str,
                            event_type: str) -> Answer:
    """An event type the service does not act on: remember it, answer 200."""
    async with transaction(pool) as conn:
        await conn.execute(
            "INSERT INTO webhook_events (event_id, event_type, result) VALUES (%s, %s, %s)"
            " ON CONFLICT (event_id) DO NOTHING", (event_id, event_type, str(Result.IGNORED)))
    return _webhook_answer(Result.IGNORED, event_id)


def _webhook_answer(result: Result, event_id: str) -> Answer:
    log.debug("webhook %s: %s", event_id, result)
    return Answer(result=result, body={"received": True, "event_id": event_id,
                                       "result": str(result)})


async def _claim_event(conn: AsyncConnection, event_id: str, event_type: str,
                       facts: PaymentFacts | None) -> bool:
    """Insert the event's row; False when it was processed before (a duplicate delivery).

    A concurrent delivery of the same event waits here until the first commits.
    """
    cursor = await conn.execute(
        "INSERT INTO webhook_events (event_id, event_type, intent_id, result)"
        " VALUES (%s, %s, %s, 'processing') ON CONFLICT (event_id) DO NOTHING RETURNING 1",
        (event_id, event_type, facts.intent_id if facts else None))
    return await cursor.fetchone() is not None


async def _finish_event(conn: AsyncConnection, event_id: str, result: Result) -> None:
    await conn.execute("UPDATE webhook_events SET result = %s WHERE event_id = %s",
                       (str(result), event_id))


async def _payment_for_update(conn: AsyncConnection,
                              facts: PaymentFacts | None) -> _Payment | None:
    """The event's payment, locked; created from the event's metadata if it is new.

    None when the event names no intent, or names one we never made and its metadata
    does not say whose it is (not one of our payments: acknowledged and ignored).
    """
    if facts is None:
        return None
    if facts.user_id is not None and facts.minted_tokens is not None:
        await conn.execute(
            "INSERT INTO payments (intent_id, account_id, amount_cents, minted_tokens)"
            " SELECT %s, id, %s, %s FROM accounts WHERE id = %s AND kind <> 'system'"
            " ON CONFLICT (intent_id) DO NOTHING",
            (facts.intent_id, facts.amount_cents, facts.minted_tokens, facts.user_id))
    cursor = await conn.execute(
        "UPDATE payments SET amount_cents = COALESCE(amount_cents, %s), updated_at = now()"
        " WHERE intent_id = %s RETURNING id, intent_id, account_id, amount_cents,"
        " minted_tokens, succeeded, refunded_cents, dispute_status, clawed_tokens",
        (facts.amount_cents, facts.intent_id))
    row = await cursor.fetchone()
    if row is None:
        log.warning("webhook about intent %s, which is not ours and names no user of ours; "
                    "ignored", facts.intent_id)
        return None
    return _Payment(id=int(row[0]), intent_id=str(row[1]), account_id=int(row[2]),
                    amount_cents=None if row[3] is None else int(row[3]),
                    minted_tokens=int(row[4]), succeeded=bool(row[5]),
                    refunded_cents=int(row[6]),
                    dispute_status=None if row[7] is None else DisputeStatus(row[7]),
                    clawed_tokens=int(row[8]))


async def _lock_owner(conn: AsyncConnection, payment: _Payment) -> ledger.Account:
    accounts = await ledger.lock_accounts(conn, [payment.account_id])
    assert payment.account_id in accounts, f"payment {payment.id} has no user account"
    return accounts[payment.account_id]


async def _settle_if_succeeded(conn: AsyncConnection, payment: _Payment) -> Result:
    """Apply a refund or dispute now if the payment was credited; else it waits for that."""
    if not payment.succeeded:
        return Result.RECORDED
    moved = await _settle(conn, payment, await _lock_owner(conn, payment))
    return Result.APPLIED if moved else Result.ALREADY_APPLIED


async def _settle(conn: AsyncConnection, payment: _Payment, account: ledger.Account) -> bool:
    """Move the locked account by (target clawback − clawed so far); False if nothing to do."""
    assert payment.succeeded, payment
    target_tokens = clawback_target_tokens(
        minted_tokens=payment.minted_tokens, amount_cents=payment.amount_cents,
        refunded_cents=payment.refunded_cents, dispute_status=payment.dispute_status)
    change_tokens = target_tokens - payment.clawed_tokens
    if change_tokens == 0:
        return False
    if change_tokens > 0:
        await ledger.claw_back(conn, account, amount_tokens=change_tokens,
                               reference=payment.intent_id)
    else:
        await ledger.credit(conn, account, amount_tokens=-change_tokens,
                            kind=ledger.TransactionKind.REINSTATEMENT,
                            reference=payment.intent_id)
    await conn.execute("UPDATE payments SET clawed_tokens = %s WHERE id = %s",
                       (target_tokens, payment.id))
    return True
