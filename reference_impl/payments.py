"""Operations on money from the provider: purchases, and the webhooks that settle them.

The webhook, never the purchase call, is the single source of truth for crediting, and
it credits only what the service itself recorded. The purchase call commits its payments
row first, then creates and confirms the PaymentIntent with the row's id in its metadata
(``purchase_id``), then binds the intent id to the row. ``payment_intent.succeeded``
credits the *recorded* tokens once, after checking that the event agrees with the record
(amount, currency, user, tokens); a success that arrives before the purchase call has
bound the intent finds the row by its purchase id. An event for an intent the service
never recorded, or one that disagrees with the record, changes nothing: it is
acknowledged (200, so the provider stops retrying what no retry can fix) and kept in
``webhook_anomalies`` for the audit.

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
from psycopg.types.json import Jsonb
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

CURRENCY = "usd"
_PROVIDER_KEY_CHARS_MAX = 255  # Stripe's limit on Idempotency-Key
_DECLINED_STATUSES = frozenset({"requires_payment_method", "canceled"})


async def create_purchase(pool: AsyncConnectionPool, *, stripe_client: stripe.StripeClient,
                          user_id: int, tokens: int, payment_method: str,
                          idempotency_key: str | None) -> Answer:
    """Record a purchase, then create and confirm its PaymentIntent; credit nothing.

    The payments row is committed *before* the provider is asked, and its id travels in
    the intent's metadata (``purchase_id``), so a webhook that arrives before the provider
    has answered the service still finds the purchase and credits it. A retry with the
    same key reuses the row, and the key goes to the provider scoped to the user, so a
    retried purchase makes one intent; the answer is stored under the key, so a replay
    answers the same.

    Returns:
        ``created`` with ``{purchase_id, intent_id, status}``; ``card_declined``;
        ``unknown_payment_method``; ``invalid`` (not a package); ``idempotency_conflict``.

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
    reserved = await _reserve_purchase(pool, user_id=user_id, package=package,
                                       idempotency_key=idempotency_key,
                                       request_fingerprint=request_fingerprint)
    if isinstance(reserved, Answer):
        return reserved
    answer, intent_id = await _confirm_intent(
        stripe_client, user_id=user_id, package=package, payment_method=payment_method,
        idempotency_key=idempotency_key, purchase_id=reserved)
    if answer.result == Result.IDEMPOTENCY_CONFLICT:
        return answer  # the provider's verdict on its own key; nothing to store
    return await _record_purchase(
        pool, user_id=user_id, purchase_id=reserved, answer=answer, intent_id=intent_id,
        idempotency_key=idempotency_key, request_fingerprint=request_fingerprint)


@retry_transient
async def _stored_answer(pool: AsyncConnectionPool, *, user_id: int, key: str,
                         request_fingerprint: str) -> Answer | None:
    async with connection(pool) as conn:
        return await idempotency.lookup(conn, account_id=user_id, key=key,
                                        operation="create_purchase",
                                        request_fingerprint=request_fingerprint)


@retry_transient
async def _reserve_purchase(pool: AsyncConnectionPool, *, user_id: int, package: Package,
                            idempotency_key: str | None,
                            request_fingerprint: str) -> int | Answer:
    """The purchase's payments row, committed before the provider hears of it: its id.

    With a key, a retry (even a concurrent one) gets the same row; the same key with
    another request is an ``idempotency_conflict`` answer.
    """
    async with transaction(pool) as conn:
        cursor = await conn.execute(
            "INSERT INTO payments (account_id, amount_cents, minted_tokens, currency,"
            " purchase_status, purchase_key, purchase_fingerprint)"
            " VALUES (%s, %s, %s, %s, 'creating', %s, %s)"
            " ON CONFLICT (account_id, purchase_key) DO NOTHING RETURNING id",
            (user_id, package.amount_cents, package.minted_tokens, CURRENCY, idempotency_key,
             request_fingerprint))
        row = await cursor.fetchone()
        if row is not None:
            return int(row[0])
        cursor = await conn.execute(
            "SELECT id, purchase_fingerprint FROM payments"
            " WHERE account_id = %s AND purchase_key = %s", (user_id, idempotency_key))
        row = await cursor.fetchone()
    assert row is not None, "a purchase key that conflicted on insert must be readable"
    if row[1] != request_fingerprint:
        return Answer(result=Result.IDEMPOTENCY_CONFLICT, body={
            "message": f"Idempotency-Key {idempotency_key!r} was used for another purchase; "
                       "use a new key for a new request"})
    return int(row[0])


