"""The service's operations: one async function each, each owning one transaction.

``OPERATIONS`` names every operation; the routes call them only through the copy of this
registry held on ``app.state``, so a flaw can replace exactly one operation with a buggy
one of the same signature, and the correct code below has no ``if flaw:`` anywhere. The
registry also holds ``create_pool`` (``db.create_pool``), which the app's start-up calls
through it: how the service keeps its database connections is replaceable too.

Rules every spend follows: the idempotency key is claimed first, then the accounts are
locked in id order (``ledger.lock_accounts``), the decision is made on the locked rows,
the movement is posted, and the answer is stored under the key, all in one transaction.
A tip, the spend that carries the load, does all of it in one statement inside the
server, shared with the tips that arrive at the same time (``spend_tips``, migration
0004), so it costs a share of one round trip.
Deadlocks and serialization failures are retried (``db.retry_transient``). Expected
outcomes are ``Result`` values, never exceptions. Ids are keyword-only.

Purchases and webhooks live in ``payments.py``; this module re-exports them in the
registry. Nothing here knows HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger, payments, tip_batches
from reference_impl.db import connection, create_pool, retry_transient, transaction
from reference_impl.errors import Answer, Result

__all__ = [
    "OPERATIONS",
    "TIP_SQL",
    "TIP_STATEMENTS",
    "audit_accounts",
    "audit_totals",
    "audit_webhook_anomalies",
    "authenticate",
    "charge_minute",
    "check_health",
    "create_user",
    "end_call",
    "hash_token",
    "open_call",
    "read_account",
    "tip",
]

_TOKEN_PREFIX = "tc_"
_HEALTH_TIMEOUT_S = 2.0


def hash_token(token: str) -> str:
    """How a bearer token is stored: its sha256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


@retry_transient
async def create_user(pool: AsyncConnectionPool, *, kind: str) -> Answer:
    """A new fan or creator with a fresh random bearer token (returned once, stored hashed)."""
    assert kind in ("fan", "creator"), kind
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with transaction(pool) as conn:
        cursor = await conn.execute(
            "INSERT INTO accounts (kind, token_hash) VALUES (%s, %s) RETURNING id",
            (kind, hash_token(token)))
        row = await cursor.fetchone()
    assert row is not None
    return Answer(result=Result.CREATED, body={"id": int(row[0]), "token": token})


@retry_transient
async def authenticate(pool: AsyncConnectionPool, *, token: str) -> int | None:
    """The id of the user account this bearer token belongs to, or None."""
    async with connection(pool) as conn:
        cursor = await conn.execute(
            "SELECT id FROM accounts WHERE token_hash = %s AND kind <> 'system'",
            (hash_token(token),))
        row = await cursor.fetchone()
    return None if row is None else int(row[0])


@retry_transient
async def read_account(pool: AsyncConnectionPool, *, account_id: int) -> Answer:
    """``{id, balance, debt, status}`` of one user account."""
    async with connection(pool) as conn:
        cursor = await conn.execute(
            "SELECT id, balance, debt, status FROM accounts WHERE id = %s AND kind <> 'system'",
            (account_id,))
        row = await cursor.fetchone()
    if row is None:
        return Answer(result=Result.NOT_FOUND, body={"message": f"no account {account_id}"})
    return Answer(result=Result.OK, body={"id": int(row[0]), "balance": int(row[1]),
                                          "debt": int(row[2]), "status": str(row[3])})


# The whole tip, in the server: the service sends the tips that arrive together as one
# ``spend_tips`` statement (migration 0004, ``tip_batches``), one transaction for all of
# them. pgbench runs these statements, one tip each, to measure the service against its
# own SQL (``harness.bench.service``).
TIP_SQL = tip_batches.BATCH_TIP_SQL
TIP_STATEMENTS = (TIP_SQL,)


