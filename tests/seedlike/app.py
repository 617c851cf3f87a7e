"""The seed-shaped service's Starlette app: the seed's five routes over its three tables.

``POST /api/tokens/purchase`` creates and confirms a PaymentIntent with the seed's
metadata (``userId``, ``tokenAmount``, ``bonusTokens``, ``clientIdempotencyKey``) and
credits nothing; ``POST /api/payments/webhook`` credits ``tokenAmount + bonusTokens`` once
per intent on ``payment_intent.succeeded`` and claws a refund back (into
``users.debt_amount`` when the balance is short) on ``charge.refunded``. Tips and call
deductions move tokens between two balances locked in user id order, with no key. Every
operation runs in Starlette's thread pool over psycopg's blocking API.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import stripe
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["BODY_BYTES_MAX", "PACKAGES", "create_app"]

log = logging.getLogger(__name__)

BODY_BYTES_MAX = 16 * 1024
CENTS_PER_TOKEN = 5
# tokens -> bonus tokens: the seed's price table, 5% bonus from 5000 tokens up.
PACKAGES: dict[int, int] = {100: 0, 500: 0, 1000: 0, 5000: 250, 10000: 500}
_TOKENS_MAX = 10**9  # the largest tip or deduction a client may name
_SCHEMA_LOCK_ID = 80_421_338  # an advisory lock: instances starting at once migrate in turn
_SCHEMA = Path(__file__).with_name("schema.sql")

Pool = ConnectionPool[Any]
Conn = psycopg.Connection[Any]


class Refused(Exception):
    """An answer other than success, raised where the request is found wanting."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(*, database_url: str, provider_url: str, webhook_secret: str,
               stripe_api_key: str = "sk_test_seedlike",
               webhook_tolerance_s: int = 300) -> Starlette:
    """The seed-shaped token service, with the SDK pointed at ``provider_url``."""
    stripe.api_key = stripe_api_key
    stripe.api_base = provider_url.rstrip("/")
    stripe.max_network_retries = 2

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool: Pool = ConnectionPool(database_url, min_size=2, max_size=16, timeout=30.0,
                                    open=False)
        await run_in_threadpool(_open, pool)
        app.state.pool = pool
        try:
            yield
        finally:
            await run_in_threadpool(pool.close)

    routes = [
        Route("/api/tokens/purchase", _route(_purchase), methods=["POST"]),
        Route("/api/tokens/tip", _route(_tip), methods=["POST"]),
        Route("/api/tokens/calls/deduct", _route(_deduct), methods=["POST"]),
        Route("/api/tokens/balance", _route(_balance), methods=["GET"]),
        Route("/api/payments/webhook", _route(_webhook), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.webhook_secret = webhook_secret
    app.state.tolerance_s = webhook_tolerance_s
    return app


def _open(pool: Pool) -> None:
    pool.open(wait=True, timeout=30.0)
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
        conn.execute(_SCHEMA.read_text(encoding="utf-8").encode())


# ---------------------------------------------------------------------------------------
# Routing and parsing.

Endpoint = Callable[[Request], Awaitable[dict[str, Any]]]


def _route(endpoint: Endpoint) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def handle(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await endpoint(request))
        except Refused as refused:
            return JSONResponse({"success": False, "error": refused.message},
                                status_code=refused.status)
        except psycopg.Error as exc:
            log.exception("database error")
            return JSONResponse({"success": False, "error": f"{type(exc).__name__}: {exc}"},
                                status_code=500)
    handle.__name__ = endpoint.__name__
    return handle


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_BYTES_MAX:
            raise Refused(413, f"bodies are at most {BODY_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await _body(request) or b"{}")
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


def _whole(body: dict[str, Any], name: str, *, low: int, high: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(400, f"{name} must be a whole number from {low} to {high}")
    return value


def _text(body: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise Refused(400, f"{name} is missing or not a text of 1 to 200 characters")
    return value


async def _user(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        raise Refused(401, "send Authorization: Bearer <token>")
    user: str | None = await run_in_threadpool(_token_user, request.app.state.pool, token)
    if user is None:
        raise Refused(401, "unknown token")
    return user


def _token_user(pool: Pool, token: str) -> str | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT user_id::text FROM auth_tokens WHERE token = %s",
                           (token,)).fetchone()
    return None if row is None else str(row[0])


# ---------------------------------------------------------------------------------------
# Endpoints.


async def _balance(request: Request) -> dict[str, Any]:
    user = await _user(request)
    return await run_in_threadpool(_read_balance, request.app.state.pool, user)


def _read_balance(pool: Pool, user: str) -> dict[str, Any]:
    with pool.connection() as conn:
        row = conn.execute("SELECT balance FROM token_balances WHERE user_id = %s",
                           (user,)).fetchone()
    if row is None:
        raise Refused(404, "no balance for this user")
    return {"balance": str(row[0])}  # BIGINT, read by node-postgres as a string


async def _purchase(request: Request) -> dict[str, Any]:
    user = await _user(request)
    body = await _json(request)
    tokens = _whole(body, "tokenAmount", low=1, high=_TOKENS_MAX)
    if tokens not in PACKAGES:
        raise Refused(400, f"tokenAmount must be one of {sorted(PACKAGES)}")
    payment_method = _text(body, "paymentMethodId")
    key = _text(body, "clientIdempotencyKey", optional=True)
    assert payment_method is not None
    return await run_in_threadpool(_buy, request.app.state.pool, user, tokens,
                                   payment_method, key)


def _buy(pool: Pool, user: str, tokens: int, payment_method: str,
         key: str | None) -> dict[str, Any]:
    """Create and confirm the intent; record it pending (the webhook credits it)."""
    bonus = PACKAGES[tokens]
    with pool.connection() as conn:
        if key is not None:
            # Two requests with one key run one after the other; the second replays.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         (f"{user}:{key}",))
            row = conn.execute(
                "SELECT stripe_payment_intent_id FROM token_transactions"
                " WHERE user_id = %s AND client_idempotency_key = %s", (user, key)).fetchone()
            if row is not None:
                return {"success": True, "message": "Purchase already processed",
                        "paymentIntentId": row[0]}
        intent = _confirm(user, tokens, bonus, payment_method, key)
        conn.execute(
            "INSERT INTO token_transactions (user_id, type, tokens, stripe_payment_intent_id,"
            " client_idempotency_key, amount_cents, status)"
            " VALUES (%s, 'purchase', %s, %s, %s, %s, 'pending')"
            " ON CONFLICT (stripe_payment_intent_id) DO UPDATE"
            " SET client_idempotency_key = EXCLUDED.client_idempotency_key",
            (user, tokens + bonus, intent.id, key, tokens * CENTS_PER_TOKEN))
    return {"success": True, "paymentIntent": {"id": intent.id, "status": intent.status,
                                               "client_secret": intent.client_secret}}


def _confirm(user: str, tokens: int, bonus: int, payment_method: str,
             key: str | None) -> Any:
    options: dict[str, Any] = {}
    if key is not None:
        options["idempotency_key"] = "seedlike-" + hashlib.sha256(
            f"{user}:{key}".encode()).hexdigest()
    metadata = {"userId": user, "tokenAmount": str(tokens), "bonusTokens": str(bonus),
                "clientIdempotencyKey": key or ""}
    try:
        intent = stripe.PaymentIntent.create(
            amount=tokens * CENTS_PER_TOKEN, currency="usd", confirm=True,
            payment_method=payment_method, metadata=metadata,
            **options)
    except stripe.CardError as exc:
        raise Refused(402, exc.user_message or "the card was declined") from None
    except stripe.InvalidRequestError as exc:
        if exc.param == "payment_method":
            raise Refused(400, f"unknown payment method {payment_method!r}") from None
        raise Refused(502, f"the provider refused: {exc}") from None
    except stripe.StripeError as exc:
        raise Refused(502, f"the provider failed: {exc}") from None
    if intent.status in ("requires_payment_method", "canceled"):
        raise Refused(402, f"the payment ended as {intent.status}")
    return intent


async def _tip(request: Request) -> dict[str, Any]:
    return await _spend(request, sent="tip_sent", received="tip_received")


async def _deduct(request: Request) -> dict[str, Any]:
    return await _spend(request, sent="call_sent", received="call_received")


async def _spend(request: Request, *, sent: str, received: str) -> dict[str, Any]:
    user = await _user(request)
    body = await _json(request)
    creator = _text(body, "creatorId")
    tokens = _whole(body, "tokenAmount", low=1, high=_TOKENS_MAX)
    assert creator is not None
    if creator == user:
        raise Refused(400, "you cannot pay yourself")
    return await run_in_threadpool(_move, request.app.state.pool, user, creator, tokens,
                                   (sent, received))


def _move(pool: Pool, sender: str, creator: str, tokens: int,
          types: tuple[str, str]) -> dict[str, Any]:
    """Move tokens from the sender to a creator, both balances locked in id order."""
    with pool.connection() as conn:
        known = conn.execute("SELECT 1 FROM users WHERE supabase_id::text = %s AND is_creator",
                             (creator,)).fetchone()
        if known is None:
            raise Refused(404, f"no creator {creator}")
        rows = conn.execute(
            "SELECT user_id::text, balance FROM token_balances WHERE user_id = ANY(%s::uuid[])"
            " ORDER BY user_id FOR UPDATE", (sorted({sender, creator}),)).fetchall()
        balances = {str(r[0]): int(r[1]) for r in rows}
        if balances.get(sender, 0) < tokens:
            raise Refused(402, "Insufficient tokens")
        for user, other, delta, kind in ((sender, creator, -tokens, types[0]),
                                         (creator, sender, tokens, types[1])):
            conn.execute("UPDATE token_balances SET balance = balance + %s, updated_at = now()"
                         " WHERE user_id = %s", (delta, user))
            conn.execute("INSERT INTO token_transactions (user_id, type, tokens,"
                         " related_user_id, status) VALUES (%s, %s, %s, %s, 'completed')",
                         (user, kind, delta, other))
    return {"success": True, "tokensDeducted": tokens,
            "senderBalance": str(balances[sender] - tokens),
            "recipientBalance": str(balances.get(creator, 0) + tokens)}


async def _webhook(request: Request) -> dict[str, Any]:
    payload = await _body(request)
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("stripe-signature", ""),
                                       request.app.state.webhook_secret,
                                       tolerance=request.app.state.tolerance_s)
    except (stripe.SignatureVerificationError, ValueError):
        raise Refused(400, "the Stripe-Signature does not verify") from None
    event = json.loads(payload)
    kind = event.get("type") if isinstance(event, dict) else None
    obj = (event.get("data") or {}).get("object") if isinstance(event, dict) else None
    if not isinstance(obj, dict):
        raise Refused(400, "the event has no data.object")
    pool: Pool = request.app.state.pool
    if kind == "payment_intent.succeeded":
        applied = await run_in_threadpool(_credit, pool, obj)
    elif kind == "charge.refunded":
        applied = await run_in_threadpool(_clawback, pool, obj)
    else:
        applied = False
    return {"received": True, "applied": applied}


def _credit(pool: Pool, intent: dict[str, Any]) -> bool:
    """Credit the intent's tokenAmount + bonusTokens, once per intent."""
    metadata = intent.get("metadata") or {}
    intent_id, user = intent.get("id"), metadata.get("userId")
    try:
        minted = int(metadata["tokenAmount"]) + int(metadata.get("bonusTokens") or 0)
    except (KeyError, TypeError, ValueError):
        raise Refused(400, "the intent's metadata has no tokenAmount") from None
    if not isinstance(intent_id, str) or not isinstance(user, str) or minted <= 0:
        raise Refused(400, "the intent names no user")
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO token_transactions (user_id, type, tokens, stripe_payment_intent_id,"
            " amount_cents, status) VALUES (%s, 'purchase', %s, %s, %s, 'pending')"
            " ON CONFLICT (stripe_payment_intent_id) DO NOTHING",
            (user, minted, intent_id, intent.get("amount")))
        row = conn.execute(
            "UPDATE token_transactions SET status = 'completed' WHERE"
            " stripe_payment_intent_id = %s AND status = 'pending' RETURNING user_id, tokens",
            (intent_id,)).fetchone()
        if row is None:
            return False  # credited before: a redelivery
        conn.execute("UPDATE token_balances SET balance = balance + %(t)s, total_purchased ="
                     " total_purchased + %(t)s, updated_at = now() WHERE user_id = %(u)s",
                     {"t": row[1], "u": row[0]})
        _settle(conn, intent_id)
    return True


def _clawback(pool: Pool, charge: dict[str, Any]) -> bool:
    """Keep the largest cumulative refund seen; once credited, take back what it implies."""
    intent_id, refunded = charge.get("payment_intent"), charge.get("amount_refunded")
    if not isinstance(intent_id, str) or isinstance(refunded, bool) \
            or not isinstance(refunded, int) or refunded < 0:
        raise Refused(400, "a refund without payment_intent or amount_refunded")
    with pool.connection() as conn:
        row = conn.execute("UPDATE token_transactions SET refunded_cents ="
                           " GREATEST(refunded_cents, %s) WHERE stripe_payment_intent_id = %s"
                           " RETURNING 1", (refunded, intent_id)).fetchone()
        if row is None:
            return False  # not an intent of ours
        _settle(conn, intent_id)
    return True


def _settle(conn: Conn, intent_id: str) -> None:
    """Take back (what the refunds imply) − (what was taken), balance first, then debt."""
    row = conn.execute(
        "SELECT user_id, tokens, amount_cents, refunded_cents, clawed_back_tokens, status"
        " FROM token_transactions WHERE stripe_payment_intent_id = %s FOR UPDATE",
        (intent_id,)).fetchone()
    assert row is not None, intent_id
    user, minted, amount, refunded, taken, status = row
    if status != "completed" or not amount:
        return
    change = int(minted) * min(int(refunded), int(amount)) // int(amount) - int(taken)
    if change <= 0:
        return
    balance = conn.execute("SELECT balance FROM token_balances WHERE user_id = %s FOR UPDATE",
                           (user,)).fetchone()
    assert balance is not None, user
    from_balance = min(change, int(balance[0]))
    if from_balance:
        conn.execute("UPDATE token_balances SET balance = balance - %s, updated_at = now()"
                     " WHERE user_id = %s", (from_balance, user))
        conn.execute("INSERT INTO token_transactions (user_id, type, tokens,"
                     " related_intent_id, status) VALUES (%s, 'refund', %s, %s, 'completed')",
                     (user, -from_balance, intent_id))
    if change > from_balance:
        conn.execute("UPDATE users SET debt_amount = debt_amount + %s, account_status = 'debt'"
                     " WHERE supabase_id = %s", (change - from_balance, user))
    conn.execute("UPDATE token_transactions SET clawed_back_tokens = %s"
                 " WHERE stripe_payment_intent_id = %s", (int(taken) + change, intent_id))
