"""The schema check against a real PostgreSQL: a correct schema passes, each defect is named."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from harness.errors import TargetError
from harness.pg import free_port
from harness.targets.observers import SqlObserver
from harness.targets.profile import SchemaNames, SqlObserverSpec
from harness.targets.schema_check import check_schema, schema_verdict

pytestmark = pytest.mark.integration

SEED_NAMES = SchemaNames(balances_table="token_balances", balance_column="balance",
                         intents_table="token_transactions",
                         intent_column="stripe_payment_intent_id")

CORRECT = """
CREATE TABLE token_balances (user_id uuid PRIMARY KEY,
                             balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0));
CREATE TABLE token_transactions (id serial PRIMARY KEY, user_id uuid, tokens bigint,
                                 stripe_payment_intent_id text UNIQUE);
"""


async def _findings(database_url: str, schema: str,
                    names: SchemaNames = SEED_NAMES) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(schema.encode())
    findings = await check_schema(database_url, names, timeout_s=5, source="test.toml")
    return {finding.kind: finding.text for finding in findings}


async def test_a_correct_schema_has_no_finding_and_its_verdict_holds(database_url: str) -> None:
    assert await _findings(database_url, CORRECT) == {}
    assert schema_verdict(()).valid is True


async def test_the_reference_services_own_schema_passes(database_url: str) -> None:
    migrations = sorted((Path(__file__).parents[2] / "reference_impl" / "migrations")
                        .glob("*.sql"))
    schema = "\n".join(path.read_text(encoding="utf-8") for path in migrations)
    names = SchemaNames(balances_table="accounts", balance_column="balance",
                        intents_table="payments", intent_column="intent_id")
    assert await _findings(database_url, schema, names) == {}


async def test_numeric_balances_are_reported_with_the_type_found(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "balance bigint NOT NULL", "balance numeric(12,2) NOT NULL"))
    assert list(findings) == ["balance_not_bigint"]
    assert "token_balances.balance is numeric(12,2), not bigint" in findings["balance_not_bigint"]


async def test_integer_balances_are_not_bigint_either(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "balance bigint NOT NULL", "balance integer NOT NULL"))
    assert "is integer, not bigint" in findings["balance_not_bigint"]


async def test_a_missing_balance_check_is_reported(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(" CHECK (balance >= 0)", ""))
    assert list(findings) == ["no_balance_check"]
    assert "has no CHECK (balance >= 0)" in findings["no_balance_check"]


async def test_a_check_that_allows_negatives_does_not_count(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "CHECK (balance >= 0)", "CHECK (balance >= -100)"))
    assert list(findings) == ["no_balance_check"]
    assert "its CHECK constraints: CHECK ((balance >= '-100'::integer))" in \
        findings["no_balance_check"]


async def test_a_check_written_the_other_way_round_counts(database_url: str) -> None:
    assert await _findings(database_url, CORRECT.replace(
        "CHECK (balance >= 0)", "CHECK (0 <= balance)")) == {}


async def test_no_unique_on_the_intent_column_is_reported(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "stripe_payment_intent_id text UNIQUE", "stripe_payment_intent_id text"))
    assert list(findings) == ["intent_not_unique"]
    assert "token_transactions.stripe_payment_intent_id is not unique" in \
        findings["intent_not_unique"]


async def test_a_unique_over_two_columns_is_not_one_row_per_intent(database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "stripe_payment_intent_id text UNIQUE",
        "stripe_payment_intent_id text, UNIQUE (user_id, stripe_payment_intent_id)"))
    assert "only together with other columns" in findings["intent_not_unique"]


async def test_a_unique_index_counts_as_one_row_per_intent(database_url: str) -> None:
    schema = CORRECT.replace("stripe_payment_intent_id text UNIQUE",
                             "stripe_payment_intent_id text") + \
        "CREATE UNIQUE INDEX one_per_intent ON token_transactions (stripe_payment_intent_id);"
    assert await _findings(database_url, schema) == {}


async def test_a_deferrable_unique_is_reported_as_unusable_by_on_conflict(
        database_url: str) -> None:
    findings = await _findings(database_url, CORRECT.replace(
        "stripe_payment_intent_id text UNIQUE",
        "stripe_payment_intent_id text CONSTRAINT one_per_intent UNIQUE "
        "DEFERRABLE INITIALLY IMMEDIATE"))
    assert list(findings) == ["intent_unique_deferrable"]
    text = findings["intent_unique_deferrable"]
    assert "one_per_intent" in text
    assert "DEFERRABLE" in text
    assert "ON CONFLICT" in text
    # What the finding says is what PostgreSQL does: the upsert fails.
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="deferrable"):
        conn.execute("INSERT INTO token_transactions (stripe_payment_intent_id) VALUES ('pi_1')"
                     " ON CONFLICT (stripe_payment_intent_id) DO NOTHING")


async def test_a_deferrable_unique_is_a_defect_even_beside_an_immediate_index(
        database_url: str) -> None:
    schema = CORRECT.replace(
        "stripe_payment_intent_id text UNIQUE",
        "stripe_payment_intent_id text CONSTRAINT one_per_intent UNIQUE DEFERRABLE") + \
        "CREATE UNIQUE INDEX also_one ON token_transactions (stripe_payment_intent_id);"
    assert list(await _findings(database_url, schema)) == ["intent_unique_deferrable"]


async def test_every_defect_of_one_schema_is_reported_and_breaks_the_verdict(
        database_url: str) -> None:
    schema = """
    CREATE TABLE token_balances (user_id uuid PRIMARY KEY, balance double precision);
    CREATE TABLE token_transactions (id serial PRIMARY KEY, stripe_payment_intent_id text);
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(schema.encode())
    findings = await check_schema(database_url, SEED_NAMES, timeout_s=5, source="t")
    assert [f.kind for f in findings] == ["balance_not_bigint", "no_balance_check",
                                          "intent_not_unique"]
    verdict = schema_verdict(findings)
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == [f.kind for f in findings]


async def test_a_table_the_profile_names_wrongly_cannot_be_checked(database_url: str) -> None:
    names = SchemaNames(balances_table="balances", balance_column="balance",
                        intents_table="token_transactions", intent_column="intent")
    findings = await _findings(database_url, CORRECT, names)
    assert "there is no table 'balances'" in findings["table_not_found"]
    assert "fix [observer] balances_table" in findings["table_not_found"]
    assert "has no column 'intent'" in findings["column_not_found"]
    verdict = schema_verdict(await check_schema(database_url, names, timeout_s=5, source="t"))
    assert verdict.valid == "unknown"


async def test_the_sql_observer_runs_the_check_on_the_tables_its_profile_names(
        database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CORRECT.replace(" CHECK (balance >= 0)", "").encode())
    spec = SqlObserverSpec(database_url=None, database_url_env=None,
                           accounts_query="SELECT 1", schema=SEED_NAMES)
    observer = SqlObserver(spec, database_url=database_url, timeout_s=5, source="t.toml")
    assert [f.kind for f in await observer.check_schema()] == ["no_balance_check"]


async def test_an_unreachable_database_is_a_target_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(TargetError, match="cannot check the schema"):
        await check_schema(url, SEED_NAMES, timeout_s=2, source="t.toml")
