"""debt: an account owes tokens or holds them, never both, and its status says which.

Clawbacks take the balance first and credits repay debt first, so an account with a
debt has a zero balance: a credit that reached the balance while a debt stayed unpaid
(or a clawback that made debt while tokens were left) shows as both at once. Balance
minus debt is the same either way, so conservation and reconciliation, which judge that
difference, cannot see it; this checker reads the two values themselves, in every answer
that carries both and at the end.

Where the observer reports a status, an account with a debt must have the debt status
and only such an account may: a service whose status lags its debt lets an indebted fan
go on as if nothing were owed. An observer that reports no status is not judged on it.
"""

from __future__ import annotations

from harness.checkers.base import CheckInput, Sampler, conclude, describe_op, op_pairs, value_int
from harness.model import AccountState, Anomaly, F, Kind, Verdict

__all__ = ["DEBT_STATUS", "check_debt"]

DEBT_STATUS = "debt"  # the status of an account that owes tokens, in the harness's words

_ANSWERS_WITH_DEBT = frozenset({F.READ_BALANCE, F.TIP, F.CALL_CHARGE})
_OK = Kind.OK


def check_debt(inp: CheckInput) -> Verdict:
    """Flag an account holding a balance beside a debt, and a status that disagrees with it.

    Anomaly kinds: ``balance_beside_debt`` (an answer or the end state shows both above
    zero), ``debt_status`` (debt and status disagree at the end).

    Count keys: ``answers_checked`` (answers carrying a balance and a debt),
    ``accounts_checked``, ``accounts_in_debt``, ``statuses_checked``.
    """
    sampler = Sampler()
    counts = {"answers_checked": 0, "accounts_checked": 0, "accounts_in_debt": 0,
              "statuses_checked": 0}
    for pair in op_pairs(inp):
        if pair.kind != _OK or pair.f not in _ANSWERS_WITH_DEBT:
            continue
        value = pair.value
        if "balance_tokens" not in value or "debt_tokens" not in value:
            continue
        counts["answers_checked"] += 1
        balance, debt = value_int(value, "balance_tokens"), value_int(value, "debt_tokens")
        if balance > 0 and debt > 0:
            what = describe_op(pair.f, pair.index, pair.invoke.value)
            user = value.get("user") or pair.invoke.value.get("user") \
                or pair.invoke.value.get("sender")
            sampler.add(Anomaly(
                kind="balance_beside_debt", event_indexes=pair.event_indexes,
                expected="a zero balance or a zero debt", observed=f"{balance} and {debt}",
                user=user if isinstance(user, str) else None,
                explanation=f"Let R be {what}: it returned a balance of {balance} tokens "
                            f"beside a debt of {debt}: a credit should have repaid the "
                            "debt first, or a clawback taken the balance first."),
                badness=min(balance, debt))
    if inp.observation is not None:
        for user, account in inp.observation.accounts.items():
            counts["accounts_checked"] += 1
            counts["accounts_in_debt"] += account.debt_tokens > 0
            counts["statuses_checked"] += account.status is not None
            _check_account(user, account, sampler)
    checked = counts["answers_checked"] + counts["accounts_checked"] > 0
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no balance and debt was read or observed")


def _check_account(user: str, account: AccountState, sampler: Sampler) -> None:
    balance, debt = account.balance_tokens, account.debt_tokens
    if balance > 0 and debt > 0:
        sampler.add(Anomaly(
            kind="balance_beside_debt", event_indexes=(), user=user,
            expected="a zero balance or a zero debt", observed=f"{balance} and {debt}",
            explanation=f"{user} ended the run holding {balance} tokens and owing {debt}: "
                        "a credit should have repaid the debt first, or a clawback taken "
                        "the balance first."),
            badness=min(balance, debt))
    if account.status is None:
        return
    in_debt = debt > 0
    if in_debt != (account.status == DEBT_STATUS):
        text = (f"{user} ended with a debt of {debt} tokens but status {account.status!r}; "
                f"an account owing tokens has status {DEBT_STATUS!r}, and only it.")
        sampler.add(Anomaly(kind="debt_status", event_indexes=(), user=user,
                            expected=DEBT_STATUS if in_debt else f"not {DEBT_STATUS}",
                            observed=account.status, explanation=text))
