"""The foreign service's operations: plain functions over a psycopg connection pool.

Each operation runs in a worker thread (the routes call it through Starlette's thread
pool), owns its transactions, and answers a ``Reply`` (status, JSON body, headers). The
routes look every operation up in the registry the app was made with, so a flaw replaces
exactly one entry of ``OPERATIONS`` and the correct code below never branches on flaws.

Rules: purchases are recorded before the provider hears of them and credited only by the
success webhook, once per intent (``intent_credits`` with ``ON CONFLICT DO NOTHING``);
refunds and disputes are state on the purchase, and each event moves the wallet by the
difference to ``wallets.taken_target_tokens``; spends lock their wallets in owner id
order; a tip pays ``wallets.gift_fee`` of its tokens to the platform's wallet and the rest
to its recipient (call minutes carry no fee); a call minute is billed once per (session,
minute); purchases and minutes take a ``clientKey`` in the body, scoped to the owner; tips
take none.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import stripe
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tests.foreign.parsing import read_tip
from tests.foreign.replies import Reply, error
from tests.foreign.wallets import (
    BUNDLES,
    PLATFORM_OWNER_ID,
    Wallet,
    book,
    book_clawback,
    book_credit,
    gift_fee,
    lock_wallets,
    taken_target_tokens,
)

__all__ = ["OPERATIONS", "Facts", "Reply", "Stored", "apply_facts", "book_tip", "error",
           "move_tip", "settle"]

Operation = Callable[..., Any]
CURRENCY = "usd"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """An answer stored under a client key, and the digest of the body it answered."""

    body_sha256: str
    status: int
    answer: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What one verified event says about a payment intent."""

    event_type: str
    intent_id: str
    order_no: int | None  # from metadata orderRef
    owner_id: str | None  # from metadata ownerId
    amount_cents: int | None
    refunded_cents: int = 0
    dispute_state: str | None = None  # "open", "won", "lost"


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _api_key_sha256(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Accounts.


def open_wallet(pool: ConnectionPool[Any], *, is_creator: bool) -> Reply:
    """A new wallet with a fresh API key (returned once, stored as its sha256)."""
    owner_id = "acct_" + secrets.token_hex(8)
    api_key = "fk_" + secrets.token_urlsafe(24)
    with pool.connection() as conn:
        conn.execute("INSERT INTO wallets (owner_id, is_creator, api_key_sha256)"
                     " VALUES (%s, %s, %s)", (owner_id, is_creator, _api_key_sha256(api_key)))
    return Reply(status=201, body={"account": {"id": owner_id, "apiKey": api_key,
                                               "isCreator": is_creator}})


def owner_for_key(pool: ConnectionPool[Any], *, api_key: str) -> str | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT owner_id FROM wallets WHERE api_key_sha256 = %s",
                           (_api_key_sha256(api_key),)).fetchone()
    return None if row is None else str(row[0])


def show_wallet(pool: ConnectionPool[Any], *, owner_id: str) -> Reply:
    with pool.connection() as conn:
        row = conn.execute("SELECT balance, owed FROM wallets WHERE owner_id = %s",
                           (owner_id,)).fetchone()
    assert row is not None, owner_id
    return Reply(status=200, body={"id": owner_id, "balance": str(row[0]), "owed": str(row[1]),
                                   "standing": "owing" if int(row[1]) else "good"})


# ---------------------------------------------------------------------------------------
# Client keys.


def find_answer(conn: psycopg.Connection[Any], *, owner_id: str, operation: str,
                client_key: str, body_sha256: str) -> Stored | Reply | None:
    """The answer stored under this owner's key, a 409 if the key answered another body."""
    row = conn.execute(
        "SELECT body_sha256, status, answer FROM client_keys"
        " WHERE owner_id = %s AND operation = %s AND client_key = %s",
        (owner_id, operation, client_key)).fetchone()
    if row is None:
        return None
    if row[0] != body_sha256:
        return _key_reused(client_key)
    return Stored(body_sha256=str(row[0]), status=int(row[1]), answer=row[2])


