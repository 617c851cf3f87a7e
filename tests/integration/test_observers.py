"""The SQL observer against a real PostgreSQL holding the seed service's tables."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from harness.errors import TargetError
from harness.model import AccountState
from harness.pg import free_port
from harness.targets.observers import SqlObserver
from harness.targets.profile import SqlObserverSpec, load_profile

pytestmark = pytest.mark.integration

SEED_SCHEMA = """
CREATE TABLE users (supabase_id uuid PRIMARY KEY, account_status text, debt_amount bigint);
CREATE TABLE token_balances (user_id uuid PRIMARY KEY, balance bigint CHECK (balance >= 0),
                             total_purchased bigint DEFAULT 0);
CREATE TABLE token_transactions (id serial PRIMARY KEY, user_id uuid, type text, tokens bigint,
                                 stripe_payment_intent_id text UNIQUE,
                                 client_idempotency_key text, related_user_id uuid,
                                 status text);
"""
FAN = "0b7e4f1c-0000-4000-8000-000000000001"
CREATOR = "0b7e4f1c-0000-4000-8000-000000000002"
STRANGER = "0b7e4f1c-0000-4000-8000-000000000003"


@pytest.fixture
def seed_database(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SEED_SCHEMA)
        conn.execute("INSERT INTO users VALUES (%s, 'debt', 40), (%s, NULL, NULL), "
                     "(%s, 'active', 0)", (FAN, CREATOR, STRANGER))
        conn.execute("INSERT INTO token_balances (user_id, balance) VALUES (%s, 0), (%s, 60), "
                     "(%s, 7)", (FAN, CREATOR, STRANGER))
        conn.execute("INSERT INTO token_transactions (user_id, type, tokens, status) VALUES "
                     "(%s, 'purchase', 100, 'completed'), (%s, 'tip', -60, 'completed'), "
                     "(%s, 'refund', -40, 'completed'), (%s, 'tip', 60, 'completed'), "
                     "(%s, 'purchase', 500, 'pending')", (FAN, FAN, FAN, CREATOR, CREATOR))
    return database_url


def _seed_spec() -> SqlObserverSpec:
    spec = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": "u.json"}).observer
    assert isinstance(spec, SqlObserverSpec)
    return spec


async def test_the_seed_profiles_query_reads_balances_debts_and_ledger_sums(
        seed_database: str) -> None:
    observer = SqlObserver(_seed_spec(), database_url=seed_database, timeout_s=5, source="seed")
    observation = await observer.observe({"fan_0": FAN, "creator_0": CREATOR})
    assert observation.accounts == {
        "fan_0": AccountState(user="fan_0", balance_tokens=0, debt_tokens=40, status="debt",
                              ledger_sum_tokens=0),
        "creator_0": AccountState(user="creator_0", balance_tokens=60, debt_tokens=0,
                                  status="active", ledger_sum_tokens=60),
    }
    assert observation.totals is None


async def test_a_query_that_writes_is_refused_by_the_read_only_transaction(
        seed_database: str) -> None:
    spec = dataclasses.replace(_seed_spec(), accounts_query=(
        "UPDATE token_balances SET balance = 1000 RETURNING user_id::text AS user_id, "
        "balance AS balance_tokens"))
    observer = SqlObserver(spec, database_url=seed_database, timeout_s=5, source="seed.toml")
    with pytest.raises(TargetError, match="read-only transaction"):
        await observer.observe({"fan_0": FAN})
    with psycopg.connect(seed_database) as conn:
        row = conn.execute("SELECT balance FROM token_balances WHERE user_id = %s",
                           (FAN,)).fetchone()
    assert row == (0,)


async def test_a_query_without_the_required_columns_says_which_it_must_give(
        seed_database: str) -> None:
    spec = dataclasses.replace(_seed_spec(), accounts_query="SELECT 1 AS one")
    observer = SqlObserver(spec, database_url=seed_database, timeout_s=5, source="seed.toml")
    with pytest.raises(TargetError, match="must give user_id and balance_tokens"):
        await observer.observe({"fan_0": FAN})


async def test_a_totals_query_fills_the_totals(seed_database: str) -> None:
    spec = dataclasses.replace(_seed_spec(), totals_query=(
        "SELECT 100 AS minted_tokens, 40 AS clawed_back_tokens, SUM(balance) AS balances_tokens,"
        " 40 AS debts_tokens, 0 AS drift_accounts_count FROM token_balances"))
    observer = SqlObserver(spec, database_url=seed_database, timeout_s=5, source="seed.toml")
    observation = await observer.observe({"fan_0": FAN})
    assert observation.totals is not None
    assert observation.totals.balances_tokens == 67  # SUM() is a Decimal; read as an int


async def test_an_unreachable_database_is_a_target_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    observer = SqlObserver(_seed_spec(), database_url=url, timeout_s=2, source="seed.toml")
    with pytest.raises(TargetError, match="cannot observe the end state"):
        await observer.observe({"fan_0": FAN})