async def _confirm_intent(stripe_client: stripe.StripeClient, *, user_id: int,
                          package: Package, payment_method: str,
                          idempotency_key: str | None,
                          purchase_id: int | None = None) -> tuple[Answer, str | None]:
    """Ask the provider; an expected refusal is an Answer, no answer at all an ApiError."""
    metadata = {"user_id": str(user_id), "tokens": str(package.minted_tokens)}
    if purchase_id is not None:
        metadata["purchase_id"] = str(purchase_id)
    params: dict[str, Any] = {
        "amount": package.amount_cents, "currency": CURRENCY, "confirm": True,
        "payment_method": payment_method, "payment_method_types": ["card"],
        "metadata": metadata,
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
    except stripe.InvalidRequestError as exc:
        if exc.param != "payment_method":
            raise _provider_failed(exc) from exc
        # The client named a payment method the provider does not have: bad input.
        return Answer(result=Result.UNKNOWN_PAYMENT_METHOD, body={
            "message": f"payment_method {payment_method!r} is not a payment method the "
                       "provider knows; pass a valid PaymentMethod id (e.g. pm_card_visa "
                       "in test mode)"}), None
    except stripe.APIConnectionError as exc:
        log.warning("payment provider unreachable: %s", exc)
        raise ApiError(502, "provider_unavailable", "the payment provider could not be "
                       "reached; retry with the same Idempotency-Key") from exc
    except stripe.StripeError as exc:
        raise _provider_failed(exc) from exc
    status = str(intent.status)
    if status in _DECLINED_STATUSES:
        return _declined(f"the payment ended as {status}", intent.id), None
    return Answer(result=Result.CREATED, body={"intent_id": intent.id, "status": status}), \
        str(intent.id)


def _provider_failed(exc: stripe.StripeError) -> ApiError:
    log.warning("payment provider failed (%s): %s", exc.http_status, exc)
    return ApiError(502, "provider_error",
                    f"the payment provider failed ({exc.http_status}): "
                    f"{exc.user_message or type(exc).__name__}; retry with the same "
                    "Idempotency-Key")


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
async def _record_purchase(pool: AsyncConnectionPool, *, user_id: int, purchase_id: int,
                           answer: Answer, intent_id: str | None, idempotency_key: str | None,
                           request_fingerprint: str) -> Answer:
    """Bind the provider's intent to the reserved row and store the answer under the key."""
    async with transaction(pool) as conn:
        stored = await idempotency.claim(
            conn, account_id=user_id, key=idempotency_key, operation="create_purchase",
            request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored  # a concurrent request with this key got here first
        status = str(answer.body["status"]) if intent_id is not None else str(answer.result)
        # A webhook may have bound the intent already (it found the row by purchase id).
        cursor = await conn.execute(
            "UPDATE payments SET intent_id = COALESCE(intent_id, %s), purchase_status = %s,"
            " updated_at = now() WHERE id = %s RETURNING intent_id",
            (intent_id, status, purchase_id))
        row = await cursor.fetchone()
        assert row is not None, f"the reserved purchase {purchase_id} vanished"
        if intent_id is not None and row[0] != intent_id:
            log.error("purchase %s is bound to intent %s but the provider answered %s",
                      purchase_id, row[0], intent_id)
        if answer.result == Result.CREATED:
            answer = dataclasses.replace(answer, body={"purchase_id": purchase_id, **answer.body})
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
            result = _unmatched(facts)
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
            result = _unmatched(facts)
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
            result = _unmatched(facts)
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


_PAYMENT_COLUMNS = ("id, intent_id, account_id, amount_cents, minted_tokens, succeeded,"
                    " refunded_cents, dispute_status, clawed_tokens, currency")


async def _payment_for_update(conn: AsyncConnection,
                              facts: PaymentFacts | None) -> _Payment | None:
    """The event's payment, locked, if the service recorded it and the event agrees.

    The payment is found by the event's intent id, else by the ``purchase_id`` of its
    metadata (a webhook that beat the purchase call's answer; it binds the intent to the
    row). None when the event names no intent; and None, with a ``webhook_anomalies`` row,
    when the service never recorded the intent or the event disagrees with the record
    (amount, currency, user, tokens): the event's own claims never mint anything.
    """
    if facts is None:
        return None
    row = await _locked_payment_row(conn, facts)
    if row is None:
        await _record_anomaly(conn, facts, kind="unknown_intent", payment_id=None,
                              expected={}, observed=_observed(facts))
        log.warning("webhook %s about intent %s, which this service never recorded; nothing "
                    "applied", facts.event_id, facts.intent_id)
        return None
    payment = _payment_from_row(row)
    expected, observed = _disagreements(payment, facts, currency=str(row[9]))
    if expected:
        await _record_anomaly(conn, facts, kind="mismatch", payment_id=payment.id,
                              expected=expected, observed=observed)
        log.warning("webhook %s about intent %s disagrees with purchase %s: expected %s, "
                    "observed %s; nothing applied", facts.event_id, facts.intent_id,
                    payment.id, expected, observed)
        return None
    if payment.intent_id != facts.intent_id or payment.amount_cents is None:
        cursor = await conn.execute(
            "UPDATE payments SET intent_id = %s, amount_cents = COALESCE(amount_cents, %s),"
            " updated_at = now() WHERE id = %s RETURNING " + _PAYMENT_COLUMNS,
            (facts.intent_id, facts.amount_cents, payment.id))
        updated = await cursor.fetchone()
        assert updated is not None
        payment = _payment_from_row(updated)
    return payment


async def _locked_payment_row(conn: AsyncConnection, facts: PaymentFacts) -> Any:
    """The payments row of the event, locked: by intent id, else by an unbound purchase id.

    Both look-ups lock by primary key and the binding is checked after the lock, so a
    purchase call or another event binding the row concurrently is seen, never lost.
    """
    cursor = await conn.execute(
        "SELECT " + _PAYMENT_COLUMNS + " FROM payments WHERE intent_id = %s FOR UPDATE",
        (facts.intent_id,))
    row = await cursor.fetchone()
    if row is not None or facts.purchase_id is None:
        return row
    cursor = await conn.execute(
        "SELECT " + _PAYMENT_COLUMNS + " FROM payments WHERE id = %s FOR UPDATE",
        (facts.purchase_id,))
    row = await cursor.fetchone()
    if row is not None and row[1] is not None and row[1] != facts.intent_id:
        return None  # that purchase belongs to another intent: this one is not ours
    return row


def _payment_from_row(row: Any) -> _Payment:
    return _Payment(id=int(row[0]), intent_id=str(row[1]) if row[1] is not None else "",
                    account_id=int(row[2]),
                    amount_cents=None if row[3] is None else int(row[3]),
                    minted_tokens=int(row[4]), succeeded=bool(row[5]),
                    refunded_cents=int(row[6]),
                    dispute_status=None if row[7] is None else DisputeStatus(row[7]),
                    clawed_tokens=int(row[8]))


def _observed(facts: PaymentFacts) -> dict[str, Any]:
    return {"purchase_id": facts.purchase_id, "user_id": facts.user_id,
            "tokens": facts.minted_tokens, "amount_cents": facts.amount_cents,
            "currency": facts.currency}


def _disagreements(payment: _Payment, facts: PaymentFacts, *,
                   currency: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the record says and the event says, for every field where they differ.

    A success must state everything (it is what credits); a refund or dispute must agree
    with what it states.
    """
    recorded: dict[str, Any] = {"purchase_id": payment.id, "user_id": payment.account_id,
                                "tokens": payment.minted_tokens,
                                "amount_cents": payment.amount_cents, "currency": currency}
    stated = _observed(facts)
    required = {"user_id", "tokens", "amount_cents", "currency"} \
        if facts.event_type == "payment_intent.succeeded" else set()
    if payment.amount_cents is None:  # a row from before purchases recorded amounts
        recorded.pop("amount_cents")
    expected, observed = {}, {}
    for name, value in recorded.items():
        if stated[name] is None and name not in required:
            continue
        if stated[name] != value:
            expected[name], observed[name] = value, stated[name]
    return expected, observed


async def _record_anomaly(conn: AsyncConnection, facts: PaymentFacts, *, kind: str,
                          payment_id: int | None, expected: dict[str, Any],
                          observed: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO webhook_anomalies (event_id, event_type, intent_id, payment_id, kind,"
        " expected, observed) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (event_id) DO NOTHING",
        (facts.event_id, facts.event_type, facts.intent_id, payment_id, kind,
         Jsonb(expected), Jsonb(observed)))


def _unmatched(facts: PaymentFacts | None) -> Result:
    """The result of an event whose payment was not found: ignored, or an anomaly."""
    return Result.IGNORED if facts is None else Result.ANOMALY


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