def _keep_answer(conn: psycopg.Connection[Any], *, owner_id: str, operation: str,
                 client_key: str, body_sha256: str, reply: Reply) -> None:
    conn.execute(
        "INSERT INTO client_keys (owner_id, operation, client_key, body_sha256, status, answer)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (owner_id, operation, client_key, body_sha256, reply.status, Jsonb(dict(reply.body))))


def _key_reused(client_key: str) -> Reply:
    return error(409, "client_key_reused", f"clientKey {client_key!r} was used for another "
                 "request; use a new key for a new request")


# ---------------------------------------------------------------------------------------
# Purchases.


def buy(pool: ConnectionPool[Any], *, ops: Mapping[str, Operation], owner_id: str, tokens: int,
        payment_method: str, client_key: str | None) -> Reply:
    """Record the purchase, then create and confirm its intent; credit nothing here.

    The order row is committed first, so a webhook that beats the provider's answer finds
    it by ``orderRef``. The provider is then asked while the order row is locked, so two
    requests with one key ask it one after the other and the second replays the first.
    """
    body_sha256 = _digest({"tokens": tokens, "paymentMethod": payment_method})
    with pool.connection() as conn:
        if client_key is not None:
            stored = ops["find_answer"](conn, owner_id=owner_id, operation="buy",
                                        client_key=client_key, body_sha256=body_sha256)
            if stored is not None:
                return _replay(stored)
        order = _place_order(conn, owner_id=owner_id, tokens=tokens, client_key=client_key,
                             body_sha256=body_sha256)
    if isinstance(order, Reply):
        return order
    with pool.connection() as conn:
        conn.execute("SELECT 1 FROM stripe_intents WHERE order_no = %s FOR UPDATE", (order,))
        if client_key is not None:
            stored = find_answer(conn, owner_id=owner_id, operation="buy",
                                 client_key=client_key, body_sha256=body_sha256)
            if stored is not None:
                return _replay(stored)  # a concurrent twin asked the provider first
        reply, intent_id = _confirm(owner_id=owner_id, order_no=order, tokens=tokens,
                                    payment_method=payment_method, client_key=client_key)
        if intent_id is not None:
            conn.execute("UPDATE stripe_intents SET intent_id = COALESCE(intent_id, %s)"
                         " WHERE order_no = %s", (intent_id, order))
        if client_key is not None and reply.status < 500:
            _keep_answer(conn, owner_id=owner_id, operation="buy", client_key=client_key,
                         body_sha256=body_sha256, reply=reply)
    return reply


def _replay(stored: Stored | Reply) -> Reply:
    if isinstance(stored, Reply):
        return stored
    return Reply(status=stored.status, body=stored.answer,
                 headers={"Idempotent-Replayed": "true"})


def _place_order(conn: psycopg.Connection[Any], *, owner_id: str, tokens: int,
                 client_key: str | None, body_sha256: str) -> int | Reply:
    bundle = BUNDLES[tokens]
    row = conn.execute(
        "INSERT INTO stripe_intents (owner_id, price_cents, base_tokens, bonus_tokens,"
        " client_key, request_sha256) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (owner_id, client_key) DO NOTHING RETURNING order_no",
        (owner_id, bundle.price_cents, bundle.tokens, bundle.bonus_tokens, client_key,
         body_sha256)).fetchone()
    if row is not None:
        return int(row[0])
    row = conn.execute("SELECT order_no, request_sha256 FROM stripe_intents"
                       " WHERE owner_id = %s AND client_key = %s",
                       (owner_id, client_key)).fetchone()
    assert row is not None
    if row[1] != body_sha256:
        return _key_reused(str(client_key))
    return int(row[0])  # a retry of an order whose answer was never stored


def _confirm(*, owner_id: str, order_no: int, tokens: int, payment_method: str,
             client_key: str | None) -> tuple[Reply, str | None]:
    bundle = BUNDLES[tokens]
    options: dict[str, Any] = {}
    if client_key is not None:
        options["idempotency_key"] = "foreign-" + hashlib.sha256(
            f"{owner_id}:{client_key}".encode()).hexdigest()
    params: dict[str, Any] = {
        "amount": bundle.price_cents, "currency": CURRENCY, "confirm": True,
        "payment_method": payment_method, "payment_method_types": ["card"],
        "metadata": {"ownerId": owner_id, "baseTokens": str(bundle.tokens),
                     "bonusTokens": str(bundle.bonus_tokens), "orderRef": str(order_no)},
        **options,
    }
    try:
        intent = stripe.PaymentIntent.create(**params)
    except stripe.CardError as exc:
        return error(402, "card_declined", exc.user_message or "the card was declined"), None
    except stripe.InvalidRequestError as exc:
        if exc.param == "payment_method":
            return error(400, "bad_payment_method", f"{payment_method!r} is not a payment "
                         "method the provider knows"), None
        return error(502, "provider_failed", str(exc)), None
    except stripe.StripeError as exc:
        return error(502, "provider_failed", f"the provider failed: {exc}"), None
    state = str(intent.status)
    if state in ("requires_payment_method", "canceled"):
        return error(402, "card_declined", f"the payment ended as {state}"), None
    return Reply(status=200, body={"payment": {"intentId": intent.id, "state": state,
                                               "bundle": bundle.name}}), str(intent.id)


# ---------------------------------------------------------------------------------------
# Tips.


def send_tip(pool: ConnectionPool[Any], *, from_owner: str, to_owner: str,
             tokens: int) -> Reply:
    """Move ``tokens`` from the sender, less the platform's fee to the recipient. No client key.

    The sender's, the recipient's and the platform's wallets are locked together, in owner
    id order, so tips never wait on each other in a cycle.
    """
    with pool.connection() as conn:
        wallets = lock_wallets(conn, [from_owner, to_owner, PLATFORM_OWNER_ID])
        sender, recipient = wallets.get(from_owner), wallets.get(to_owner)
        assert sender is not None, from_owner
        if recipient is None:
            return error(404, "no_such_account", f"no account {to_owner}")
        if sender.balance < tokens:
            return error(409, "insufficient_funds",
                         f"balance {sender.balance} does not cover {tokens}")
        return move_tip(conn, sender, recipient, wallets[PLATFORM_OWNER_ID], tokens)


def move_tip(conn: psycopg.Connection[Any], sender: Wallet, recipient: Wallet,
             platform: Wallet, tokens: int) -> Reply:
    """Book a tip between locked wallets: the sender pays it, the fee goes to the platform."""
    fee_tokens = gift_fee(tokens)
    return book_tip(conn, sender=sender, recipient=recipient, platform=platform,
                    tokens=tokens, recipient_tokens=tokens - fee_tokens, fee_tokens=fee_tokens)


def book_tip(conn: psycopg.Connection[Any], *, sender: Wallet, recipient: Wallet,
             platform: Wallet, tokens: int, recipient_tokens: int, fee_tokens: int) -> Reply:
    """Record a tip and journal its three sides; answer with the sender's balance.

    What the recipient owes is repaid first from its share. A share or a fee of nothing is
    not booked (a tip of 1 token is all fee).
    """
    row = conn.execute("INSERT INTO tips (from_owner, to_owner, tokens) VALUES (%s, %s, %s)"
                       " RETURNING tip_no", (sender.owner_id, recipient.owner_id, tokens)
                       ).fetchone()
    assert row is not None
    ref = f"tip:{row[0]}"
    after = book(conn, sender, reason="tip_out", balance_delta=-tokens, owed_delta=0, ref=ref)
    if recipient_tokens != 0:
        repaid = min(recipient_tokens, recipient.owed)
        book(conn, recipient, reason="tip_in", balance_delta=recipient_tokens - repaid,
             owed_delta=-repaid, ref=ref)
    if fee_tokens != 0:
        book(conn, platform, reason="tip_fee", balance_delta=fee_tokens, owed_delta=0, ref=ref)
    return Reply(status=200, body={"tip": {"id": int(row[0])}, "balance": str(after.balance)})


# ---------------------------------------------------------------------------------------
# Video sessions, billed per minute.


def start_session(pool: ConnectionPool[Any], *, fan: str, creator: str,
                  per_minute: int) -> Reply:
    session_id = "ses_" + secrets.token_hex(8)
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO video_sessions (session_id, fan_owner, creator_owner, per_minute)"
            " SELECT %s, %s, owner_id, %s FROM wallets WHERE owner_id = %s RETURNING 1",
            (session_id, fan, per_minute, creator)).fetchone()
    if row is None:
        return error(404, "no_such_account", f"no account {creator}")
    return Reply(status=200, body={"session": {"id": session_id, "perMinute": str(per_minute)}})


