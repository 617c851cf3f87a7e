"""non_negative and ledger_drift: what any single balance must look like.

``non_negative``: no balance and no debt below zero, in any read, in any balance an
acknowledged spend returned, or at the end. ``ledger_drift``: where the observer can read
a ledger, every account's balance equals the sum of its entries, and the service's own
totals report no drifting account. Both read values only; neither models the history.
"""

from __future__ import annotations

from harness.checkers.base import CheckInput, Sampler, conclude, describe_op, op_pairs, value_int
from harness.model import Anomaly, F, Kind, Verdict

__all__ = ["check_ledger_drift", "check_non_negative"]

_ANSWERS_WITH_BALANCE = frozenset({F.READ_BALANCE, F.TIP, F.CALL_CHARGE})

# Enum members read once per op, as module constants: ``Kind.OK`` is an attribute
# lookup on an Enum class, several times slower than reading a global.
_OK = Kind.OK


def check_non_negative(inp: CheckInput) -> Verdict:
    """Flag every balance or debt below zero, seen during the run or at the end.

    Anomaly kinds: ``negative_balance``, ``negative_debt``.

    Count keys: ``answers_checked`` (reads and spend answers carrying a balance),
    ``accounts_checked``.
    """
    sampler = Sampler()
    answers_checked = 0
    for pair in op_pairs(inp):
        completion = pair.completion  # (read once: the pair's properties cost a call each)
        if (completion is None or completion.kind != _OK
                or pair.invoke.f not in _ANSWERS_WITH_BALANCE):
            continue
        value = completion.value
        if "balance_tokens" not in value:
            continue
        answers_checked += 1
        balance, debt = value["balance_tokens"], value.get("debt_tokens")
        if (type(balance) is int and balance >= 0
                and (debt is None or (type(debt) is int and debt >= 0))):
            continue  # the usual answer, plain and not below zero: nothing to read further
        for field_name, kind in (("balance_tokens", "negative_balance"),
                                 ("debt_tokens", "negative_debt")):
            amount = value_int(value, field_name)
            if amount < 0:
                what = describe_op(pair.f, pair.index, pair.invoke.value)
                user = value.get("user") or value.get("sender")
                noun = field_name.removesuffix("_tokens")
                sampler.add(Anomaly(
                    kind=kind, event_indexes=pair.event_indexes, expected=">= 0",
                    observed=amount, user=user if isinstance(user, str) else None,
                    explanation=f"Let R be {what}: it returned a {noun} of {amount} tokens, "
                                "below zero."), badness=-amount)
    accounts_checked = 0
    if inp.observation is not None:
        for user, account in inp.observation.accounts.items():
            accounts_checked += 1
            for amount, kind, noun in ((account.balance_tokens, "negative_balance", "balance"),
                                       (account.debt_tokens, "negative_debt", "debt")):
                if amount < 0:
                    sampler.add(Anomaly(
                        kind=kind, event_indexes=(), expected=">= 0", observed=amount,
                        user=user, explanation=f"{user} ended the run with a {noun} of "
                                               f"{amount} tokens, below zero."),
                        badness=-amount)
    counts = {"answers_checked": answers_checked, "accounts_checked": accounts_checked}
    checked = answers_checked + accounts_checked > 0
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no balance was read or observed")


def check_ledger_drift(inp: CheckInput) -> Verdict:
    """Check ``balance == sum(ledger)`` per account wherever the ledger is visible.

    Anomaly kinds: ``drift`` (one account), ``drift_reported`` (the service's totals count
    more drifting accounts than before the run).

    Count keys: ``accounts_checked``, ``accounts_without_ledger``.
    """
    sampler = Sampler()
    counts = {"accounts_checked": 0, "accounts_without_ledger": 0}
    observation = inp.observation
    if observation is None:
        return conclude(sampler, counts, checked=False, unknown_note="no end state was observed")
    for user, account in observation.accounts.items():
        if account.ledger_sum_tokens is None:
            counts["accounts_without_ledger"] += 1
            continue
        counts["accounts_checked"] += 1
        drift = account.balance_tokens - account.ledger_sum_tokens
        if drift:
            sampler.add(Anomaly(
                kind="drift", event_indexes=(), expected=account.ledger_sum_tokens,
                observed=account.balance_tokens, user=user,
                explanation=f"{user} holds {account.balance_tokens} tokens but its ledger "
                            f"entries sum to {account.ledger_sum_tokens}: {abs(drift)} tokens "
                            f"{'appeared' if drift > 0 else 'vanished'} without an entry."),
                badness=abs(drift))
    totals = observation.totals
    # The audit counts every account of the service, also those of earlier runs: only
    # drift that appeared during this run is this run's finding.
    drift_before = 0
    if inp.initial is not None and inp.initial.totals is not None:
        drift_before = inp.initial.totals.drift_accounts_count
    if totals is not None and totals.drift_accounts_count > drift_before:
        before = f" ({drift_before} before the run)" if drift_before else ""
        sampler.add(Anomaly(
            kind="drift_reported", event_indexes=(), expected=drift_before,
            observed=totals.drift_accounts_count,
            explanation=f"The service's own audit counts {totals.drift_accounts_count} "
                        f"account(s) whose balance differs from the sum of its ledger{before}."),
            badness=totals.drift_accounts_count - drift_before)
    checked = counts["accounts_checked"] > 0 or totals is not None
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "the observer sees no ledger")