async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Move ``amount_tokens`` from the sender to the recipient, once per key.

    The claim of the key, the locks, the decision, the movement and the stored answer are
    one statement inside the server, shared with the tips that arrive at the same time
    (``tip_batches``), which commits as it returns; deadlocks and lost connections are
    retried there, safely, because the key turns a tip that did commit into a replay.

    Returns:
        ``created`` ``{tip_id, balance}`` (the sender's balance after); ``not_found``;
        ``insufficient_funds``; ``idempotency_conflict``; or the stored answer of the key.
    """
    assert sender_id != recipient_id, "the route refuses tips to oneself"
    assert amount_tokens > 0, amount_tokens
    request_fingerprint = idempotency.fingerprint(
        "tip", {"to": recipient_id, "amount": amount_tokens})
    result, body, replayed = await tip_batches.batcher_for(pool).spend(tip_batches.TipRequest(
        sender_id=sender_id, recipient_id=recipient_id, amount_tokens=amount_tokens,
        idempotency_key=idempotency_key, request_fingerprint=request_fingerprint))
    if result == Result.IDEMPOTENCY_CONFLICT:
        return idempotency.conflict(key=idempotency_key, stored_operation=str(body["operation"]))
    return Answer(result=Result(result), body=body, replayed=replayed)


def _insufficient(sender: ledger.Account, amount_tokens: int) -> Answer:
    return Answer(result=Result.INSUFFICIENT_FUNDS, body={
        "message": f"the balance of {sender.balance_tokens} tokens does not cover "
                   f"{amount_tokens}",
        "balance": sender.balance_tokens})


@retry_transient
async def open_call(pool: AsyncConnectionPool, *, fan_id: int, creator_id: int,
                    rate_tokens_per_minute: int, idempotency_key: str | None) -> Answer:
    """Open a call the fan pays for by the minute. Returns ``created`` ``{call_id}``."""
    assert fan_id != creator_id, "the route refuses calls with oneself"
    request_fingerprint = idempotency.fingerprint(
        "open_call", {"creator": creator_id, "rate_per_minute": rate_tokens_per_minute})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=fan_id, key=idempotency_key,
                                         operation="open_call",
                                         request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        cursor = await conn.execute(
            "INSERT INTO calls (fan_id, creator_id, rate_tokens_per_minute)"
            " SELECT %s, id, %s FROM accounts WHERE id = %s AND kind <> 'system' RETURNING id",
            (fan_id, rate_tokens_per_minute, creator_id))
        row = await cursor.fetchone()
        if row is None:
            answer = Answer(result=Result.NOT_FOUND,
                            body={"message": f"no user {creator_id} to call"})
        else:
            answer = Answer(result=Result.CREATED, body={"call_id": int(row[0])})
        await idempotency.record(conn, account_id=fan_id, key=idempotency_key, answer=answer)
        return answer


@retry_transient
async def charge_minute(pool: AsyncConnectionPool, *, fan_id: int, call_id: int, minute: int,
                        idempotency_key: str) -> Answer:
    """Charge one minute of a call at its rate, once per minute however often asked.

    Returns:
        ``created`` ``{charge_id, balance}``; ``exists`` with the first answer when the
        minute was charged before; ``insufficient_funds`` (the call ends); ``call_ended``;
        ``not_found``; ``forbidden`` (not the call's fan); ``idempotency_conflict``.
    """
    request_fingerprint = idempotency.fingerprint(
        "charge_minute", {"call_id": call_id, "minute": minute})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=fan_id, key=idempotency_key,
                                         operation="charge_minute",
                                         request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        answer = await _charge_locked_call(conn, fan_id=fan_id, call_id=call_id, minute=minute)
        await idempotency.record(conn, account_id=fan_id, key=idempotency_key, answer=answer)
        return answer


async def _charge_locked_call(conn: AsyncConnection, *, fan_id: int, call_id: int,
                             minute: int) -> Answer:
    """The decision of ``charge_minute``: lock the call, then the two accounts in id order."""
    cursor = await conn.execute(
        "SELECT fan_id, creator_id, rate_tokens_per_minute, ended FROM calls"
        " WHERE id = %s FOR NO KEY UPDATE", (call_id,))
    call = await cursor.fetchone()
    if call is None:
        return Answer(result=Result.NOT_FOUND, body={"message": f"no call {call_id}"})
    call_fan_id, creator_id, rate_tokens, ended = int(call[0]), int(call[1]), int(call[2]), call[3]
    if call_fan_id != fan_id:
        return Answer(result=Result.FORBIDDEN,
                      body={"message": f"only the fan of call {call_id} may charge it"})
    cursor = await conn.execute(
        "SELECT id, balance_after FROM call_charges WHERE call_id = %s AND minute = %s",
        (call_id, minute))
    first = await cursor.fetchone()
    if first is not None:
        return Answer(result=Result.EXISTS,
                      body={"charge_id": int(first[0]), "balance": int(first[1])})
    if ended:
        return Answer(result=Result.CALL_ENDED, body={"message": f"call {call_id} has ended"})
    accounts = await ledger.lock_accounts(conn, (fan_id, creator_id))
    fan, creator = accounts[fan_id], accounts[creator_id]
    if fan.balance_tokens < rate_tokens:
        await conn.execute(
            "UPDATE calls SET ended = true, end_reason = 'insufficient_funds', ended_at = now()"
            " WHERE id = %s", (call_id,))
        answer = _insufficient(fan, rate_tokens)
        return Answer(result=answer.result, body={**answer.body, "call_ended": True})
    movement = await ledger.transfer(
        conn, sender=fan, recipient=creator, amount_tokens=rate_tokens,
        kind=ledger.TransactionKind.CALL_CHARGE, reference=f"call:{call_id}:{minute}")
    balance_tokens = movement.accounts[fan_id].balance_tokens
    cursor = await conn.execute(
        "INSERT INTO call_charges (call_id, minute, amount_tokens, transaction_id, balance_after)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (call_id, minute, rate_tokens, movement.transaction_id, balance_tokens))
    row = await cursor.fetchone()
    assert row is not None
    return Answer(result=Result.CREATED, body={"charge_id": int(row[0]), "balance": balance_tokens})


@retry_transient
async def end_call(pool: AsyncConnectionPool, *, fan_id: int, call_id: int,
                   idempotency_key: str | None) -> Answer:
    """End a call (again is fine). Returns ``ok`` ``{call_id, ended: true}``."""
    request_fingerprint = idempotency.fingerprint("end_call", {"call_id": call_id})
    async with transaction(pool) as conn:
        stored = await idempotency.claim(conn, account_id=fan_id, key=idempotency_key,
                                         operation="end_call",
                                         request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        cursor = await conn.execute("SELECT fan_id FROM calls WHERE id = %s FOR NO KEY UPDATE",
                                    (call_id,))
        row = await cursor.fetchone()
        if row is None:
            answer = Answer(result=Result.NOT_FOUND, body={"message": f"no call {call_id}"})
        elif int(row[0]) != fan_id:
            answer = Answer(result=Result.FORBIDDEN,
                            body={"message": f"only the fan of call {call_id} may end it"})
        else:
            await conn.execute(
                "UPDATE calls SET ended = true, end_reason = 'fan', ended_at = now()"
                " WHERE id = %s AND NOT ended", (call_id,))
            answer = Answer(result=Result.OK, body={"call_id": call_id, "ended": True})
        await idempotency.record(conn, account_id=fan_id, key=idempotency_key, answer=answer)
        return answer


# ---------------------------------------------------------------------------------------
# Audit: read-only, from one consistent snapshot.

_AUDIT_ACCOUNTS_SQL = """
WITH ledger AS (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id),
     debts AS (SELECT account_id, sum(amount) AS total FROM debt_entries GROUP BY account_id),
     -- What credits really moved, from the journals (a credit that pays debt moves the
     -- debt journal, not the balance), so a credit posted twice or never shows here.
     credited AS (SELECT account_id, sum(amount) AS total FROM (
                      SELECT e.account_id, e.amount FROM ledger_entries e
                      JOIN ledger_transactions t ON t.id = e.transaction_id
                      WHERE t.kind = 'credit'
                      UNION ALL
                      SELECT d.account_id, -d.amount FROM debt_entries d
                      JOIN ledger_transactions t ON t.id = d.transaction_id
                      WHERE t.kind = 'credit') AS moves
                  GROUP BY account_id),
     paid AS (SELECT account_id, sum(clawed_tokens) AS clawed_back
              FROM payments GROUP BY account_id)
SELECT a.id, a.kind, a.balance, a.debt, a.status,
       COALESCE(ledger.total, 0)::bigint, COALESCE(debts.total, 0)::bigint,
       COALESCE(credited.total, 0)::bigint, COALESCE(paid.clawed_back, 0)::bigint
FROM accounts a
LEFT JOIN ledger ON ledger.account_id = a.id
LEFT JOIN debts ON debts.account_id = a.id
LEFT JOIN credited ON credited.account_id = a.id
LEFT JOIN paid ON paid.account_id = a.id
WHERE a.kind <> 'system'
ORDER BY a.id
"""

_AUDIT_TOTALS_SQL = """
SELECT
  (SELECT COALESCE(sum(minted_tokens), 0) FROM payments WHERE succeeded)::bigint,
  (SELECT COALESCE(sum(clawed_tokens), 0) FROM payments)::bigint,
  (SELECT COALESCE(sum(balance), 0) FROM accounts WHERE kind <> 'system')::bigint,
  (SELECT COALESCE(sum(debt), 0) FROM accounts WHERE kind <> 'system')::bigint,
  (SELECT COALESCE(-sum(amount), 0) FROM ledger_entries WHERE account_id = %(issuance)s)::bigint,
  (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE account_id = %(clawback)s)::bigint,
  (SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries
                         GROUP BY transaction_id HAVING sum(amount) <> 0) AS unbalanced)::bigint,
  (SELECT count(*) FROM webhook_anomalies)::bigint
"""

_WEBHOOK_ANOMALIES_LIMIT = 1000  # the newest this many; the count in the totals is complete


@retry_transient
async def audit_accounts(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    """Every user account with its ledger sum, the credits its journals show, and clawbacks.

    Keys: ``id, kind, balance, debt, status, ledger_sum, debt_sum, credited, clawed_back``;
    ``balance == ledger_sum`` and ``debt == debt_sum`` hold for a correct service.
    """
    async with transaction(pool) as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor = await conn.execute(_AUDIT_ACCOUNTS_SQL)
        rows = await cursor.fetchall()
    keys = ("id", "kind", "balance", "debt", "status", "ledger_sum", "debt_sum", "credited",
            "clawed_back")
    return [dict(zip(keys, row, strict=True)) for row in rows]


@retry_transient
async def audit_totals(pool: AsyncConnectionPool) -> dict[str, int]:
    """Sums over every user account, from one snapshot.

    Keys: ``minted`` (tokens credited by succeeded payments), ``clawed_back`` (tokens
    taken back by refunds and disputes, net of disputes won), ``balances``, ``debts``,
    ``drift_accounts`` (user accounts whose balance or debt differs from its journal);
    and, from the ledger alone, ``ledger_minted`` (−Σ issuance entries),
    ``ledger_clawed_back`` (Σ clawback entries + debts) and ``unbalanced_transactions``;
    ``webhook_anomalies``: signed events that credited nothing because they named an
    intent the service never recorded or disagreed with its record.
    A correct service has ``minted − clawed_back == balances − debts``, zero drift, and
    ledger figures equal to the payment figures.
    """
    accounts = await audit_accounts(pool)
    drift_accounts = sum(1 for account in accounts
                         if account["balance"] != account["ledger_sum"]
                         or account["debt"] != account["debt_sum"])
    async with transaction(pool) as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor = await conn.execute(_AUDIT_TOTALS_SQL, {
            "issuance": ledger.ISSUANCE_ACCOUNT_ID, "clawback": ledger.CLAWBACK_ACCOUNT_ID})
        row = await cursor.fetchone()
    assert row is not None
    (minted, clawed_back, balances, debts, ledger_minted, collected, unbalanced,
     anomalies) = map(int, row)
    return {"minted": minted, "clawed_back": clawed_back, "balances": balances,
            "debts": debts, "drift_accounts": drift_accounts, "ledger_minted": ledger_minted,
            "ledger_clawed_back": collected + debts, "unbalanced_transactions": unbalanced,
            "webhook_anomalies": anomalies}


@retry_transient
async def audit_webhook_anomalies(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    """The newest webhook anomalies, newest first.

    Keys: ``id, event_id, event_type, intent_id, payment_id, kind`` (``unknown_intent`` or
    ``mismatch``), ``expected`` (what the service recorded), ``observed`` (what the event
    said), ``received_at`` (ISO 8601).
    """
    async with connection(pool) as conn:
        cursor = await conn.execute(
            "SELECT id, event_id, event_type, intent_id, payment_id, kind, expected, observed,"
            " received_at FROM webhook_anomalies ORDER BY id DESC LIMIT %s",
            (_WEBHOOK_ANOMALIES_LIMIT,))
        rows = await cursor.fetchall()
    keys = ("id", "event_id", "event_type", "intent_id", "payment_id", "kind", "expected",
            "observed", "received_at")
    return [{**dict(zip(keys, row, strict=True)), "received_at": row[8].isoformat()}
            for row in rows]


async def check_health(pool: AsyncConnectionPool) -> bool:
    """Whether the database answers a trivial query within a couple of seconds."""
    try:
        async with pool.connection(timeout=_HEALTH_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
    except Exception:  # any failure to reach the database means: not healthy
        return False
    return True


OPERATIONS: Mapping[str, Callable[..., Any]] = MappingProxyType({
    "create_pool": create_pool,
    "create_user": create_user,
    "authenticate": authenticate,
    "read_account": read_account,
    "tip": tip,
    "open_call": open_call,
    "charge_minute": charge_minute,
    "end_call": end_call,
    "create_purchase": payments.create_purchase,
    "verify_webhook": payments.verify_webhook,
    "apply_payment_succeeded": payments.apply_payment_succeeded,
    "apply_charge_refunded": payments.apply_charge_refunded,
    "apply_dispute_created": payments.apply_dispute_created,
    "apply_dispute_closed": payments.apply_dispute_closed,
    "acknowledge_event": payments.acknowledge_event,
    "audit_accounts": audit_accounts,
    "audit_totals": audit_totals,
    "audit_webhook_anomalies": audit_webhook_anomalies,
    "check_health": check_health,
})
