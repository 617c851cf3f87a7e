"""Pricing: the packages a target sells and what a token costs, from which scenarios draw.

A ``Package`` is what one purchase buys: ``tokens`` (the amount the purchase call asks
for), ``cents`` (its price at the provider) and ``bonus_tokens`` (minted on top, e.g. a
5% bonus). ``Pricing`` holds a target's packages and its list price per token. Profiles
declare it in an optional ``[pricing]`` table; without one, a target is priced like the
reference service (``REFERENCE_PRICING``).

Scenarios never hard-code amounts of money: they ask the pricing for a package near the
size they want (``package_for``), refund shares of the package's own cents (so the
provider never refuses a refund as larger than the charge), and expect a refund of ``R``
cents of a package of ``a`` cents that minted ``t`` tokens to take back
``floor(t * R / a)`` tokens, where ``t`` counts the bonus.

Pure data and validation: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError

__all__ = [
    "REFERENCE_PRICING",
    "Package",
    "Pricing",
    "expected_clawback_tokens",
    "parse_pricing",
]

PACKAGES_MAX = 64  # a price list longer than this is a mistake in the profile


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """One package: ``tokens`` bought for ``cents``, plus ``bonus_tokens`` minted on top."""

    tokens: int
    cents: int
    bonus_tokens: int = 0
    name: str | None = None  # the service's own name for it ("starter"), if it has one

    def __post_init__(self) -> None:
        assert self.tokens >= 1, self.tokens
        assert self.cents >= 1, self.cents
        assert self.bonus_tokens >= 0, self.bonus_tokens

    @property
    def minted_tokens(self) -> int:
        """Tokens one purchase of this package credits: its tokens and its bonus."""
        return self.tokens + self.bonus_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Pricing:
    """A target's packages (by ascending tokens) and its list price of one token."""

    packages: tuple[Package, ...]
    cents_per_token: int

    def __post_init__(self) -> None:
        assert self.packages, "a pricing sells at least one package"
        assert self.cents_per_token >= 1, self.cents_per_token
        sizes = [package.tokens for package in self.packages]
        assert sizes == sorted(set(sizes)), f"packages must ascend by tokens: {sizes}"

    def package(self, tokens: int) -> Package:
        """The package of exactly ``tokens`` tokens.

        Raises:
            ValueError: no package has that size.
        """
        for package in self.packages:
            if package.tokens == tokens:
                return package
        raise ValueError(f"{tokens} tokens is not a package; the packages are "
                         f"{[p.tokens for p in self.packages]}")

    def package_for(self, wanted_tokens: int) -> Package:
        """The smallest package minting at least ``wanted_tokens``; else the largest."""
        assert wanted_tokens >= 1, wanted_tokens
        for package in self.packages:
            if package.minted_tokens >= wanted_tokens:
                return package
        return self.packages[-1]

    @property
    def bonus_package(self) -> Package | None:
        """The smallest package that mints a bonus, or None when none does."""
        return next((p for p in self.packages if p.bonus_tokens > 0), None)


def expected_clawback_tokens(package: Package, refunded_cents: int) -> int:
    """Tokens a correct service takes back once ``refunded_cents`` of it were refunded."""
    assert refunded_cents >= 0, refunded_cents
    return package.minted_tokens * min(refunded_cents, package.cents) // package.cents


# The reference service's price list: 1 token = 5 cents, 5% bonus from 5000 tokens.
REFERENCE_PRICING = Pricing(
    cents_per_token=5,
    packages=(
        Package(tokens=100, cents=500),
        Package(tokens=500, cents=2_500),
        Package(tokens=1_000, cents=5_000),
        Package(tokens=5_000, cents=25_000, bonus_tokens=250),
        Package(tokens=10_000, cents=50_000, bonus_tokens=500),
    ),
)


def parse_pricing(table: Mapping[str, Any] | None, *, where: str) -> Pricing:
    """A ``[pricing]`` table as ``Pricing``; None (no table) is the reference pricing.

    Args:
        where: the profile's file, for messages.

    Raises:
        UsageError: a key or value is wrong; the message names it and what to write.
    """
    if table is None:
        return REFERENCE_PRICING
    if not isinstance(table, Mapping):
        raise UsageError(f"profile {where}: [pricing] must be a table, got {table!r}")
    unknown = sorted(set(table) - {"cents_per_token", "packages"})
    if unknown:
        raise UsageError(f"profile {where}: [pricing] {unknown[0]} is not a known key here; "
                         "known keys: cents_per_token, packages")
    cents_per_token = table.get("cents_per_token")
    if type(cents_per_token) is not int or cents_per_token < 1:
        raise UsageError(f"profile {where}: [pricing] cents_per_token = {cents_per_token!r} "
                         "must be a whole number of cents of at least 1, e.g. "
                         "cents_per_token = 5")
    items = table.get("packages")
    if not isinstance(items, list) or not items:
        raise UsageError(f"profile {where}: [pricing] packages = {items!r} must be a list of "
                         "at least one package, e.g. packages = [{ tokens = 100, cents = 500 }]")
    if len(items) > PACKAGES_MAX:
        raise UsageError(f"profile {where}: [pricing] packages lists {len(items)} packages, "
                         f"more than {PACKAGES_MAX}; list only the ones the service sells")
    packages = sorted((_package(item, f"{where}: [pricing] packages[{index}]")
                       for index, item in enumerate(items)), key=lambda p: p.tokens)
    sizes = [package.tokens for package in packages]
    twice = sorted({size for size in sizes if sizes.count(size) > 1})
    if twice:
        raise UsageError(f"profile {where}: [pricing] packages lists {twice[0]} tokens twice; "
                         "each package size once")
    return Pricing(packages=tuple(packages), cents_per_token=cents_per_token)


def _package(item: Any, where: str) -> Package:
    example = "e.g. { tokens = 5000, cents = 25000, bonus_tokens = 250 }"
    if not isinstance(item, Mapping):
        raise UsageError(f"profile {where} = {item!r} must be a table, {example}")
    unknown = sorted(set(item) - {"tokens", "cents", "bonus_tokens", "name"})
    if unknown:
        raise UsageError(f"profile {where}: {unknown[0]} is not a key of a package; known "
                         "keys: bonus_tokens, cents, name, tokens")
    values: dict[str, int] = {}
    for key, minimum in (("tokens", 1), ("cents", 1), ("bonus_tokens", 0)):
        value = item.get(key, 0 if key == "bonus_tokens" else None)
        if type(value) is not int or value < minimum:
            raise UsageError(f"profile {where}: {key} = {value!r} must be a whole number of "
                             f"at least {minimum}, {example}")
        values[key] = value
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise UsageError(f'profile {where}: name = {name!r} must be a non-empty string, '
                         'e.g. name = "starter"')
    return Package(tokens=values["tokens"], cents=values["cents"],
                   bonus_tokens=values["bonus_tokens"], name=name)
