"""Tips in batches on a real PostgreSQL: each tip of a batch is answered as if alone.

``spend_tips`` decides a batch in order, in memory, and writes it with one statement per
table; ``TipBatcher`` gathers concurrent tips into batches. These tests hold both to the
rules of a single tip: keys, balances decided in order, debts paid first, books balanced,
a bad tip failing only itself, and no lost update however the tips are grouped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from reference_impl import db, tip_batches
from reference_impl.settings import Settings
from reference_impl.tip_batches import TipBatcher, TipRequest, TipRow

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    settings = Settings(database_url=database_url, admin_key="adm_batch_0123456789ab",
                        webhook_secret="whsec_batch", pool_size_min=1, pool_size_max=8)
    pool = db.create_pool(settings)
    await db.open_pool(pool, settings)
    await db.apply_migrations(pool)
    try:
        yield pool
    finally:
        await pool.close()


async def _account(pool: AsyncConnectionPool, kind: str, *, balance: int = 0,
                   debt: int = 0) -> int:
    """A user account holding ``balance`` (credited from issuance, books balanced) or ``debt``."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            "INSERT INTO accounts (kind, token_hash) VALUES (%s, md5(random()::text))"
            " RETURNING id", (kind,))
        row = await cursor.fetchone()
        assert row is not None
        account_id = int(row[0])
        if balance:
            cursor = await conn.execute(
                "INSERT INTO ledger_transactions (kind, reference) VALUES ('credit', %s)"
                " RETURNING id", (f"test:{account_id}",))
            transaction = await cursor.fetchone()
            assert transaction is not None
            await conn.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                " VALUES (%s, 1, %s), (%s, %s, %s)",
                (transaction[0], -balance, transaction[0], account_id, balance))
        if balance or debt:
            await conn.execute("UPDATE accounts SET balance = %s, debt = %s WHERE id = %s",
                               (balance, debt, account_id))
            if debt:
                await conn.execute(
                    "INSERT INTO debt_entries (transaction_id, account_id, amount)"
                    " SELECT id, %s, %s FROM ledger_transactions WHERE kind = 'credit'"
                    " LIMIT 1", (account_id, debt))
    return account_id


def _tip(sender: int, recipient: int, amount: int, key: str,
         fingerprint: str | None = None) -> TipRequest:
    return TipRequest(sender_id=sender, recipient_id=recipient, amount_tokens=amount,
                      idempotency_key=key,
                      request_fingerprint=fingerprint or f"{recipient}:{amount}")


async def _spend(pool: AsyncConnectionPool, tips: Sequence[TipRequest]) -> list[TipRow]:
    return await tip_batches._spend_tips(pool, tips)


async def _balances(pool: AsyncConnectionPool, *ids: int) -> list[tuple[int, int]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT balance, debt FROM accounts WHERE id = ANY(%s) ORDER BY array_position(%s,"
            " id)", (list(ids), list(ids)))
        return [(int(b), int(d)) for b, d in await cursor.fetchall()]


async def _ledger_sums(pool: AsyncConnectionPool, *ids: int) -> list[int]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT a.id, coalesce(sum(e.amount), 0) FROM unnest(%s::bigint[]) AS a (id)"
            " LEFT JOIN ledger_entries e ON e.account_id = a.id GROUP BY a.id", (list(ids),))
        sums = dict(await cursor.fetchall())
    return [int(sums[i]) for i in ids]


async def test_a_batch_decides_its_tips_in_order_on_the_balances_before_them(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=10)
    creator = await _account(pool, "creator")
    rows = await _spend(pool, [_tip(fan, creator, 6, "a"), _tip(fan, creator, 6, "b"),
                               _tip(fan, creator, 4, "c"), _tip(fan, 999_999, 1, "d")])
    assert [row[0] for row in rows] == ["created", "insufficient_funds", "created",
                                        "not_found"]
    assert rows[0][1]["balance"] == 4 and rows[2][1]["balance"] == 0
    assert rows[1][1]["balance"] == 4
    assert rows[0][1]["tip_id"] != rows[2][1]["tip_id"]
    assert await _balances(pool, fan, creator) == [(0, 0), (10, 0)]
    assert await _ledger_sums(pool, fan, creator) == [0, 10]


