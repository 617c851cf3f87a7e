"""Bugs written into the foreign service: each one replacement of one operation.

``FLAWS`` maps a name to a ``Flaw``: the operation it replaces, the buggy function (same
signature as the correct one), and the checkers that must catch it. ``install`` puts the
named ones into a copy of the registry; the correct operations never branch on flaws.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tests.foreign import operations as correct
from tests.foreign.inbox import INBOX_DELAY_MS
from tests.foreign.parsing import Refused, text
from tests.foreign.replies import Reply, error
from tests.foreign.wallets import (
    GIFT_FEE_PERCENT,
    PLATFORM_OWNER_ID,
    book,
    book_clawback,
    book_credit,
    gift_fee,
    lock_wallets,
    taken_target_tokens,
)

__all__ = ["FLAWS", "FLAW_NAMES_ENV", "Flaw", "inbox_delay_ms", "install"]

FLAW_NAMES_ENV = "FOREIGN_FLAWS"  # comma-separated flaw names for ``python -m tests.foreign``


@dataclass(frozen=True, slots=True, kw_only=True)
class Flaw:
    """One bug: which operation it replaces, with what, and who must notice."""

    name: str
    operation: str
    replacement: Callable[..., Any]
    caught_by: tuple[str, ...]
    description: str
    # How long the inbox's worker lets an event wait, where the bug needs a lagging worker
    # to show (None: the service's own ``INBOX_DELAY_MS``).
    inbox_delay_ms: int | None = None


def install(registry: dict[str, Callable[..., Any]],
            names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """The registry with the named flaws in place of the operations they replace.

    Raises:
        ValueError: an unknown flaw name, or two flaws replacing one operation.
    """
    replaced: dict[str, str] = {}
    for name in names:
        flaw = FLAWS.get(name)
        if flaw is None:
            raise ValueError(f"no foreign flaw {name!r}; known: {', '.join(sorted(FLAWS))}")
        if flaw.operation in replaced:
            raise ValueError(f"flaws {replaced[flaw.operation]} and {name} both replace "
                             f"{flaw.operation}; install one of them")
        replaced[flaw.operation] = name
        registry[flaw.operation] = flaw.replacement
    return registry


def inbox_delay_ms(names: Iterable[str]) -> int:
    """How long the inbox's worker lets events wait with these flaws installed."""
    delays = [FLAWS[name].inbox_delay_ms for name in names]
    return max((delay for delay in delays if delay is not None), default=INBOX_DELAY_MS)


def _tip_lost_update(pool: ConnectionPool[Any], *, from_owner: str, to_owner: str,
                     tokens: int) -> Reply:
    """Lost update on tips: balances read without a lock, checked in Python, written back."""
    with pool.connection() as conn:
        rows = dict(conn.execute("SELECT owner_id, balance FROM wallets WHERE owner_id = ANY(%s)",
                                 ([from_owner, to_owner, PLATFORM_OWNER_ID],)).fetchall())
    if to_owner not in rows:
        return error(404, "no_such_account", f"no account {to_owner}")
    sender_balance = int(rows[from_owner])
    if sender_balance < tokens:
        return error(409, "insufficient_funds", f"balance {sender_balance} does not cover "
                     f"{tokens}")
    fee_tokens = gift_fee(tokens)
    with pool.connection() as conn:
        row = conn.execute("INSERT INTO tips (from_owner, to_owner, tokens) VALUES (%s, %s, %s)"
                           " RETURNING tip_no", (from_owner, to_owner, tokens)).fetchone()
        assert row is not None
        for owner, delta, reason in ((from_owner, -tokens, "tip_out"),
                                     (to_owner, tokens - fee_tokens, "tip_in"),
                                     (PLATFORM_OWNER_ID, fee_tokens, "tip_fee")):
            if delta == 0:
                continue
            conn.execute("UPDATE wallets SET balance = %s WHERE owner_id = %s",
                         (int(rows[owner]) + delta, owner))
            conn.execute("INSERT INTO wallet_entries (owner_id, reason, balance_delta, ref)"
                         " VALUES (%s, %s, %s, %s)", (owner, reason, delta, f"tip:{row[0]}"))
    return Reply(status=200, body={"tip": {"id": int(row[0])},
                                   "balance": str(sender_balance - tokens)})


