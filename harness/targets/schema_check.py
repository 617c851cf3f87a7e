"""The schema check of an SQL-observed target: what its deployment guide asks to verify.

Before a run against a profile with ``[observer] kind = "sql"``, and in ``tokenchaos
doctor``, the target's catalog is read (never its rows) and four things are checked:

- the balance column is ``BIGINT`` (a ``numeric``, ``real`` or ``integer`` column rounds,
  loses precision or overflows: tokens are whole numbers up to 2^63);
- a ``CHECK (balance >= 0)`` constraint guards it (the database, not only the code,
  refuses an overdraft);
- one row per payment intent is enforced by a unique constraint or a unique index on the
  intent column alone (so a webhook delivered twice cannot credit twice);
- that constraint or index can be an ``ON CONFLICT`` arbiter: PostgreSQL refuses a
  ``DEFERRABLE`` one ("ON CONFLICT does not support deferrable unique constraints"), so a
  service that upserts on it errors on every call.

The profile names the tables and columns (``balances_table``, ``balance_column``,
``intents_table``, ``intent_column`` in ``[observer]``). ``read_schema_facts`` is the only
I/O here (catalog queries in a READ ONLY transaction); ``schema_findings`` turns those
facts into findings and ``schema_verdict`` into a verdict, both pure. A finding is a
``defect`` of the target, or ``cannot_check`` (the table or column the profile names is
not there: the profile or the database URL is wrong).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from harness.errors import TargetError
from harness.model import Anomaly, Verdict
from harness.targets.profile import SchemaNames

__all__ = [
    "SCHEMA_CHECKER",
    "ColumnFacts",
    "SchemaFacts",
    "SchemaFinding",
    "SchemaNames",
    "UniqueFacts",
    "check_schema",
    "read_schema_facts",
    "schema_findings",
    "schema_verdict",
]

SCHEMA_CHECKER = "schema"  # the verdict's name beside the checkers' verdicts

Severity = Literal["defect", "cannot_check"]

_BIGINT = "bigint"
# "balance >= 0", as pg_get_constraintdef writes it: CHECK ((balance >= 0)), possibly with
# quotes, casts ((0)::bigint) or written the other way round (0 <= balance).
_NUMBER_ZERO = r"\(*0\)*(?:::[a-z ]+)?"


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnFacts:
    """One column as the catalog describes it; ``type_name`` None: no such column."""

    table: str
    column: str
    table_exists: bool
    type_name: str | None  # format_type(): "bigint", "numeric(12,2)", "integer", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueFacts:
    """A unique constraint or unique index of the intents table."""

    name: str
    columns: tuple[str, ...]  # () for an expression index
    immediate: bool  # False: DEFERRABLE (pg_index.indimmediate)
    partial: bool  # a WHERE clause: ON CONFLICT must repeat it to use this index
    constraint: bool  # a constraint (UNIQUE, PRIMARY KEY), not a bare index


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaFacts:
    """Everything the findings are computed from."""

    balance: ColumnFacts
    balance_checks: tuple[str, ...]  # pg_get_constraintdef of the table's CHECKs
    intent: ColumnFacts
    intent_uniques: tuple[UniqueFacts, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaFinding:
    """One thing wrong with the schema, in plain words."""

    kind: str  # balance_not_bigint, no_balance_check, intent_not_unique, ...
    severity: Severity
    text: str


async def check_schema(database_url: str, names: SchemaNames, *, timeout_s: float,
                       source: str) -> tuple[SchemaFinding, ...]:
    """Read the catalog and return the findings (empty: the schema is as it should be).

    Raises:
        TargetError: the database cannot be reached or the catalog queries fail.
    """
    facts = await read_schema_facts(database_url, names, timeout_s=timeout_s, source=source)
    return schema_findings(facts)


def schema_findings(facts: SchemaFacts) -> tuple[SchemaFinding, ...]:
    """The findings about balances and intents, balances first. Pure."""
    return (*_balance_findings(facts), *_intent_findings(facts))


def schema_verdict(findings: Sequence[SchemaFinding]) -> Verdict:
    """The ``schema`` verdict: False on a defect, unknown when it could not be checked.

    A defect is a broken invariant of the target's own storage (whole, never-negative
    balances; one credit per intent, enforceable by the upsert the service runs), so it
    breaks the run like any checker that did not hold.
    """
    defects = [f for f in findings if f.severity == "defect"]
    unchecked = [f for f in findings if f.severity == "cannot_check"]
    counts = {"defects": len(defects), "not_checked": len(unchecked)}
    if defects:
        anomalies = tuple(Anomaly(kind=f.kind, event_indexes=(), expected="as the deployment "
                                  "guide asks", observed=f.kind, explanation=f.text)
                          for f in defects)
        return Verdict(valid=False, counts=counts, anomalies=anomalies)
    if unchecked:
        return Verdict(valid="unknown", counts=counts,
                       note="; ".join(f.text for f in unchecked))
    return Verdict(valid=True, counts=counts)


# ---------------------------------------------------------------------------------------
# Findings.


def _balance_findings(facts: SchemaFacts) -> list[SchemaFinding]:
    column = facts.balance
    missing = _missing(column, "balances_table", "balance_column")
    if missing is not None:
        return [missing]
    findings = []
    if column.type_name != _BIGINT:
        findings.append(SchemaFinding(
            kind="balance_not_bigint", severity="defect",
            text=f"{column.table}.{column.column} is {column.type_name}, not bigint: token "
                 "balances are whole numbers; a numeric or floating column lets fractions in "
                 "and rounds, an integer one overflows at 2^31 (ALTER COLUMN ... TYPE bigint)"))
    if not any(_is_non_negative_check(text, column.column) for text in facts.balance_checks):
        shown = "; ".join(facts.balance_checks) or "none"
        findings.append(SchemaFinding(
            kind="no_balance_check", severity="defect",
            text=f"{column.table}.{column.column} has no CHECK ({column.column} >= 0): the "
                 "database would store a negative balance if the service's own check races "
                 f"(its CHECK constraints: {shown})"))
    return findings


def _intent_findings(facts: SchemaFacts) -> list[SchemaFinding]:
    column = facts.intent
    missing = _missing(column, "intents_table", "intent_column")
    if missing is not None:
        return [missing]
    alone = [u for u in facts.intent_uniques if u.columns == (column.column,)]
    where = f"{column.table}.{column.column}"
    if not alone:
        others = [u for u in facts.intent_uniques if column.column in u.columns]
        also = "" if not others else " (only together with other columns: " + ", ".join(
            f"{u.name} on ({', '.join(u.columns)})" for u in others) + ")"
        return [SchemaFinding(
            kind="intent_not_unique", severity="defect",
            text=f"{where} is not unique{also}: nothing in the database stops two rows for "
                 "one payment intent, so a webhook delivered twice can credit twice (add "
                 f"UNIQUE ({column.column}))")]
    deferrable = [u for u in alone if not u.immediate]
    if deferrable:
        names = ", ".join(u.name for u in deferrable)
        return [SchemaFinding(
            kind="intent_unique_deferrable", severity="defect",
            text=f"the unique constraint {names} on {where} is DEFERRABLE: PostgreSQL refuses "
                 "it as an ON CONFLICT arbiter, so every INSERT ... ON CONFLICT "
                 f"({column.column}) the service runs (its hardened purchase path) fails "
                 "with an error; declare it NOT DEFERRABLE")]
    return []


def _missing(column: ColumnFacts, table_key: str, column_key: str) -> SchemaFinding | None:
    if not column.table_exists:
        return SchemaFinding(
            kind="table_not_found", severity="cannot_check",
            text=f"there is no table {column.table!r} in this database: fix [observer] "
                 f"{table_key} in the profile, or point it at the target's database")
    if column.type_name is None:
        return SchemaFinding(
            kind="column_not_found", severity="cannot_check",
            text=f"table {column.table} has no column {column.column!r}: fix [observer] "
                 f"{column_key} in the profile")
    return None


def _is_non_negative_check(definition: str, column: str) -> bool:
    """Whether a CHECK definition is (or contains, ANDed) ``column >= 0``."""
    text = definition.lower().replace('"', "")
    name = re.escape(column.lower())
    forward = rf"(?<![a-z0-9_$]){name}\)*\s*>=\s*{_NUMBER_ZERO}(?![0-9.])"
    backward = rf"(?<![0-9.]){_NUMBER_ZERO}\s*<=\s*\(*{name}(?![a-z0-9_$])"
    if " or " in text:  # "balance >= 0 OR ..." does not guard the balance
        return False
    return re.search(forward, text) is not None or re.search(backward, text) is not None


# ---------------------------------------------------------------------------------------
# The catalog (the only I/O).

_COLUMN_SQL = """
SELECT c.oid IS NOT NULL AS table_exists,
       format_type(a.atttypid, a.atttypmod) AS type_name
  FROM (SELECT to_regclass(%(table)s) AS oid) r
  LEFT JOIN pg_class c ON c.oid = r.oid
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %(column)s
                          AND a.attnum > 0 AND NOT a.attisdropped
