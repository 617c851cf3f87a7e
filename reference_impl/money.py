"""Pure arithmetic on tokens and cents: packages, bonuses, debt-first credits, clawbacks.

Everything here is a pure function of integers: no I/O, no clock, no database. The
service calls these with values read from locked rows and writes what they return, so
the rules of the domain live in one place and are tested without a server.

Rules (DESIGN section 1):

- 1 token = 5 cents. Packages (tokens -> cents): 100 -> 500, 500 -> 2500, 1000 -> 5000,
  5000 -> 25000 and 10000 -> 50000; the last two mint 5% bonus tokens on top.
- A credit of ``c`` tokens to an account with debt ``d`` pays the debt first:
  ``paid = min(c, d)``, the debt drops by ``paid`` and the balance rises by ``c - paid``.
- A clawback of ``k`` tokens from an account with balance ``b`` takes at most the balance:
  ``taken = min(k, b)``; the rest, ``k - taken``, becomes debt.
- Of a payment of ``a`` cents that minted ``t`` tokens, a cumulative refund of ``R`` cents
  takes back ``floor(t * R / a)`` tokens in total; an open or lost dispute takes back all
  ``t``; a dispute won gives back what the dispute took (the refunds' share stays taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "AMOUNT_TOKENS_MAX",
    "BONUS_PERCENT",
    "CENTS_PER_TOKEN",
    "PACKAGES",
    "DisputeStatus",
    "Package",
    "Split",
    "clawback_target_tokens",
    "package_for",
    "split_clawback",
    "split_credit",
]

CENTS_PER_TOKEN = 5
BONUS_PERCENT = 5
BONUS_TOKENS_MIN = 5000  # packages of at least this many tokens mint the bonus
# Amounts a client may name (tips, rates): large enough for any real use, small enough
# that sums of many of them stay far below 2**63 in a BIGINT column.
AMOUNT_TOKENS_MAX = 10**12
assert AMOUNT_TOKENS_MAX * 1_000_000 < 2**63


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """One purchasable package: what the client names, what it costs, what it mints."""

    tokens: int  # the package size the client asks for
    amount_cents: int  # the price charged
    minted_tokens: int  # tokens credited once the payment succeeds (with any bonus)

    def __post_init__(self) -> None:
        assert self.tokens > 0, self.tokens
        assert self.amount_cents == self.tokens * CENTS_PER_TOKEN, self
        assert self.minted_tokens >= self.tokens, self


def _package(tokens: int) -> Package:
    bonus_tokens = tokens * BONUS_PERCENT // 100 if tokens >= BONUS_TOKENS_MIN else 0
    return Package(tokens=tokens, amount_cents=tokens * CENTS_PER_TOKEN,
                   minted_tokens=tokens + bonus_tokens)


PACKAGES: MappingProxyType[int, Package] = MappingProxyType(
    {tokens: _package(tokens) for tokens in (100, 500, 1000, 5000, 10000)})
assert PACKAGES[100].amount_cents == 500
assert PACKAGES[5000].amount_cents == 25000
assert PACKAGES[5000].minted_tokens == 5250
assert PACKAGES[10000].minted_tokens == 10500


def package_for(tokens: int) -> Package | None:
    """The package of this size, or None when ``tokens`` names no package."""
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        return None
    return PACKAGES.get(tokens)


class DisputeStatus(StrEnum):
    """Where a payment's dispute stands. Closed states are final."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """How an amount divides between an account's balance and its debt.

    For a credit: ``balance_tokens`` is added to the balance, ``debt_tokens`` repays debt.
    For a clawback: ``balance_tokens`` is taken from the balance, ``debt_tokens`` is new debt.
    """

    balance_tokens: int
    debt_tokens: int

    def __post_init__(self) -> None:
        assert self.balance_tokens >= 0, self
        assert self.debt_tokens >= 0, self


def split_credit(*, amount_tokens: int, debt_tokens: int) -> Split:
    """Split a credit into the part that repays debt and the part that reaches the balance.

    Args:
        amount_tokens: tokens coming in (a payment, a tip, a call charge, a reinstatement).
        debt_tokens: the account's debt before the credit.

    Returns:
        ``Split(balance_tokens=amount - paid, debt_tokens=paid)`` with ``paid = min(amount, debt)``.
    """
    assert amount_tokens >= 0, amount_tokens
    assert debt_tokens >= 0, debt_tokens
    paid_tokens = min(amount_tokens, debt_tokens)
    split = Split(balance_tokens=amount_tokens - paid_tokens, debt_tokens=paid_tokens)
    assert split.balance_tokens + split.debt_tokens == amount_tokens
    return split


def split_clawback(*, amount_tokens: int, balance_tokens: int) -> Split:
    """Split a clawback into the part taken from the balance and the part that becomes debt.

    Args:
        amount_tokens: tokens to take back.
        balance_tokens: the account's balance before the clawback.

    Returns:
        ``Split(balance_tokens=taken, debt_tokens=amount - taken)`` with
        ``taken = min(amount, balance)``: a balance never goes below zero.
    """
    assert amount_tokens >= 0, amount_tokens
    assert balance_tokens >= 0, balance_tokens
    taken_tokens = min(amount_tokens, balance_tokens)
    split = Split(balance_tokens=taken_tokens, debt_tokens=amount_tokens - taken_tokens)
    assert split.balance_tokens <= balance_tokens
    return split


def clawback_target_tokens(*, minted_tokens: int, amount_cents: int | None,
                           refunded_cents: int, dispute_status: DisputeStatus | None) -> int:
    """How many of a payment's tokens should be taken back, given everything known of it.

    The service keeps, per payment, what it has taken back so far and moves the account
    by the difference to this target, so every event applies only its increase, replays
    change nothing, and the order in which events arrive does not matter.

    Args:
        minted_tokens: ``t``, tokens the payment minted (with any bonus).
        amount_cents: ``a``, the payment's amount; None when no event has said it yet.
        refunded_cents: ``R``, the largest cumulative refund seen (it never decreases).
        dispute_status: None when never disputed.

    Returns:
        ``t`` while a dispute is open or lost; otherwise ``floor(t * min(R, a) / a)``.
    """
    assert minted_tokens > 0, minted_tokens
    assert refunded_cents >= 0, refunded_cents
    if dispute_status in (DisputeStatus.OPEN, DisputeStatus.LOST):
        return minted_tokens
    if amount_cents is None or refunded_cents == 0:
        return 0
    assert amount_cents > 0, amount_cents
    target_tokens = minted_tokens * min(refunded_cents, amount_cents) // amount_cents
    assert 0 <= target_tokens <= minted_tokens
    return target_tokens
