"""The schema check's pure half: findings from catalog facts, and the profile's four names."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.targets.profile import SqlObserverSpec, load_profile
from harness.targets.schema_check import (
    ColumnFacts,
    SchemaFacts,
    UniqueFacts,
    schema_findings,
    schema_verdict,
)
from tests.unit.test_profile_keys import parse_with


def _facts(*, type_name: str = "bigint", checks: tuple[str, ...] = ("CHECK ((balance >= 0))",),
           uniques: tuple[UniqueFacts, ...] = (UniqueFacts(
               name="t_intent_key", columns=("intent",), immediate=True, partial=False,
               constraint=True),)) -> SchemaFacts:
    return SchemaFacts(
        balance=ColumnFacts(table="b", column="balance", table_exists=True, type_name=type_name),
        balance_checks=checks,
        intent=ColumnFacts(table="t", column="intent", table_exists=True, type_name="text"),
        intent_uniques=uniques)


def test_a_correct_schema_has_no_finding() -> None:
    assert schema_findings(_facts()) == ()


@pytest.mark.parametrize("definition", ["CHECK ((balance >= (0)::bigint))",
                                        "CHECK (((balance >= 0) AND (debt >= 0)))",
                                        'CHECK (("balance" >= 0))', "CHECK ((0 <= balance))"])
def test_non_negative_checks_are_recognised_however_postgres_writes_them(
        definition: str) -> None:
    assert schema_findings(_facts(checks=(definition,))) == ()


@pytest.mark.parametrize("definition", ["CHECK ((balance >= '-1'::integer))",
                                        "CHECK (((balance >= 0) OR (overdraft)))",
                                        "CHECK ((other_balance >= 0))"])
def test_checks_that_do_not_guard_the_balance_are_not_enough(definition: str) -> None:
    kinds = [f.kind for f in schema_findings(_facts(checks=(definition,)))]
    assert kinds == ["no_balance_check"]


def test_a_deferrable_unique_is_a_defect_and_the_verdict_breaks() -> None:
    findings = schema_findings(_facts(uniques=(UniqueFacts(
        name="u", columns=("intent",), immediate=False, partial=False, constraint=True),)))
    assert [f.kind for f in findings] == ["intent_unique_deferrable"]
    assert schema_verdict(findings).valid is False


def test_the_seed_profile_names_its_tables_for_the_check() -> None:
    observer = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": "u.json"}).observer
    assert isinstance(observer, SqlObserverSpec)
    assert observer.schema is not None
    assert observer.schema.intent_column == "stripe_payment_intent_id"


def test_the_schema_names_come_all_together_or_not_at_all() -> None:
    with pytest.raises(UsageError, match=r"\[observer\] balance_column is missing; the schema "
                                         r"check needs all of"):
        parse_with(observer={"balances_table": "token_balances"})


def test_a_schema_name_must_be_a_plain_sql_name() -> None:
    with pytest.raises(UsageError, match=r"intent_column = 'id; DROP TABLE x' must be a plain"):
        parse_with(observer={"balances_table": "b", "balance_column": "balance",
                             "intents_table": "t", "intent_column": "id; DROP TABLE x"})