async def test_a_key_used_twice_in_a_batch_is_a_replay_or_a_conflict(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=10)
    creator = await _account(pool, "creator")
    rows = await _spend(pool, [_tip(fan, creator, 3, "k"), _tip(fan, creator, 3, "k"),
                               _tip(fan, creator, 5, "k")])
    assert rows[0] == ("created", rows[0][1], False)
    assert rows[1] == ("created", rows[0][1], True)
    assert rows[2] == ("idempotency_conflict", {"operation": "tip"}, False)
    assert await _balances(pool, fan, creator) == [(7, 0), (3, 0)]


async def test_a_key_stored_before_the_batch_replays_its_stored_answer(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=10)
    creator = await _account(pool, "creator")
    first = await _spend(pool, [_tip(fan, creator, 3, "k")])
    rows = await _spend(pool, [_tip(fan, creator, 3, "k"), _tip(fan, creator, 3, "k"),
                               _tip(fan, creator, 4, "k")])
    assert rows == [("created", first[0][1], True), ("created", first[0][1], True),
                    ("idempotency_conflict", {"operation": "tip"}, False)]
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT result, status_code FROM idempotency_keys WHERE account_id = %s", (fan,))
        assert await cursor.fetchall() == [("created", 201)]
    assert await _balances(pool, fan, creator) == [(7, 0), (3, 0)]


async def test_a_credit_in_a_batch_pays_the_recipients_debt_first(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=10)
    creator = await _account(pool, "creator", debt=4)
    rows = await _spend(pool, [_tip(fan, creator, 3, "a"), _tip(fan, creator, 3, "b")])
    assert [row[0] for row in rows] == ["created", "created"]
    assert await _balances(pool, fan, creator) == [(4, 0), (2, 0)]
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM debt_entries WHERE account_id = %s",
            (creator,))
        row = await cursor.fetchone()
    assert row == (0,)


async def test_a_batch_with_one_bad_tip_fails_only_that_tip(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=10)
    creator = await _account(pool, "creator")
    batcher = TipBatcher(pool, batches_in_flight_max=1)
    # The four go as one batch, one of whose tips names a sender with no account (the
    # database raises for it): the batch is run again tip by tip.
    results = await asyncio.gather(
        batcher.spend(_tip(fan, creator, 1, "first")),
        batcher.spend(_tip(fan, creator, 1, "a")),
        batcher.spend(_tip(999_999, creator, 1, "bad")),
        batcher.spend(_tip(fan, creator, 1, "b")),
        return_exceptions=True)
    assert batcher.batches_count == 1
    assert [r[0] for r in results if not isinstance(r, BaseException)] == ["created"] * 3
    assert isinstance(results[2], psycopg.errors.ForeignKeyViolation)
    assert await _balances(pool, fan, creator) == [(7, 0), (3, 0)]


async def test_concurrent_tips_to_a_hot_creator_lose_no_update(
        pool: AsyncConnectionPool) -> None:
    creator = await _account(pool, "creator")
    fans = [await _account(pool, "fan", balance=100) for _ in range(8)]
    batcher = TipBatcher(pool, batches_in_flight_max=3, tips_per_batch_max=5)
    tips = [_tip(fan, creator, 1, f"t{index}") for index in range(25) for fan in fans]
    rows = await asyncio.gather(*(batcher.spend(tip) for tip in tips))
    assert {row[0] for row in rows} == {"created"}
    assert batcher.tips_count == len(tips)
    assert batcher.batches_count < len(tips), "the tips were never batched"
    assert await _balances(pool, creator) == [(200, 0)]
    assert await _ledger_sums(pool, creator, *fans) == [200, *[75] * 8]


async def test_tips_past_the_waiting_bound_are_refused_at_once(
        pool: AsyncConnectionPool) -> None:
    fan = await _account(pool, "fan", balance=100)
    creator = await _account(pool, "creator")
    batcher = TipBatcher(pool, batches_in_flight_max=1, tips_per_batch_max=2,
                         tips_waiting_max=2)
    results = await asyncio.gather(
        *(batcher.spend(_tip(fan, creator, 1, f"w{index}")) for index in range(5)),
        return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused and all(type(r).__name__ == "TooManyRequests" for r in refused)
    created = [r for r in results if not isinstance(r, BaseException)]
    assert await _balances(pool, fan) == [(100 - len(created), 0)]
