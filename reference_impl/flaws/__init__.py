"""The bug zoo: named replacements of one operation each, installed by name at start-up.

A flaw is a buggy function with the same signature as the correct operation it replaces
(``service.OPERATIONS[flaw.operation]``); the correct code never branches on flaws. Each
flaw module under this package defines one replacement, whose docstring's first line
names the real bug, a ``caught_by`` tuple naming the checkers (``harness.checkers.CHECKERS``
names) that must catch it, and one ``FLAW``; ``FLAWS`` collects them by name. A flaw only
a fault reveals (a crash between the answer and the commit) also names, in
``scenarios``, the fault scenarios that catch it; without a fault it must pass clean.

Flaws are written as the bug looks in real code, reusing the correct modules' helpers
(``ledger``, ``idempotency``, ``db``, and the internals of ``payments``) wherever the bug
is elsewhere: a flaw is the correct operation with one thing wrong, and sharing the rest
keeps it so as the correct code changes. Helpers only flaws need live in the ``_``
modules here. Nothing outside ``app.py`` imports this package at run time.

``install_flaws`` resolves names from ``TOKENCHAOS_FLAWS``; an unknown name, or two flaws
replacing one operation, stops the service with a message listing the known flaws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reference_impl.errors import ConfigError
from reference_impl.flaws import (
    answer_before_commit,
    call_charge_no_lock,
    call_minute_charged_twice,
    credit_every_delivery,
    dispute_won_not_reinstated,
    idempotency_key_after_effect,
    no_reconnect_after_database_restart,
    partial_refund_claws_whole,
    purchase_blocks_credit,
    refund_before_success_dropped,
    refund_ignores_bonus,
    refund_not_idempotent,
    refund_zeroes_balance_without_ledger,
    tip_ignores_idempotency_key,
    tip_lock_order_deadlock,
    tip_lost_update,
    webhook_ack_before_commit,
    webhook_signature_not_verified,
    webhook_timestamp_not_enforced,
)
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAWS", "Flaw", "install_flaws"]

# The thirteen of the design first, in its order; then the ones added since.
_MODULES = (
    tip_lost_update,
    call_charge_no_lock,
    credit_every_delivery,
    refund_not_idempotent,
    refund_zeroes_balance_without_ledger,
    purchase_blocks_credit,
    tip_lock_order_deadlock,
    tip_ignores_idempotency_key,
    partial_refund_claws_whole,
    call_minute_charged_twice,
    refund_before_success_dropped,
    webhook_signature_not_verified,
    webhook_timestamp_not_enforced,
    dispute_won_not_reinstated,
    refund_ignores_bonus,
    # Only a fault reveals these: the smoke suite must pass them clean.
    answer_before_commit,
    idempotency_key_after_effect,
    webhook_ack_before_commit,
    no_reconnect_after_database_restart,
)

FLAWS: dict[str, Flaw] = {module.FLAW.name: module.FLAW for module in _MODULES}
assert len(FLAWS) == len(_MODULES), "two flaws share a name"
for _module in _MODULES:
    assert _module.FLAW.name == _module.__name__.rsplit(".", 1)[-1], _module.__name__
    assert _module.FLAW.caught_by == _module.caught_by, _module.__name__
    assert _module.FLAW.scenarios == getattr(_module, "scenarios", ()), _module.__name__


def install_flaws(operations: Mapping[str, Callable[..., Any]],
                  names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """A copy of ``operations`` with each named flaw's replacement installed.

    Raises:
        ConfigError: a name is not in ``FLAWS``, names an operation that does not exist,
        or two flaws replace the same operation.
    """
    installed = dict(operations)
    replaced_by: dict[str, str] = {}
    for name in names:
        flaw = FLAWS.get(name)
        if flaw is None:
            known = ", ".join(sorted(FLAWS)) or "(none registered yet)"
            raise ConfigError(f"unknown flaw {name!r} in TOKENCHAOS_FLAWS; known flaws: {known}")
        if flaw.operation not in installed:
            raise ConfigError(f"flaw {name!r} replaces {flaw.operation!r}, which is not an "
                              "operation of this service")
        if flaw.operation in replaced_by:
            raise ConfigError(f"flaws {replaced_by[flaw.operation]!r} and {name!r} both replace "
                              f"{flaw.operation!r}; install one of them")
        replaced_by[flaw.operation] = name
        installed[flaw.operation] = flaw.replacement
    return installed
