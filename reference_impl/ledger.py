"""Moving tokens inside an open transaction: lock accounts, then post balanced movements.

Every change of a balance or a debt goes through ``post``, which writes one ledger
transaction whose entries sum to zero, the debt journal, and the account rows, in one
statement. So ``balance == sum(ledger entries)`` and ``debt == sum(debt entries)`` hold for
every user account by construction, and the deferred trigger of the schema checks the
sum-to-zero rule again at commit.

Two system accounts close the books (their ``balance`` column is not maintained; their
ledger sums are the truth, which keeps them from becoming hot rows):

- ``ISSUANCE_ACCOUNT_ID``: the source of every credit from a payment;
- ``CLAWBACK_ACCOUNT_ID``: the sink of every token taken back, and of every token that
  repays debt; the source of a dispute's reinstatement.

Callers lock the user accounts they touch with ``lock_accounts`` (always in id order, so
two transactions never wait for each other in a cycle) before calling the movers. This
module never opens or commits a transaction, and never decides whether a spend is allowed:
that is the service's job, made on the locked rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from psycopg import AsyncConnection

from reference_impl.money import split_clawback, split_credit

__all__ = [
    "CLAWBACK_ACCOUNT_ID",
    "ISSUANCE_ACCOUNT_ID",
    "Account",
    "Movement",
    "TransactionKind",
    "claw_back",
    "credit",
    "lock_accounts",
    "post",
    "transfer",
]

ISSUANCE_ACCOUNT_ID = 1  # fixed by the first migration
CLAWBACK_ACCOUNT_ID = 2
SYSTEM_ACCOUNT_IDS = frozenset({ISSUANCE_ACCOUNT_ID, CLAWBACK_ACCOUNT_ID})


class TransactionKind(StrEnum):
    """Why tokens moved; the ``kind`` of a ledger transaction."""

    CREDIT = "credit"  # a payment succeeded: issuance -> user
    CLAWBACK = "clawback"  # a refund or dispute: user -> clawback (the shortfall is debt)
    REINSTATEMENT = "reinstatement"  # a dispute won: clawback -> user
    TIP = "tip"
    CALL_CHARGE = "call_charge"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A user account as read under its row lock (or as ``post`` left it)."""

    id: int
    kind: str
    balance_tokens: int
    debt_tokens: int

    @property
    def status(self) -> str:
        return "debt" if self.debt_tokens > 0 else "active"


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """What ``post`` wrote: the ledger transaction id and the accounts as they are now."""

    transaction_id: int
    accounts: Mapping[int, Account]


async def lock_accounts(conn: AsyncConnection, account_ids: Iterable[int]) -> dict[int, Account]:
    """Lock these user accounts in id order and read them; system or unknown ids are absent.

    ``ORDER BY`` with a locking clause makes PostgreSQL lock the rows in that order, so two
    transactions locking overlapping sets never wait for each other in a cycle (the tip
    from A to B and the tip from B to A at once). ``FOR NO KEY UPDATE`` is the lock an
    UPDATE of non-key columns takes anyway, and it does not block the foreign-key checks
    of other transactions' inserts.
    """
    ids = sorted(set(account_ids))
    assert ids, "lock at least one account"
    cursor = await conn.execute(
        "SELECT id, kind, balance, debt FROM accounts"
        " WHERE id = ANY(%s) AND kind <> 'system' ORDER BY id FOR NO KEY UPDATE",
        (ids,))
    rows = await cursor.fetchall()
    return {int(row[0]): Account(id=int(row[0]), kind=str(row[1]), balance_tokens=int(row[2]),
                                 debt_tokens=int(row[3])) for row in rows}


# One round trip: the transaction, its entries, the debt journal and the account rows.
_POST_SQL = """
WITH tx AS (
    INSERT INTO ledger_transactions (kind, reference) VALUES (%(kind)s, %(reference)s)
    RETURNING id
), entries AS (
    INSERT INTO ledger_entries (transaction_id, account_id, amount)
    SELECT tx.id, e.account_id, e.amount
    FROM tx, unnest(%(entry_accounts)s::bigint[], %(entry_amounts)s::bigint[])
        AS e (account_id, amount)
), debts AS (
    INSERT INTO debt_entries (transaction_id, account_id, amount)
    SELECT tx.id, d.account_id, d.amount
    FROM tx, unnest(%(debt_accounts)s::bigint[], %(debt_amounts)s::bigint[])
        AS d (account_id, amount)
), moved AS (
    UPDATE accounts AS a
    SET balance = a.balance + m.balance_change, debt = a.debt + m.debt_change
    FROM unnest(%(move_accounts)s::bigint[], %(move_balances)s::bigint[],
                %(move_debts)s::bigint[]) AS m (account_id, balance_change, debt_change)
    WHERE a.id = m.account_id AND a.kind <> 'system'
    RETURNING a.id, a.kind, a.balance, a.debt
)
SELECT (SELECT id FROM tx), moved.id, moved.kind, moved.balance, moved.debt FROM moved
"""


