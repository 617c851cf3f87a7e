"""A ledger write that leaves the account rows alone, for flaws that set balances themselves.

The correct service moves balances only through ``ledger.post``, which writes the entries
and the rows in one statement. A service with a read-modify-write bug still keeps a
journal: it writes the entries here and the balance it computed in Python separately.
The entries balance (the schema's deferred trigger checks it), so the journal is right and
the balance column is what drifts. Only flaws use this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import AsyncConnection

from reference_impl.ledger import TransactionKind

__all__ = ["journal"]


async def journal(conn: AsyncConnection, *, kind: TransactionKind, reference: str,
                  entries: Mapping[int, int]) -> int:
    """Write one ledger transaction with these entries (account id -> tokens); its id."""
    nonzero = {account_id: amount for account_id, amount in entries.items() if amount}
    assert nonzero, "a journal entry moves something"
    assert sum(nonzero.values()) == 0, f"unbalanced entries: {nonzero}"
    cursor = await conn.execute(
        "WITH tx AS (INSERT INTO ledger_transactions (kind, reference) VALUES (%s, %s)"
        " RETURNING id), entries AS (INSERT INTO ledger_entries (transaction_id, account_id,"
        " amount) SELECT tx.id, e.account_id, e.amount FROM tx,"
        " unnest(%s::bigint[], %s::bigint[]) AS e (account_id, amount))"
        " SELECT id FROM tx",
        (str(kind), reference, list(nonzero), list(nonzero.values())))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