def _tip_to_nobody_debits(pool: ConnectionPool[Any], *, from_owner: str, to_owner: str,
                          tokens: int) -> Reply:
    """A tip to an account that does not exist debits the sender, and is then refused."""
    with pool.connection() as conn:
        wallets = lock_wallets(conn, [from_owner, to_owner, PLATFORM_OWNER_ID])
        sender, recipient = wallets[from_owner], wallets.get(to_owner)
        if sender.balance < tokens:
            return error(409, "insufficient_funds",
                         f"balance {sender.balance} does not cover {tokens}")
        if recipient is None:
            book(conn, sender, reason="tip_out", balance_delta=-tokens, owed_delta=0,
                 ref=f"tip-to:{to_owner}")
            return error(404, "no_such_account", f"no account {to_owner}")
        return correct.move_tip(conn, sender, recipient, wallets[PLATFORM_OWNER_ID], tokens)


def _fee_rounds_both_up(pool: ConnectionPool[Any], *, from_owner: str, to_owner: str,
                        tokens: int) -> Reply:
    """Both tip shares round up: a tip not divisible by 5 pays out one token more than was sent."""
    with pool.connection() as conn:
        wallets = lock_wallets(conn, [from_owner, to_owner, PLATFORM_OWNER_ID])
        sender, recipient = wallets[from_owner], wallets.get(to_owner)
        if recipient is None:
            return error(404, "no_such_account", f"no account {to_owner}")
        if sender.balance < tokens:
            return error(409, "insufficient_funds",
                         f"balance {sender.balance} does not cover {tokens}")
        recipient_tokens = -(-tokens * (100 - GIFT_FEE_PERCENT) // 100)  # ceil(0.8 * tokens)
        return correct.book_tip(conn, sender=sender, recipient=recipient,
                                platform=wallets[PLATFORM_OWNER_ID], tokens=tokens,
                                recipient_tokens=recipient_tokens, fee_tokens=gift_fee(tokens))


def _credit_every_delivery(conn: psycopg.Connection[Any], *, order: Any) -> None:
    """Credit on every webhook delivery: the intent is never checked for an earlier credit."""
    conn.execute("INSERT INTO intent_credits (intent_id, order_no, tokens) VALUES (%s, %s, %s)"
                 " ON CONFLICT (intent_id) DO NOTHING",
                 (order.intent_id, order.order_no, order.minted_tokens))
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    book_credit(conn, wallet, tokens=order.minted_tokens, reason="purchase", ref=order.intent_id)


def _credit_ignores_owed(conn: psycopg.Connection[Any], *, order: Any) -> None:
    """A purchase credit ignores what is owed: the whole credit reaches the balance."""
    row = conn.execute("INSERT INTO intent_credits (intent_id, order_no, tokens)"
                       " VALUES (%s, %s, %s) ON CONFLICT (intent_id) DO NOTHING RETURNING 1",
                       (order.intent_id, order.order_no, order.minted_tokens)).fetchone()
    if row is None:
        return
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    wallet = book(conn, wallet, reason="purchase", balance_delta=order.minted_tokens,
                  owed_delta=0, ref=order.intent_id)
    correct.settle(conn, order, wallet)


def _owing_state_kept(conn: psycopg.Connection[Any], *, order: Any, state: str) -> None:
    """A won dispute that repays a debt leaves the wallet 'owing': the state never goes back."""
    if order.dispute_state is None or (order.dispute_state == "open" and state != "open"):
        conn.execute("UPDATE stripe_intents SET dispute_state = %s WHERE order_no = %s",
                     (state, order.order_no))
        order = dataclasses.replace(order, dispute_state=state)
    if not order.credited:
        return
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    target = taken_target_tokens(minted_tokens=order.minted_tokens,
                                 price_cents=order.price_cents,
                                 refunded_cents=order.refunded_cents,
                                 dispute_state=order.dispute_state)
    change = target - order.taken_tokens
    if change == 0:
        return
    if change > 0:
        reason = "dispute" if order.dispute_state in ("open", "lost") else "refund"
        book_clawback(conn, wallet, tokens=change, reason=reason, ref=order.intent_id)
    else:
        repaid = min(-change, wallet.owed)
        # The state follows a debt that remains, and otherwise stays as it was.
        conn.execute(
            "WITH entry AS (INSERT INTO wallet_entries (owner_id, reason, balance_delta,"
            " owed_delta, ref) VALUES (%(owner)s, 'reinstate', %(balance)s, %(owed)s, %(ref)s))"
            " UPDATE wallets SET balance = balance + %(balance)s, owed = owed + %(owed)s,"
            " state = CASE WHEN owed + %(owed)s > 0 THEN 'owing' ELSE state END"
            " WHERE owner_id = %(owner)s",
            {"owner": order.owner_id, "balance": -change - repaid, "owed": -repaid,
             "ref": order.intent_id})
    conn.execute("UPDATE stripe_intents SET taken_tokens = %s WHERE order_no = %s",
                 (target, order.order_no))


def _bundle_bonus_dropped(conn: psycopg.Connection[Any], *, order: Any) -> None:
    """A bundle's bonus tokens are never credited: a purchase credits its base tokens only."""
    row = conn.execute("SELECT base_tokens FROM stripe_intents WHERE order_no = %s",
                       (order.order_no,)).fetchone()
    assert row is not None
    base_tokens = int(row[0])
    row = conn.execute("INSERT INTO intent_credits (intent_id, order_no, tokens)"
                       " VALUES (%s, %s, %s) ON CONFLICT (intent_id) DO NOTHING RETURNING 1",
                       (order.intent_id, order.order_no, base_tokens)).fetchone()
    if row is None:
        return
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    wallet = book_credit(conn, wallet, tokens=base_tokens, reason="purchase",
                         ref=order.intent_id)
    correct.settle(conn, order, wallet)


# The worker behind by a second, as under a backlog: the early answer then shows on every
# run, not only when the end state happens to be read within the usual delay.
_LAGGING_INBOX_DELAY_MS = 1000


def _inbox_counts_due_only(pool: ConnectionPool[Any]) -> int:
    """The inbox counts only overdue events as pending: it says settled while some wait."""
    with pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM webhook_inbox WHERE applied_at IS NULL"
                           " AND received_at <= clock_timestamp() - make_interval(secs => %s)",
                           (_LAGGING_INBOX_DELAY_MS / 1000,)).fetchone()
    assert row is not None
    return int(row[0])


