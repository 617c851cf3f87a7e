"""Fees a target takes on transfers: what the payee receives, and which account gets the rest.

A service may keep part of every tip or call charge (a 20% platform fee on gifts, a fixed
token per minute): the payer pays the whole amount, the payee receives it less the fee,
and a system account of the service (``[observer] system_accounts``) receives the fee.
The profile declares the rule per op kind (``[fees.tip]``, ``[fees.call_charge]``); the
checkers model every transfer with it (``harness.checkers.ledger_records``), so tokens
taken as fees are neither "destroyed" at the payee nor "created" at the platform.

Pure: no I/O, no clock. A fee is computed in exact fractions, rounded as the rule says,
and never more than the amount (the payee's share is never negative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from harness.model import F

__all__ = ["FEE_FS", "NO_FEES", "ROUNDINGS", "FeeRule", "Fees"]

ROUNDINGS = ("down", "up", "half_up", "half_even")  # how a fractional fee becomes whole tokens
FEE_FS = (F.TIP, F.CALL_CHARGE)  # the op kinds a fee may apply to
FIXED_TOKENS_MAX = 10**12


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeRule:
    """One op kind's fee: ``percent`` of the amount, rounded, or ``fixed_tokens`` each."""

    account: str  # the logical name of the system account that receives it
    percent: Fraction | None = None  # 0 < percent < 100
    fixed_tokens: int | None = None  # > 0
    rounding: str = "down"  # one of ROUNDINGS; percent only

    def __post_init__(self) -> None:
        assert (self.percent is None) != (self.fixed_tokens is None), self
        assert self.percent is None or 0 < self.percent < 100, self.percent
        assert self.fixed_tokens is None or 0 < self.fixed_tokens <= FIXED_TOKENS_MAX, self
        assert self.rounding in ROUNDINGS, self.rounding
        assert self.account, self

    def fee_tokens(self, amount_tokens: int) -> int:
        """The fee on a transfer of ``amount_tokens``: from 0 to the amount itself."""
        if amount_tokens <= 0:
            return 0
        if self.fixed_tokens is not None:
            return min(self.fixed_tokens, amount_tokens)
        assert self.percent is not None
        fee = _rounded(amount_tokens * self.percent / 100, self.rounding)
        return min(max(fee, 0), amount_tokens)

    def describe(self) -> str:
        """E.g. "20% rounded up, to platform" or "1 token each, to platform"."""
        if self.fixed_tokens is not None:
            each = "token" if self.fixed_tokens == 1 else "tokens"
            return f"{self.fixed_tokens} {each} each, to {self.account}"
        assert self.percent is not None
        percent = str(self.percent) if self.percent.denominator == 1 else \
            f"{float(self.percent):g}"
        return f"{percent}% rounded {self.rounding.replace('_', ' ')}, to {self.account}"

    def record(self) -> dict[str, Any]:
        """JSON for the history's scenario line and run.json; ``from_record`` reads it."""
        if self.fixed_tokens is not None:
            return {"account": self.account, "fixed_tokens": self.fixed_tokens}
        return {"account": self.account, "percent": str(self.percent),
                "rounding": self.rounding}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FeeRule:
        """The rule ``record`` wrote. Raises ValueError on anything else."""
        account = record.get("account")
        if not isinstance(account, str) or not account:
            raise ValueError(f"a fee names no account: {dict(record)!r}")
        fixed = record.get("fixed_tokens")
        if fixed is not None:
            if type(fixed) is not int or not 0 < fixed <= FIXED_TOKENS_MAX:
                raise ValueError(f"fixed_tokens must be a positive integer, not {fixed!r}")
            return cls(account=account, fixed_tokens=fixed)
        percent, rounding = record.get("percent"), record.get("rounding", "down")
        try:
            exact = Fraction(str(percent))
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"a fee's percent must be a number, not {percent!r}") from exc
        if not 0 < exact < 100 or rounding not in ROUNDINGS:
            raise ValueError(f"a fee's percent must be between 0 and 100 and its rounding "
                             f"one of {', '.join(ROUNDINGS)}: {dict(record)!r}")
        return cls(account=account, percent=exact, rounding=str(rounding))


@dataclass(frozen=True, slots=True)
class Fees:
    """The fee rule of each op kind that has one."""

    rules: Mapping[F, FeeRule]

    def __post_init__(self) -> None:
        assert set(self.rules) <= set(FEE_FS), self.rules

    def rule(self, f: F) -> FeeRule | None:
        return self.rules.get(f)

    @property
    def accounts(self) -> frozenset[str]:
        """The system accounts fees go to."""
        return frozenset(rule.account for rule in self.rules.values())

    def __bool__(self) -> bool:
        return bool(self.rules)

    def describe(self) -> dict[str, str]:
        """Each op kind's fee in words, for run.json and the console."""
        return {f.value: rule.describe() for f, rule in self.rules.items()}

    def record(self) -> dict[str, Any]:
        return {f.value: rule.record() for f, rule in self.rules.items()}

    @classmethod
    def from_record(cls, record: Any) -> Fees:
        """The fees ``record`` wrote (None or {}: none). Raises ValueError on anything else."""
        if record is None:
            return NO_FEES
        if not isinstance(record, Mapping):
            raise ValueError(f"fees must be an object, not {record!r}")
        rules: dict[F, FeeRule] = {}
        for name, rule in record.items():
            f = next((f for f in FEE_FS if f.value == name), None)
            if f is None or not isinstance(rule, Mapping):
                raise ValueError(f"fees.{name}: not an op kind with a fee "
                                 f"({', '.join(f.value for f in FEE_FS)}) and its rule")
            rules[f] = FeeRule.from_record(rule)
        return cls(rules) if rules else NO_FEES


NO_FEES = Fees({})


def _rounded(exact: Fraction, rounding: str) -> int:
    if rounding == "down":
        return math.floor(exact)
    if rounding == "up":
        return math.ceil(exact)
    if rounding == "half_up":
        return math.floor(exact + Fraction(1, 2))
    return round(exact)  # half_even: Fraction rounds half to even