def bill_minute(pool: ConnectionPool[Any], *, ops: Mapping[str, Operation], fan: str,
                session_id: str, minute: int, client_key: str | None) -> Reply:
    """Bill one minute once; a minute billed before answers ``billed: false``."""
    body_sha256 = _digest({"session": session_id, "minute": minute})
    with pool.connection() as conn:
        if client_key is not None:
            stored = ops["find_answer"](conn, owner_id=fan, operation="bill_minute",
                                        client_key=client_key, body_sha256=body_sha256)
            if isinstance(stored, Reply):
                return stored
            if stored is not None:  # the minute this key billed: nothing billed now
                return Reply(status=200, body={**stored.answer, "billed": False})
        reply: Reply = ops["bill_locked_session"](conn, fan=fan, session_id=session_id,
                                                  minute=minute)
        if client_key is not None and reply.status < 500:
            _keep_answer(conn, owner_id=fan, operation="bill_minute", client_key=client_key,
                         body_sha256=body_sha256, reply=reply)
        return reply


def bill_locked_session(conn: psycopg.Connection[Any], *, fan: str, session_id: str,
                        minute: int) -> Reply:
    """Lock the session, then its two wallets in owner id order, and bill the minute."""
    session = conn.execute(
        "SELECT fan_owner, creator_owner, per_minute, closed FROM video_sessions"
        " WHERE session_id = %s FOR UPDATE", (session_id,)).fetchone()
    if session is None:
        return error(404, "no_such_session", f"no session {session_id}")
    fan_owner, creator_owner, per_minute, closed = str(session[0]), str(session[1]), \
        int(session[2]), session[3]
    if fan_owner != fan:
        return error(403, "not_your_session", f"only the fan of {session_id} may bill it")
    billed = conn.execute("SELECT charge_id FROM session_minutes WHERE session_id = %s"
                          " AND minute_no = %s", (session_id, minute)).fetchone()
    wallets = lock_wallets(conn, [fan_owner, creator_owner])
    payer = wallets[fan_owner]
    if billed is not None:
        return Reply(status=200, body={"billed": False, "chargeId": str(billed[0]),
                                       "balance": str(payer.balance)})
    if closed is not None:
        return error(410, "session_closed", f"session {session_id} is closed ({closed})")
    if payer.balance < per_minute:
        conn.execute("UPDATE video_sessions SET closed = 'out_of_funds' WHERE session_id = %s",
                     (session_id,))
        return error(422, "insufficient_funds", f"balance {payer.balance} does not cover "
                     f"{per_minute}; the session is closed")
    return _charge(conn, payer, wallets[creator_owner], session_id=session_id, minute=minute,
                   tokens=per_minute)