async def post(conn: AsyncConnection, *, kind: TransactionKind, reference: str,
               balance_changes: Mapping[int, int],
               debt_changes: Mapping[int, int]) -> Movement:
    """Write one balanced movement: ledger entries, debt entries, and the account rows.

    Args:
        kind: why the tokens move.
        reference: what caused it (an intent id, a tip's key, a call and minute).
        balance_changes: account id -> tokens added (negative: removed); must sum to zero.
        debt_changes: user account id -> change of its debt (not part of the ledger sum).

    Returns:
        The transaction id and every user account touched, as it is after the movement.
    """
    entries = {account_id: amount for account_id, amount in balance_changes.items() if amount}
    debts = {account_id: amount for account_id, amount in debt_changes.items() if amount}
    assert sum(entries.values()) == 0, f"unbalanced movement: {entries}"
    assert SYSTEM_ACCOUNT_IDS.isdisjoint(debts), f"system accounts carry no debt: {debts}"
    moved_ids = sorted((set(entries) | set(debts)) - SYSTEM_ACCOUNT_IDS)
    assert moved_ids, "a movement must touch a user account"
    cursor = await conn.execute(_POST_SQL, {
        "kind": str(kind), "reference": reference,
        "entry_accounts": list(entries), "entry_amounts": list(entries.values()),
        "debt_accounts": list(debts), "debt_amounts": list(debts.values()),
        "move_accounts": moved_ids,
        "move_balances": [entries.get(account_id, 0) for account_id in moved_ids],
        "move_debts": [debts.get(account_id, 0) for account_id in moved_ids],
    })
    rows = await cursor.fetchall()
    assert len(rows) == len(moved_ids), f"accounts vanished while locked: {moved_ids}"
    accounts = {int(row[1]): Account(id=int(row[1]), kind=str(row[2]),
                                     balance_tokens=int(row[3]), debt_tokens=int(row[4]))
                for row in rows}
    return Movement(transaction_id=int(rows[0][0]), accounts=accounts)


async def credit(conn: AsyncConnection, account: Account, *, amount_tokens: int,
                 kind: TransactionKind, reference: str) -> Movement:
    """Credit a locked account, paying its debt first.

    A payment's credit comes from the issuance account; a reinstatement (a dispute won)
    comes back from the clawback account. The part that repays debt goes to the clawback
    account, where the debt was owed.
    """
    assert amount_tokens > 0, amount_tokens
    assert kind in (TransactionKind.CREDIT, TransactionKind.REINSTATEMENT), kind
    source_id = ISSUANCE_ACCOUNT_ID if kind == TransactionKind.CREDIT else CLAWBACK_ACCOUNT_ID
    split = split_credit(amount_tokens=amount_tokens, debt_tokens=account.debt_tokens)
    changes: defaultdict[int, int] = defaultdict(int)
    changes[source_id] -= amount_tokens
    changes[account.id] += split.balance_tokens
    changes[CLAWBACK_ACCOUNT_ID] += split.debt_tokens
    return await post(conn, kind=kind, reference=reference, balance_changes=changes,
                      debt_changes={account.id: -split.debt_tokens})


async def claw_back(conn: AsyncConnection, account: Account, *, amount_tokens: int,
                    reference: str) -> Movement:
    """Take tokens back from a locked account: the balance first, the rest as debt."""
    assert amount_tokens > 0, amount_tokens
    split = split_clawback(amount_tokens=amount_tokens, balance_tokens=account.balance_tokens)
    return await post(conn, kind=TransactionKind.CLAWBACK, reference=reference,
                      balance_changes={account.id: -split.balance_tokens,
                                       CLAWBACK_ACCOUNT_ID: split.balance_tokens},
                      debt_changes={account.id: split.debt_tokens})


async def transfer(conn: AsyncConnection, *, sender: Account, recipient: Account,
                   amount_tokens: int, kind: TransactionKind, reference: str) -> Movement:
    """Move tokens between two locked user accounts; the recipient's debt is paid first.

    The caller has checked that the sender's balance covers the amount (an assertion here:
    the CHECK constraint would refuse it anyway).
    """
    assert kind in (TransactionKind.TIP, TransactionKind.CALL_CHARGE), kind
    assert amount_tokens > 0, amount_tokens
    assert sender.id != recipient.id, sender.id
    assert sender.balance_tokens >= amount_tokens, (sender, amount_tokens)
    split = split_credit(amount_tokens=amount_tokens, debt_tokens=recipient.debt_tokens)
    changes: defaultdict[int, int] = defaultdict(int)
    changes[sender.id] -= amount_tokens
    changes[recipient.id] += split.balance_tokens
    changes[CLAWBACK_ACCOUNT_ID] += split.debt_tokens
    return await post(conn, kind=kind, reference=reference, balance_changes=changes,
                      debt_changes={recipient.id: -split.debt_tokens})
