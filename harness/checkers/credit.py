"""exactly_once_credit: every acknowledged success is credited once; nothing else is.

Per account, what its intents credited is compared with the provider's truth
(``intents.py``): the sum minted by its credited intents, plus any subset of the
possibly credited ones. What the account was credited comes from the observer's
``AccountState.credited_tokens`` where it reports it; otherwise, for an account that took
part in no tip or call charge, from its net change (minus the expected clawbacks); else
the account cannot be judged and the verdict is "unknown".

A mismatch is classified by the intent it points at: an intent credited twice
(``duplicated_credit``), an acknowledged intent never credited (``lost_credit``), or a
credit for an intent the provider says failed, never succeeded or was never acknowledged
(``phantom_credit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.base import CheckInput, Sampler, conclude, initial_net_tokens, reaches
from harness.checkers.intents import (
    Credit,
    CreditTerms,
    IntentModel,
    credit_terms,
    describe_intents,
    model_intents,
)
from harness.checkers.ledger import fold_ledger
from harness.model import AccountState, Anomaly, Verdict

__all__ = ["check_exactly_once_credit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Account:
    """One account's credits: what was observed, and which measure it was."""

    user: str
    observed_tokens: int
    gross: bool  # credited_tokens (minted only), else the net change
    term: CreditTerms
    intents: Sequence[IntentModel]


def check_exactly_once_credit(inp: CheckInput) -> Verdict:
    """Check each account's credits against the intents the provider says were delivered.

    Anomaly kinds: ``duplicated_credit``, ``lost_credit``, ``phantom_credit``.

    Count keys: ``intents``, ``intents_credited``, ``intents_possible``,
    ``intents_not_credited``, ``users_checked``, ``users_undecidable``.
    """
    sampler = Sampler()
    intents = model_intents(inp)
    if intents is None:
        return conclude(sampler, {}, checked=False, unknown_note="no provider truth")
    models = list(intents.models.values())
    counts = {
        "intents": len(models),
        "intents_credited": sum(1 for m in models if m.credit == Credit.CREDITED),
        "intents_possible": sum(1 for m in models if m.credit == Credit.POSSIBLE),
        "intents_not_credited": sum(1 for m in models if m.credit == Credit.NONE),
        "users_checked": 0,
        "users_undecidable": 0,
    }
    if inp.observation is None:
        return conclude(sampler, counts, checked=False, unknown_note="no end state was observed")
    if not models:
        return conclude(sampler, counts, checked=False,
                        unknown_note="no payment intent was part of this scenario")
    gross_terms = credit_terms(intents, gross=True)
    net_terms = credit_terms(intents)
    transfer_users = fold_ledger(inp, intents).transfer_users
    for user in sorted(intents.users()):
        account = _measure(inp, user, inp.observation.accounts.get(user), transfer_users,
                           gross_terms.get(user, CreditTerms()),
                           net_terms.get(user, CreditTerms()), intents.of_user(user))
        if account is None:
            counts["users_undecidable"] += 1
            continue
        counts["users_checked"] += 1
        _check_account(account, sampler)
    notes = []
    if counts["users_undecidable"]:
        notes.append(f"{counts['users_undecidable']} account(s) could not be judged: the "
                     "observer reports no credited tokens and they also tipped or paid calls")
    if intents.unattributed_count:
        notes.append(f"{intents.unattributed_count} credited intent(s) have no known owner")
    return conclude(sampler, counts, checked=counts["users_checked"] > 0,
                    unknown_note="; ".join(notes) or None)


def _measure(inp: CheckInput, user: str, account: AccountState | None,
             transfer_users: frozenset[str], gross: CreditTerms, net: CreditTerms,
             models: Sequence[IntentModel]) -> _Account | None:
    if account is None:
        return None
    if account.credited_tokens is not None:
        before = 0
        if inp.initial is not None and user in inp.initial.accounts:
            before = inp.initial.accounts[user].credited_tokens or 0
        return _Account(user=user, observed_tokens=account.credited_tokens - before,
                        gross=True, term=gross, intents=models)
    if user in transfer_users:
        return None
    change = (account.balance_tokens - account.debt_tokens
              - initial_net_tokens(inp.initial, user))
    return _Account(user=user, observed_tokens=change, gross=False, term=net, intents=models)