def _charge(conn: psycopg.Connection[Any], payer: Wallet, payee: Wallet, *, session_id: str,
            minute: int, tokens: int) -> Reply:
    charge_id = f"min_{session_id[4:]}_{minute}"
    conn.execute("INSERT INTO session_minutes (session_id, minute_no, tokens, charge_id)"
                 " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                 (session_id, minute, tokens, charge_id))
    ref = f"minute:{session_id}:{minute}"
    after = book(conn, payer, reason="minute_out", balance_delta=-tokens, owed_delta=0, ref=ref)
    book_credit(conn, payee, tokens=tokens, reason="minute_in", ref=ref)
    return Reply(status=200, body={"billed": True, "chargeId": charge_id,
                                   "balance": str(after.balance)})


def close_session(pool: ConnectionPool[Any], *, fan: str, session_id: str) -> Reply:
    with pool.connection() as conn:
        row = conn.execute("SELECT fan_owner FROM video_sessions WHERE session_id = %s"
                           " FOR UPDATE", (session_id,)).fetchone()
        if row is None:
            return error(404, "no_such_session", f"no session {session_id}")
        if str(row[0]) != fan:
            return error(403, "not_your_session", f"only the fan of {session_id} may close it")
        conn.execute("UPDATE video_sessions SET closed = COALESCE(closed, 'by_fan')"
                     " WHERE session_id = %s", (session_id,))
    return Reply(status=200, body={"closed": True})


# ---------------------------------------------------------------------------------------
# Webhooks: verified events, applied to the purchase they are about.


def verify_event(payload: bytes, signature: str | None, *, secret: str,
                 tolerance_s: int) -> dict[str, Any] | None:
    """The event if its signature and timestamp verify (the Stripe SDK checks), else None."""
    try:
        stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=tolerance_s)
    except (stripe.SignatureVerificationError, ValueError):
        return None
    event = json.loads(payload)
    return event if isinstance(event, dict) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Order:
    order_no: int
    intent_id: str
    owner_id: str
    price_cents: int
    minted_tokens: int
    refunded_cents: int
    dispute_state: str | None
    taken_tokens: int
    credited: bool


