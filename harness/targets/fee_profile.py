"""``[fees]`` of a profile: the fee a service takes on tips and call charges.

::

    [fees.tip]
    percent = 20          # of the amount: more than 0, less than 100 ("2.5" for 2.5%)
    rounding = "up"       # of the fee to whole tokens: down (default), up, half_up, half_even
    account = "platform"  # the [observer] system account that receives it

    [fees.call_charge]
    fixed_tokens = 1      # or a fixed fee per op (never more than the amount)
    account = "platform"

The payee receives the amount less the fee; what a fee means to the checkers is
``harness.fees``'s story.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from harness.fees import FEE_FS, FIXED_TOKENS_MAX, NO_FEES, ROUNDINGS, FeeRule, Fees
from harness.model import F
from harness.targets.toml_table import Table

__all__ = ["parse_fees"]


def parse_fees(table: Table | None, *, system_accounts: Mapping[str, str] | None) -> Fees:
    """``[fees]``, each rule's account checked against the observer's system accounts.

    ``system_accounts`` is None when the profile has no observer: the fee's account is
    then only a name (the end state is not read, so it is never compared).
    """
    if table is None:
        return NO_FEES
    names = {f.value: f for f in FEE_FS}
    table.only(*names)
    rules: dict[F, FeeRule] = {}
    for name, f in names.items():
        rule_table = table.opt_table(name)
        if rule_table is not None:
            rules[f] = _parse_rule(rule_table, system_accounts)
    return Fees(rules) if rules else NO_FEES


def _parse_rule(table: Table, system_accounts: Mapping[str, str] | None) -> FeeRule:
    account = table.text("account")
    if system_accounts is not None and account not in system_accounts:
        known = ", ".join(sorted(system_accounts)) or "none"
        raise table.error("account", account, "must be one of [observer] system_accounts "
                          f"(now: {known}), so the end state shows what the fees added up to; "
                          f'add e.g. system_accounts = {{ {account} = "<its account id>" }}')
    if "fixed_tokens" in table:
        table.only("account", "fixed_tokens")
        fixed = table.raw("fixed_tokens")
        if type(fixed) is not int or not 0 < fixed <= FIXED_TOKENS_MAX:
            raise table.error("fixed_tokens", fixed, "must be a whole number of tokens, "
                              f"from 1 to {FIXED_TOKENS_MAX}")
        return FeeRule(account=account, fixed_tokens=fixed)
    table.only("account", "percent", "rounding")
    if "percent" not in table:
        raise table.error("percent", None, "is missing; give percent = 20 (with rounding) "
                          "or fixed_tokens = 1")
    percent = _percent(table)
    rounding = table.choice("rounding", ROUNDINGS) if "rounding" in table else "down"
    return FeeRule(account=account, percent=percent, rounding=rounding)


def _percent(table: Table) -> Fraction:
    value = table.raw("percent")
    exact: Fraction | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            exact = Fraction(str(value))
        except (ValueError, ZeroDivisionError):
            exact = None
    if exact is None or not 0 < exact < 100:
        raise table.error("percent", value, 'must be a number more than 0 and less than 100 '
                          '(20, 2.5 or "2.5")')
    return exact
