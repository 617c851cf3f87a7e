"""The foreign service's money rules and its journal: prices, splits, and booked entries.

Prices are its own: 1 token = 1 cent, bundles of 250, 1000 and 4000 tokens, the last with
10% bonus tokens. A credit repays what a wallet owes first; a clawback takes the balance
first and records the rest as owed. Every tip carries a 20% fee (``gift_fee``, rounded up)
that goes to the platform's wallet (``PLATFORM_OWNER_ID``); call minutes carry none.

Of a purchase of ``a`` cents that minted ``t`` tokens, a cumulative refund of ``R`` cents
takes back ``floor(t * R / a)`` tokens in total; an open or lost dispute takes back all
``t``; a won dispute gives back what the dispute took.

``book`` is the only writer of balances: it moves one locked wallet and journals the
movement in ``wallet_entries`` in the same statement, so a wallet's balance is always the
sum of its entries, and its ``state`` ('owing' exactly when it owes something, else 'ok')
always follows its ``owed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

__all__ = [
    "BUNDLES",
    "CENTS_PER_TOKEN",
    "GIFT_FEE_PERCENT",
    "PLATFORM_OWNER_ID",
    "TOKENS_MAX",
    "Bundle",
    "Wallet",
    "book",
    "book_clawback",
    "book_credit",
    "gift_fee",
    "lock_wallets",
    "taken_target_tokens",
]

CENTS_PER_TOKEN = 1
TOKENS_MAX = 10**9  # the largest tip, rate or minute a client may name
GIFT_FEE_PERCENT = 20  # of every tip, to the platform
# The wallet the tip fees go to. The schema creates it with the hash of a key nobody was
# ever given, so no request can act as it.
PLATFORM_OWNER_ID = "platform"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A purchasable bundle: its name, the tokens asked for, the bonus, the price."""

    name: str
    tokens: int
    bonus_tokens: int
    price_cents: int

    @property
    def minted_tokens(self) -> int:
        return self.tokens + self.bonus_tokens


BUNDLES: dict[int, Bundle] = {
    250: Bundle(name="starter", tokens=250, bonus_tokens=0, price_cents=250),
    1000: Bundle(name="plus", tokens=1000, bonus_tokens=0, price_cents=1000),
    4000: Bundle(name="mega", tokens=4000, bonus_tokens=400, price_cents=4000),
}
for _bundle in BUNDLES.values():
    assert _bundle.price_cents == _bundle.tokens * CENTS_PER_TOKEN, _bundle


@dataclass(frozen=True, slots=True, kw_only=True)
class Wallet:
    """A wallet as read under its row lock."""

    owner_id: str
    is_creator: bool
    balance: int
    owed: int


def gift_fee(tokens: int) -> int:
    """The platform's fee on a tip of ``tokens``: 20%, rounded up in the platform's favour.

    The recipient gets the rest, ``tokens - gift_fee(tokens)``, which is floor(0.8 * tokens):
    a tip of 1 token is all fee. A tip of no tokens or fewer carries no fee: the service
    refuses such tips before they are made, and where one gets through it is moved as asked.
    """
    if tokens <= 0:
        return 0
    fee_tokens = -(-tokens * GIFT_FEE_PERCENT // 100)  # ceil without floats
    assert fee_tokens >= 1, (tokens, fee_tokens)
    assert fee_tokens <= tokens, (tokens, fee_tokens)
    return fee_tokens


def lock_wallets(conn: psycopg.Connection[Any], owner_ids: list[str]) -> dict[str, Wallet]:
    """Lock these wallets in owner id order (never a cycle) and read them; unknown ids absent."""
    rows = conn.execute(
        "SELECT owner_id, is_creator, balance, owed FROM wallets WHERE owner_id = ANY(%s)"
        " ORDER BY owner_id FOR UPDATE", (sorted(set(owner_ids)),)).fetchall()
    return {str(row[0]): Wallet(owner_id=str(row[0]), is_creator=bool(row[1]),
                                balance=int(row[2]), owed=int(row[3])) for row in rows}


def book(conn: psycopg.Connection[Any], wallet: Wallet, *, reason: str, balance_delta: int,
         owed_delta: int, ref: str) -> Wallet:
    """Move a locked wallet and journal it; return the wallet as it is now.

    The same statement sets the wallet's state from what it owes afterwards (the right-hand
    sides of an UPDATE read the row as it was, so ``owed + delta`` is the new ``owed``).
    """
    assert balance_delta or owed_delta, "a booking moves something"
    row = conn.execute(
        "WITH entry AS (INSERT INTO wallet_entries (owner_id, reason, balance_delta,"
        " owed_delta, ref) VALUES (%(owner)s, %(reason)s, %(balance)s, %(owed)s, %(ref)s))"
        " UPDATE wallets SET balance = balance + %(balance)s, owed = owed + %(owed)s,"
        " state = CASE WHEN owed + %(owed)s > 0 THEN 'owing' ELSE 'ok' END"
        " WHERE owner_id = %(owner)s RETURNING balance, owed",
        {"owner": wallet.owner_id, "reason": reason, "balance": balance_delta,
         "owed": owed_delta, "ref": ref}).fetchone()
    assert row is not None, wallet
    return Wallet(owner_id=wallet.owner_id, is_creator=wallet.is_creator, balance=int(row[0]),
                  owed=int(row[1]))


def book_credit(conn: psycopg.Connection[Any], wallet: Wallet, *, tokens: int, reason: str,
                ref: str) -> Wallet:
    """Credit ``tokens``: what the wallet owes is repaid first, the rest reaches the balance."""
    assert tokens > 0, tokens
    repaid = min(tokens, wallet.owed)
    return book(conn, wallet, reason=reason, balance_delta=tokens - repaid, owed_delta=-repaid,
                ref=ref)


def book_clawback(conn: psycopg.Connection[Any], wallet: Wallet, *, tokens: int, reason: str,
                  ref: str) -> Wallet:
    """Take ``tokens`` back: from the balance first, the rest becomes owed."""
    assert tokens > 0, tokens
    taken = min(tokens, wallet.balance)
    return book(conn, wallet, reason=reason, balance_delta=-taken, owed_delta=tokens - taken,
                ref=ref)


def taken_target_tokens(*, minted_tokens: int, price_cents: int, refunded_cents: int,
                        dispute_state: str | None) -> int:
    """How many of a purchase's tokens should be taken back, given all that is known of it."""
    assert minted_tokens > 0
    assert price_cents > 0
    if dispute_state in ("open", "lost"):
        return minted_tokens
    return minted_tokens * min(refunded_cents, price_cents) // price_cents
