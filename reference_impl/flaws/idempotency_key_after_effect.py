"""idempotency_key_after_effect: a tip commits its effect, then its idempotency key, apart.

The idempotency layer written as a wrapper around the handler: look the key up, run the
tip in its own transaction, then store the key and its answer in a second one. A lock
per key in the process makes concurrent retries of one key wait for the first, so
without a fault every retry gets the stored answer. A crash after the tip commits and
before its key does (the second transaction follows ``KEY_DELAY_S`` later) leaves a
tip with no key: the client, which never got its answer, retries with the same key,
and the tip is applied twice.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from reference_impl import idempotency, ledger
from reference_impl.db import connection, retry_transient, transaction
from reference_impl.errors import Answer, Result
from reference_impl.flaws._flaw import Flaw
from reference_impl.service import _insufficient

__all__ = ["FLAW", "KEY_DELAY_S", "caught_by", "tip"]

caught_by = ("durability", "reconciliation")
scenarios = ("crash-during-spends", "database-restart", "mixed-chaos")

# Between the tip's commit and its key's: a real wrapper spends a round trip or two
# here; the flaw waits long enough that a kill during a burst of tips lands in between.
KEY_DELAY_S = 0.2

# Held from the look-up to the key's commit; in memory, so a crash forgets them.
_KEY_LOCKS: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = \
    weakref.WeakValueDictionary()


async def tip(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
              amount_tokens: int, idempotency_key: str) -> Answer:
    """Idempotency key stored after the effect: the tip commits, then its key, apart."""
    assert sender_id != recipient_id, "the route refuses tips to oneself"
    assert amount_tokens > 0, amount_tokens
    request_fingerprint = idempotency.fingerprint(
        "tip", {"to": recipient_id, "amount": amount_tokens})
    async with _key_lock(sender_id, idempotency_key):
        stored = await _stored(pool, sender_id=sender_id, key=idempotency_key,
                               request_fingerprint=request_fingerprint)
        if stored is not None:
            return stored
        answer = await _transfer(pool, sender_id=sender_id, recipient_id=recipient_id,
                                 amount_tokens=amount_tokens, idempotency_key=idempotency_key)
        await asyncio.sleep(KEY_DELAY_S)
        await _store(pool, sender_id=sender_id, key=idempotency_key,
                     request_fingerprint=request_fingerprint, answer=answer)
        return answer


@asynccontextmanager
async def _key_lock(account_id: int, key: str) -> AsyncIterator[None]:
    lock = _KEY_LOCKS.get((account_id, key))
    if lock is None:
        lock = _KEY_LOCKS[(account_id, key)] = asyncio.Lock()
    async with lock:
        yield


@retry_transient
async def _stored(pool: AsyncConnectionPool, *, sender_id: int, key: str,
                  request_fingerprint: str) -> Answer | None:
    async with connection(pool) as conn:
        return await idempotency.lookup(conn, account_id=sender_id, key=key, operation="tip",
                                        request_fingerprint=request_fingerprint)


@retry_transient
async def _transfer(pool: AsyncConnectionPool, *, sender_id: int, recipient_id: int,
                    amount_tokens: int, idempotency_key: str) -> Answer:
    """The tip itself, in its own transaction, with no key."""
    async with transaction(pool) as conn:
        accounts = await ledger.lock_accounts(conn, (sender_id, recipient_id))
        sender, recipient = accounts.get(sender_id), accounts.get(recipient_id)
        assert sender is not None, f"the authenticated sender {sender_id} has no account"
        if recipient is None:
            return Answer(result=Result.NOT_FOUND,
                          body={"message": f"no user {recipient_id} to tip"})
        if sender.balance_tokens < amount_tokens:
            return _insufficient(sender, amount_tokens)
        movement = await ledger.transfer(
            conn, sender=sender, recipient=recipient, amount_tokens=amount_tokens,
            kind=ledger.TransactionKind.TIP, reference=f"tip:{sender_id}:{idempotency_key}")
        return Answer(result=Result.CREATED, body={
            "tip_id": movement.transaction_id,
            "balance": movement.accounts[sender_id].balance_tokens})


@retry_transient
async def _store(pool: AsyncConnectionPool, *, sender_id: int, key: str,
                 request_fingerprint: str, answer: Answer) -> None:
    """The key and its answer, in a second transaction."""
    async with transaction(pool) as conn:
        if await idempotency.claim(conn, account_id=sender_id, key=key, operation="tip",
                                   request_fingerprint=request_fingerprint) is None:
            await idempotency.record(conn, account_id=sender_id, key=key, answer=answer)


FLAW = Flaw(
    name="idempotency_key_after_effect", operation="tip", replacement=tip,
    caught_by=caught_by, scenarios=scenarios,
    description="a tip commits, then its key in a second transaction 200 ms later, so a crash "
                "between them makes its retry pay again (durability, reconciliation)")
