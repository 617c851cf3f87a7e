"""The schema check as a run makes it: before the first scenario, against a real database.

``schema_step`` is what ``run_plan`` calls once the target is up; here it runs with a real
``SqlObserver`` on a real PostgreSQL whose intents table declares its unique constraint
DEFERRABLE, as the seed's own migration does.
"""

from __future__ import annotations

import httpx
import psycopg
import pytest

from harness.campaign import run_validity, schema_step
from harness.judge import exit_code_for
from harness.model import Verdict
from harness.pg import free_port
from harness.report.record import ScenarioRecord
from harness.targets.observers import SqlObserver
from harness.targets.profile import SchemaNames, SqlObserverSpec, load_profile
from harness.targets.session import TargetSession

pytestmark = pytest.mark.integration

NAMES = SchemaNames(balances_table="token_balances", balance_column="balance",
                    intents_table="token_transactions",
                    intent_column="stripe_payment_intent_id")

SCHEMA = """
CREATE TABLE token_balances (user_id uuid PRIMARY KEY,
                             balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0));
CREATE TABLE token_transactions (id serial PRIMARY KEY, user_id uuid, tokens bigint,
                                 stripe_payment_intent_id text {unique});
"""

HELD = ScenarioRecord(name="tip-cycle", seed=1, params={}, started_ns=0, duration_s=1.0,
                      ops_count=10, stats={}, reproduce="tokenchaos run",
                      verdicts={"conservation": Verdict(valid=True)})


async def _step(database_url: str, unique: str,
                names: SchemaNames = NAMES) -> tuple[list[str], Verdict | None]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA.format(unique=unique).encode())
    spec = SqlObserverSpec(database_url=None, database_url_env=None,
                           accounts_query="SELECT 1", schema=names)
    lines: list[str] = []
    async with httpx.AsyncClient() as client:
        session = TargetSession(
            profile=load_profile("reference"), base_url="http://127.0.0.1:9", client=client,
            observer=SqlObserver(spec, database_url=database_url, timeout_s=5,
                                 source="shop.toml"))
        verdict = await schema_step(session, lines.append)
    return lines, verdict


async def test_a_deferrable_intent_unique_is_announced_and_breaks_the_run(
        database_url: str) -> None:
    lines, verdict = await _step(
        database_url, "CONSTRAINT one_per_intent UNIQUE DEFERRABLE INITIALLY IMMEDIATE")
    assert len(lines) == 1
    assert lines[0].startswith("tokenchaos: schema DEFECT: the unique constraint "
                               "one_per_intent on token_transactions.stripe_payment_intent_id"
                               " is DEFERRABLE")
    assert "ON CONFLICT" in lines[0]
    assert verdict is not None
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["intent_unique_deferrable"]
    valid = run_validity([HELD], verdict)  # every scenario held; the schema did not
    assert valid is False
    assert exit_code_for([valid]) == 1


async def test_a_correct_schema_is_announced_as_held_and_does_not_change_the_run(
        database_url: str) -> None:
    lines, verdict = await _step(database_url, "UNIQUE")
    assert verdict is not None
    assert verdict.valid is True
    assert lines == ["tokenchaos: schema: balances are bigint with CHECK (balance >= 0), and "
                     "one row per payment intent is enforced by a constraint ON CONFLICT "
                     "can use"]
    assert exit_code_for([run_validity([HELD], verdict)]) == 0


async def test_a_table_the_profile_names_wrongly_leaves_the_run_unknown(
        database_url: str) -> None:
    names = SchemaNames(balances_table="balances", balance_column="balance",
                        intents_table="token_transactions",
                        intent_column="stripe_payment_intent_id")
    lines, verdict = await _step(database_url, "UNIQUE", names)
    assert lines == ["tokenchaos: schema NOT CHECKED: there is no table 'balances' in this "
                     "database: fix [observer] balances_table in the profile, or point it at "
                     "the target's database"]
    assert verdict is not None
    assert verdict.valid == "unknown"
    assert exit_code_for([run_validity([HELD], verdict)]) == 2


async def test_an_unreachable_database_is_announced_and_leaves_the_run_unknown() -> None:
    spec = SqlObserverSpec(database_url=None, database_url_env=None,
                           accounts_query="SELECT 1", schema=NAMES)
    lines: list[str] = []
    async with httpx.AsyncClient() as client:
        session = TargetSession(
            profile=load_profile("reference"), base_url="http://127.0.0.1:9", client=client,
            observer=SqlObserver(spec, database_url=f"postgresql://postgres@127.0.0.1:"
                                 f"{free_port()}/nowhere", timeout_s=2, source="shop.toml"))
        verdict = await schema_step(session, lines.append)
    assert verdict is not None
    assert verdict.valid == "unknown"
    assert len(lines) == 1
    assert lines[0].startswith("tokenchaos: schema NOT CHECKED: cannot check the schema")


async def test_an_sql_observer_naming_no_tables_is_not_checked(database_url: str) -> None:
    spec = SqlObserverSpec(database_url=None, database_url_env=None,
                           accounts_query="SELECT 1", schema=None)
    lines: list[str] = []
    async with httpx.AsyncClient() as client:
        session = TargetSession(
            profile=load_profile("reference"), base_url="http://127.0.0.1:9", client=client,
            observer=SqlObserver(spec, database_url=database_url, timeout_s=5,
                                 source="shop.toml"))
        assert await schema_step(session, lines.append) is None
    assert lines == []