"""

_CHECKS_SQL = """
SELECT pg_get_constraintdef(oid) AS definition
  FROM pg_constraint
 WHERE conrelid = to_regclass(%(table)s) AND contype = 'c'
 ORDER BY conname
"""

_UNIQUES_SQL = """
SELECT COALESCE(con.conname, ic.relname) AS name,
       ARRAY(SELECT a.attname::text
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              ORDER BY k.position) AS columns,
       i.indimmediate AS immediate,
       i.indpred IS NOT NULL AS partial,
       i.indexprs IS NOT NULL AS expression,
       con.oid IS NOT NULL AS is_constraint
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('u', 'p')
 WHERE i.indrelid = to_regclass(%(table)s) AND i.indisunique
 ORDER BY name
"""


async def read_schema_facts(database_url: str, names: SchemaNames, *, timeout_s: float,
                            source: str) -> SchemaFacts:
    """Read what ``schema_findings`` needs from the catalog, in a READ ONLY transaction.

    Raises:
        TargetError: the database cannot be reached or a catalog query fails.
    """
    try:
        async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=False,
                connect_timeout=max(1, int(timeout_s))) as conn, conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute("SELECT set_config('statement_timeout', %s, true)",
                               (str(int(timeout_s * 1000)),))
            balance = await _column(conn, names.balances_table, names.balance_column)
            checks = await _rows(conn, _CHECKS_SQL, {"table": names.balances_table}) \
                if balance.table_exists else []
            intent = await _column(conn, names.intents_table, names.intent_column)
            uniques = await _rows(conn, _UNIQUES_SQL, {"table": names.intents_table}) \
                if intent.table_exists else []
    except psycopg.Error as exc:
        raise TargetError(f"cannot check the schema: the SQL observer of {source} failed: "
                          f"{type(exc).__name__}: {str(exc).strip()}") from exc
    return SchemaFacts(
        balance=balance, balance_checks=tuple(str(row[0]) for row in checks), intent=intent,
        intent_uniques=tuple(UniqueFacts(
            name=str(row[0]), columns=() if row[4] else tuple(row[1]), immediate=bool(row[2]),
            partial=bool(row[3]), constraint=bool(row[5])) for row in uniques))


async def _column(conn: psycopg.AsyncConnection[Any], table: str, column: str) -> ColumnFacts:
    rows = await _rows(conn, _COLUMN_SQL, {"table": table, "column": column})
    exists, type_name = (bool(rows[0][0]), rows[0][1]) if rows else (False, None)
    return ColumnFacts(table=table, column=column, table_exists=exists,
                       type_name=str(type_name) if type_name is not None else None)


async def _rows(conn: psycopg.AsyncConnection[Any], query: str,
                params: dict[str, str]) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(query, params)
        return list(await cursor.fetchall())