def count_pending(pool: ConnectionPool[Any]) -> int:
    """Events in the inbox not yet applied (``inbox``): what ``GET /admin/inbox`` reports."""
    with pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL"
                           ).fetchone()
    assert row is not None
    return int(row[0])


def apply_event(pool: ConnectionPool[Any], *, ops: Mapping[str, Operation],
                facts: Facts) -> Reply:
    """Apply one event to its order in one transaction; an order not ours changes nothing."""
    with pool.connection() as conn:
        applied = apply_facts(conn, ops=ops, facts=facts)
    return Reply(status=200, body={"received": True, "applied": applied})


def apply_facts(conn: psycopg.Connection[Any], *, ops: Mapping[str, Operation],
                facts: Facts) -> bool:
    """Apply one event within the caller's transaction; False: the order is not ours."""
    order = _lock_order(conn, facts)
    if order is None:
        return False
    if facts.event_type == "payment_intent.succeeded":
        ops["credit_intent"](conn, order=order)
    elif facts.event_type == "charge.refunded":
        ops["record_refund"](conn, order=order, refunded_cents=facts.refunded_cents)
    elif facts.dispute_state is not None:
        ops["record_dispute"](conn, order=order, state=facts.dispute_state)
    return True


def _lock_order(conn: psycopg.Connection[Any], facts: Facts) -> _Order | None:
    columns = ("o.order_no, o.intent_id, o.owner_id, o.price_cents,"
               " o.base_tokens + o.bonus_tokens, o.refunded_cents, o.dispute_state,"
               " o.taken_tokens, EXISTS (SELECT 1 FROM intent_credits c"
               " WHERE c.order_no = o.order_no)")
    row = conn.execute(f"SELECT {columns} FROM stripe_intents o WHERE o.intent_id = %s"
                       " FOR UPDATE OF o", (facts.intent_id,)).fetchone()
    if row is None and facts.order_no is not None:
        # The purchase may be binding this order right now: lock it first, then look at
        # its intent (a WHERE on intent_id would skip the row once the purchase commits).
        row = conn.execute(f"SELECT {columns} FROM stripe_intents o WHERE o.order_no = %s"
                           " FOR UPDATE OF o", (facts.order_no,)).fetchone()
        if row is not None and row[1] is not None and row[1] != facts.intent_id:
            return None  # that order belongs to another intent: this one is not ours
        if row is not None and row[1] is None:
            conn.execute("UPDATE stripe_intents SET intent_id = %s WHERE order_no = %s",
                         (facts.intent_id, facts.order_no))
    if row is None:
        return None
    if facts.owner_id is not None and facts.owner_id != row[2]:
        return None
    if facts.amount_cents is not None and facts.amount_cents != int(row[3]):
        return None
    return _Order(order_no=int(row[0]), intent_id=facts.intent_id, owner_id=str(row[2]),
                  price_cents=int(row[3]), minted_tokens=int(row[4]),
                  refunded_cents=int(row[5]), dispute_state=row[6],
                  taken_tokens=int(row[7]), credited=bool(row[8]))


