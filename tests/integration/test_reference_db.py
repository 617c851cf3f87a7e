"""The schema and its guards on a real PostgreSQL: migrations, the ledger's rules, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import psycopg.errors
import pytest
from psycopg_pool import AsyncConnectionPool

from reference_impl import db
from reference_impl.errors import ConfigError
from reference_impl.settings import Settings

pytestmark = pytest.mark.integration


def _settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, admin_key="adm_db_0123456789abcd",
                    webhook_secret="whsec_db", pool_size_min=1, pool_size_max=4)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    settings = _settings(database_url)
    pool = db.create_pool(settings)
    await db.open_pool(pool, settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def migrated(pool: AsyncConnectionPool) -> AsyncConnectionPool:
    assert await db.apply_migrations(pool)
    return pool


async def _two_users(pool: AsyncConnectionPool) -> tuple[int, int]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO accounts (kind, token_hash) VALUES ('fan', 'a'), ('fan', 'b')"
            " RETURNING id")
        rows = await cursor.fetchall()
    return int(rows[0][0]), int(rows[1][0])


async def test_migrations_apply_once_however_many_services_start_at_once(
        pool: AsyncConnectionPool, database_url: str) -> None:
    settings = _settings(database_url)
    others = [db.create_pool(settings) for _ in range(3)]
    for other in others:
        await db.open_pool(other, settings)
    try:
        applied = await asyncio.gather(*(db.apply_migrations(p) for p in (pool, *others)))
    finally:
        for other in others:
            await other.close()
    migrations_count = len(db._read_migrations())
    assert migrations_count >= 1
    assert sorted(len(names) for names in applied) == [0, 0, 0, migrations_count]
    assert await db.apply_migrations(pool) == []


async def test_an_edited_migration_stops_the_start(migrated: AsyncConnectionPool) -> None:
    async with migrated.connection() as conn:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")
    with pytest.raises(ConfigError, match="never edit an applied migration"):
        await db.apply_migrations(migrated)


async def test_the_ledger_refuses_a_transaction_that_does_not_sum_to_zero(
        migrated: AsyncConnectionPool) -> None:
    first, _ = await _two_users(migrated)
    with pytest.raises(psycopg.errors.CheckViolation, match="does not sum to zero"):
        async with migrated.connection() as conn, conn.transaction():
            cursor = await conn.execute("INSERT INTO ledger_transactions (kind, reference)"
                                        " VALUES ('credit', 'test') RETURNING id")
            row = await cursor.fetchone()
            assert row is not None
            await conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                               " VALUES (%s, 1, -5), (%s, %s, 4)", (row[0], row[0], first))


async def test_the_ledger_is_append_only(migrated: AsyncConnectionPool) -> None:
    first, _ = await _two_users(migrated)
    async with migrated.connection() as conn, conn.transaction():
        cursor = await conn.execute("INSERT INTO ledger_transactions (kind, reference)"
                                    " VALUES ('credit', 'test') RETURNING id")
        row = await cursor.fetchone()
        assert row is not None
        await conn.execute("INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                           " VALUES (%s, 1, -5), (%s, %s, 5)", (row[0], row[0], first))
    for statement in ("UPDATE ledger_entries SET amount = amount * 2",
                      "DELETE FROM ledger_entries", "TRUNCATE ledger_entries CASCADE",
                      "DELETE FROM ledger_transactions"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            async with migrated.connection() as conn:
                await conn.execute(statement)


@pytest.mark.parametrize("change", ["balance = -1", "debt = -1", "balance = 5, debt = 5"])
async def test_accounts_never_hold_a_negative_or_a_balance_beside_a_debt(
        migrated: AsyncConnectionPool, change: str) -> None:
    first, _ = await _two_users(migrated)
    with pytest.raises(psycopg.errors.CheckViolation):
        async with migrated.connection() as conn:
            await conn.execute(f"UPDATE accounts SET {change} WHERE id = %s", (first,))


async def test_status_follows_the_debt(migrated: AsyncConnectionPool) -> None:
    first, _ = await _two_users(migrated)
    async with migrated.connection() as conn:
        await conn.execute("UPDATE accounts SET debt = 7 WHERE id = %s", (first,))
        cursor = await conn.execute("SELECT status FROM accounts WHERE id = %s", (first,))
        assert await cursor.fetchone() == ("debt",)
        await conn.execute("UPDATE accounts SET debt = 0 WHERE id = %s", (first,))
        cursor = await conn.execute("SELECT status FROM accounts WHERE id = %s", (first,))
        assert await cursor.fetchone() == ("active",)


async def test_a_deadlock_is_retried_until_both_transactions_commit(
        migrated: AsyncConnectionPool) -> None:
    first, second = await _two_users(migrated)
    both_hold_one = asyncio.Barrier(2)
    survivor_committed = asyncio.Event()
    attempts: list[tuple[int, int]] = []

    @db.retry_transient
    async def lock_in_order(one: int, other: int) -> None:
        attempts.append((one, other))
        if len(attempts) > 2:
            # The victim's rerun starts once the survivor has committed: started sooner, it
            # can take its first lock before the survivor gets it and deadlock once more,
            # as often as the scheduler lets it.
            await survivor_committed.wait()
        async with migrated.connection() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (one,))
            if len(attempts) <= 2:  # the first two attempts collide on purpose
                await both_hold_one.wait()
            await conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (other,))
        survivor_committed.set()

    await asyncio.wait_for(asyncio.gather(lock_in_order(first, second),
                                          lock_in_order(second, first)), timeout=60)
    assert len(attempts) == 3  # one of the two was chosen as the deadlock victim, and rerun