def _check_account(account: _Account, sampler: Sampler) -> None:
    term = account.term
    residual = account.observed_tokens - term.sure_tokens
    options = [d for d, _ in term.options]
    if reaches(options, residual - term.slack_tokens, residual) is not False:
        return
    high = term.max_tokens
    if account.observed_tokens > high:
        _too_much(account, account.observed_tokens - high, sampler)
    elif account.observed_tokens < term.sure_tokens:
        _too_little(account, term.sure_tokens - account.observed_tokens, sampler)
    else:
        _too_little(account, high - account.observed_tokens, sampler)


def _measure_name(account: _Account) -> str:
    return "was credited" if account.gross else "gained"


def _worth(model: IntentModel, account: _Account) -> int:
    return model.minted_tokens if account.gross else model.net_min_tokens


def _expected(account: _Account) -> str:
    term = account.term
    high = term.max_tokens
    return str(term.sure_tokens) if high == term.sure_tokens else f"{term.sure_tokens}..{high}"


def _too_much(account: _Account, extra: int, sampler: Sampler) -> None:
    credited = [m for m in account.intents if m.credit == Credit.CREDITED]
    never = [m for m in account.intents if m.credit == Credit.NONE]
    doubled = [m for m in credited if _worth(m, account) == extra]
    doubled.sort(key=lambda m: -m.success_acknowledged_count)
    phantom = [m for m in never if m.minted_tokens == extra]
    if doubled and (doubled[0].success_acknowledged_count >= 2 or not phantom):
        culprit, kind = doubled[0], "duplicated_credit"
    elif phantom:
        culprit, kind = phantom[0], "phantom_credit"
    else:
        culprit = None
        kind = "duplicated_credit" if credited else "phantom_credit"
    measure = _measure_name(account)
    if culprit is None:
        text = (f"Let U be {account.user}, whose intents ({describe_intents(account.intents)})"
                f" account for {_expected(account)} tokens. Then {account.user} {measure} "
                f"{account.observed_tokens} tokens: {extra} more than any delivered "
                "success webhook explains.")
        involved: Sequence[IntentModel] = account.intents
    elif kind == "duplicated_credit":
        text = (f"Let A be {culprit.describe()}, {culprit.describe_deliveries()}. Then "
                f"{account.user} {measure} {account.observed_tokens} tokens, not "
                f"{_expected(account)}: A was credited twice.")
        involved = [culprit]
    else:
        text = (f"Let A be {culprit.describe()}, which the provider says is "
                f"{culprit.intent.status}, {culprit.describe_deliveries()}. Then "
                f"{account.user} {measure} {account.observed_tokens} tokens, not "
                f"{_expected(account)}: A was credited without a delivered success.")
        involved = [culprit]
    sampler.add(_anomaly(kind, account, involved, text), badness=extra)


def _too_little(account: _Account, missing: int, sampler: Sampler) -> None:
    credited = [m for m in account.intents if m.credit == Credit.CREDITED]
    lost = [m for m in credited if _worth(m, account) == missing]
    measure = _measure_name(account)
    if lost:
        culprit = lost[0]
        text = (f"Let A be {culprit.describe()}, {culprit.describe_deliveries()}. Then "
                f"{account.user} {measure} {account.observed_tokens} tokens, not "
                f"{_expected(account)}: A was never credited.")
        involved: Sequence[IntentModel] = [culprit]
    else:
        text = (f"Let U be {account.user}, whose acknowledged intents "
                f"({describe_intents(credited)}) account for {_expected(account)} tokens. "
                f"Then {account.user} {measure} {account.observed_tokens} tokens: {missing} "
                "tokens of acknowledged credit are missing.")
        involved = credited
    sampler.add(_anomaly("lost_credit", account, involved, text), badness=missing)


def _anomaly(kind: str, account: _Account, involved: Sequence[IntentModel],
             text: str) -> Anomaly:
    return Anomaly(kind=kind, event_indexes=tuple(i for m in involved[:8]
                                                  for i in m.event_indexes),
                   expected=_expected(account), observed=account.observed_tokens,
                   explanation=text, user=account.user,
                   delivery_indexes=tuple(i for m in involved[:8]
                                          for i in m.success_delivery_indexes))