def credit_intent(conn: psycopg.Connection[Any], *, order: _Order) -> None:
    """Credit the order's minted tokens once per intent, then apply what was recorded."""
    row = conn.execute(
        "INSERT INTO intent_credits (intent_id, order_no, tokens) VALUES (%s, %s, %s)"
        " ON CONFLICT (intent_id) DO NOTHING RETURNING 1",
        (order.intent_id, order.order_no, order.minted_tokens)).fetchone()
    if row is None:
        return  # credited before: a redelivery
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    wallet = book_credit(conn, wallet, tokens=order.minted_tokens, reason="purchase",
                         ref=order.intent_id)
    settle(conn, order, wallet)


def record_refund(conn: psycopg.Connection[Any], *, order: _Order, refunded_cents: int) -> None:
    """Keep the largest cumulative refund seen, and take back the increase it implies."""
    if refunded_cents > order.refunded_cents:
        conn.execute("UPDATE stripe_intents SET refunded_cents = %s WHERE order_no = %s",
                     (refunded_cents, order.order_no))
        order = _replace(order, refunded_cents=refunded_cents)
    if order.credited:
        settle(conn, order, lock_wallets(conn, [order.owner_id])[order.owner_id])


def record_dispute(conn: psycopg.Connection[Any], *, order: _Order, state: str) -> None:
    """Move the dispute forward (none, then open, then won or lost) and settle the wallet."""
    current = order.dispute_state
    if current is None or (current == "open" and state != "open"):
        conn.execute("UPDATE stripe_intents SET dispute_state = %s WHERE order_no = %s",
                     (state, order.order_no))
        order = _replace(order, dispute_state=state)
    if order.credited:
        settle(conn, order, lock_wallets(conn, [order.owner_id])[order.owner_id])


def _replace(order: _Order, **changes: Any) -> _Order:
    fields = {name: getattr(order, name) for name in _Order.__dataclass_fields__}
    return _Order(**{**fields, **changes})


def settle(conn: psycopg.Connection[Any], order: _Order, wallet: Wallet) -> None:
    """Move the wallet by (what should be taken) − (what was taken)."""
    target = taken_target_tokens(minted_tokens=order.minted_tokens,
                                 price_cents=order.price_cents,
                                 refunded_cents=order.refunded_cents,
                                 dispute_state=order.dispute_state)
    change = target - order.taken_tokens
    if change == 0:
        return
    reason = "dispute" if order.dispute_state in ("open", "lost") else "refund"
    if change > 0:
        book_clawback(conn, wallet, tokens=change, reason=reason, ref=order.intent_id)
    else:
        book_credit(conn, wallet, tokens=-change, reason="reinstate", ref=order.intent_id)
    conn.execute("UPDATE stripe_intents SET taken_tokens = %s WHERE order_no = %s",
                 (target, order.order_no))


OPERATIONS: Mapping[str, Operation] = {
    "open_wallet": open_wallet,
    "owner_for_key": owner_for_key,
    "show_wallet": show_wallet,
    "find_answer": find_answer,
    "buy": buy,
    "send_tip": send_tip,
    "start_session": start_session,
    "bill_minute": bill_minute,
    "bill_locked_session": bill_locked_session,
    "close_session": close_session,
    "verify_event": verify_event,
    "apply_event": apply_event,
    "count_pending": count_pending,
    "credit_intent": credit_intent,
    "record_refund": record_refund,
    "record_dispute": record_dispute,
    "read_tip": read_tip,
}