def _refund_not_idempotent(conn: psycopg.Connection[Any], *, order: Any,
                           refunded_cents: int) -> None:
    """Refund not idempotent: every charge.refunded claws back its whole cumulative share."""
    if not order.credited or refunded_cents == 0:
        return
    share = order.minted_tokens * min(refunded_cents, order.price_cents) // order.price_cents
    if share == 0:
        return
    wallet = lock_wallets(conn, [order.owner_id])[order.owner_id]
    book_clawback(conn, wallet, tokens=share, reason="refund", ref=order.intent_id)
    conn.execute("UPDATE stripe_intents SET refunded_cents = GREATEST(refunded_cents, %s),"
                 " taken_tokens = taken_tokens + %s WHERE order_no = %s",
                 (refunded_cents, share, order.order_no))


def _minute_billed_again(conn: psycopg.Connection[Any], *, fan: str, session_id: str,
                         minute: int) -> Reply:
    """A replayed call minute is charged again: minutes are recorded but never looked up."""
    session = conn.execute(
        "SELECT fan_owner, creator_owner, per_minute, closed FROM video_sessions"
        " WHERE session_id = %s FOR UPDATE", (session_id,)).fetchone()
    if session is None:
        return error(404, "no_such_session", f"no session {session_id}")
    if str(session[0]) != fan:
        return error(403, "not_your_session", f"only the fan of {session_id} may bill it")
    if session[3] is not None:
        return error(410, "session_closed", f"session {session_id} is closed")
    wallets = lock_wallets(conn, [str(session[0]), str(session[1])])
    payer, payee, per_minute = wallets[str(session[0])], wallets[str(session[1])], int(session[2])
    if payer.balance < per_minute:
        conn.execute("UPDATE video_sessions SET closed = 'out_of_funds' WHERE session_id = %s",
                     (session_id,))
        return error(422, "insufficient_funds", f"balance {payer.balance} does not cover "
                     f"{per_minute}")
    charge_id = f"min_{session_id[4:]}_{minute}"
    conn.execute("INSERT INTO session_minutes (session_id, minute_no, tokens, charge_id)"
                 " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                 (session_id, minute, per_minute, charge_id))
    ref = f"minute:{session_id}:{minute}"
    after = book(conn, payer, reason="minute_out", balance_delta=-per_minute, owed_delta=0,
                 ref=ref)
    book_credit(conn, payee, tokens=per_minute, reason="minute_in", ref=ref)
    return Reply(status=200, body={"billed": True, "chargeId": charge_id,
                                   "balance": str(after.balance)})


def _global_client_keys(conn: psycopg.Connection[Any], *, owner_id: str, operation: str,
                        client_key: str, body_sha256: str) -> correct.Stored | Reply | None:
    """A global answer cache: a client key is looked up across accounts, bodies unchecked."""
    row = conn.execute("SELECT body_sha256, status, answer FROM client_keys"
                       " WHERE operation = %s AND client_key = %s LIMIT 1",
                       (operation, client_key)).fetchone()
    return None if row is None else correct.Stored(body_sha256=str(row[0]), status=int(row[1]),
                                                   answer=row[2])


def _negative_tip_accepted(body: Mapping[str, Any], *, sender: str) -> tuple[str, int] | Reply:
    """A negative tip is accepted: the amount is checked to be a non-zero integer only."""
    try:
        to_owner = text(body, "to")
    except Refused as refused:
        return refused.reply
    tokens = body.get("tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens == 0:
        return error(400, "bad_field", f"tokens must be a non-zero integer, got {tokens!r}")
    assert to_owner is not None
    if to_owner == sender:
        return error(400, "self_tip", "you cannot tip yourself")
    return to_owner, tokens


def _webhook_signature_ignored(payload: bytes, signature: str | None, *, secret: str,
                               tolerance_s: int) -> dict[str, Any] | None:
    """The webhook's signature is never verified: any JSON event is applied."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


_ALL = (
    Flaw(name="tip_lost_update", operation="send_tip", replacement=_tip_lost_update,
         caught_by=("conservation", "reconciliation"),
         description=_tip_lost_update.__doc__ or ""),
    Flaw(name="tip_to_nobody_debits", operation="send_tip", replacement=_tip_to_nobody_debits,
         caught_by=("conservation", "reconciliation"),
         description=_tip_to_nobody_debits.__doc__ or ""),
    Flaw(name="fee_rounds_both_up", operation="send_tip", replacement=_fee_rounds_both_up,
         caught_by=("conservation", "reconciliation"),
         description=_fee_rounds_both_up.__doc__ or ""),
    Flaw(name="credit_every_delivery", operation="credit_intent",
         replacement=_credit_every_delivery,
         caught_by=("conservation", "exactly_once_credit", "reconciliation"),
         description=_credit_every_delivery.__doc__ or ""),
    Flaw(name="credit_ignores_owed", operation="credit_intent",
         replacement=_credit_ignores_owed, caught_by=("debt",),
         description=_credit_ignores_owed.__doc__ or ""),
    Flaw(name="owing_state_kept", operation="record_dispute", replacement=_owing_state_kept,
         caught_by=("debt",), description=_owing_state_kept.__doc__ or ""),
    Flaw(name="bundle_bonus_dropped", operation="credit_intent",
         replacement=_bundle_bonus_dropped,
         caught_by=("conservation", "exactly_once_credit", "reconciliation"),
         description=_bundle_bonus_dropped.__doc__ or ""),
    Flaw(name="inbox_counts_due_only", operation="count_pending",
         replacement=_inbox_counts_due_only,
         caught_by=("exactly_once_credit", "reconciliation"),
         description=_inbox_counts_due_only.__doc__ or "",
         inbox_delay_ms=_LAGGING_INBOX_DELAY_MS),
    Flaw(name="refund_not_idempotent", operation="record_refund",
         replacement=_refund_not_idempotent,
         caught_by=("refunds", "conservation", "reconciliation"),
         description=_refund_not_idempotent.__doc__ or ""),
    Flaw(name="minute_billed_again", operation="bill_locked_session",
         replacement=_minute_billed_again, caught_by=("calls", "reconciliation"),
         description=_minute_billed_again.__doc__ or ""),
    Flaw(name="global_client_keys", operation="find_answer", replacement=_global_client_keys,
         caught_by=("key_scope", "idempotency"), description=_global_client_keys.__doc__ or ""),
    Flaw(name="negative_tip_accepted", operation="read_tip", replacement=_negative_tip_accepted,
         caught_by=("refusals", "reconciliation"),
         description=_negative_tip_accepted.__doc__ or ""),
    Flaw(name="webhook_signature_ignored", operation="verify_event",
         replacement=_webhook_signature_ignored, caught_by=("webhook_auth",),
         description=_webhook_signature_ignored.__doc__ or ""),
)
FLAWS: Mapping[str, Flaw] = {flaw.name: flaw for flaw in _ALL}
for _flaw in _ALL:
    assert _flaw.operation in correct.OPERATIONS, _flaw
