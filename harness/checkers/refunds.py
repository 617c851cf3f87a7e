"""refunds: clawbacks are cumulative, never exceed what was minted, and short ones are debt.

A refund of ``R`` cents (cumulative) on a payment of ``a`` cents that minted ``t`` tokens
takes back ``floor(t * R / a)`` tokens in total; a dispute takes back the rest, and a won
one gives it back. Per account, the tokens taken back (the observer's
``clawed_back_tokens``, or, for an account with no transfers, credited minus net change)
must lie within what the provider's truth allows (``intents.py``). A clawback larger than
the balance leaves the rest as debt: an account whose model net is below zero must show
debt (the ``debt`` checker judges the debt and the status themselves).

Whether ``clawed_back_tokens`` counts a won dispute's reinstatement as given back or not
differs between services, so both readings are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checkers.base import CheckInput, Sampler, conclude, initial_net_tokens
from harness.checkers.debt import DEBT_STATUS
from harness.checkers.intents import (
    Credit,
    CreditTerms,
    IntentModel,
    Intents,
    credit_terms,
    describe_intents,
    explain_gap,
)
from harness.checkers.ledger import Ledger, account_model
from harness.model import AccountState, Anomaly, Verdict

__all__ = ["check_refunds"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Range:
    """What a correct service may have taken back from one account."""

    low_tokens: int
    high_tokens: int
    minted_tokens: int  # all its credited and possibly credited intents minted
    models: tuple[IntentModel, ...]


def check_refunds(inp: CheckInput) -> Verdict:
    """Check clawbacks against the provider's refunds and disputes, and debts against them.

    Anomaly kinds: ``clawback_exceeds_minted``, ``wrong_clawback``, ``missing_debt``
    (a clawback past the balance left no debt).

    Count keys: ``intents_refunded``, ``intents_disputed``, ``accounts_checked``,
    ``accounts_undecidable``, ``accounts_in_debt``.
    """
    sampler = Sampler()
    intents, ledger = account_model(inp)
    if intents is None:
        return conclude(sampler, {}, checked=False, unknown_note="no provider truth")
    refunded = [m for m in intents.models.values() if _clawback_involved(m)]
    counts = {
        "intents_refunded": sum(1 for m in refunded if m.intent.refunded_cents > 0),
        "intents_disputed": sum(1 for m in refunded if m.intent.dispute_status is not None),
        "accounts_checked": 0,
        "accounts_undecidable": 0,
        "accounts_in_debt": 0,
    }
    observation = inp.observation
    if observation is None:
        return conclude(sampler, counts, checked=False, unknown_note="no end state was observed")
    users = sorted({m.user for m in refunded if m.user is not None})
    for user in users:
        account = observation.accounts.get(user)
        taken = None if account is None else _observed_clawback(inp, intents, ledger, user,
                                                                account)
        if account is None or taken is None:
            counts["accounts_undecidable"] += 1
            continue
        counts["accounts_checked"] += 1
        _check_clawback(user, taken, _allowed(intents.of_user(user)), sampler)
    terms = credit_terms(intents)
    debts = 0
    for user, account in observation.accounts.items():
        if account.debt_tokens > 0 or account.status == DEBT_STATUS:
            debts += 1
        _check_debt(inp, user, account, ledger, terms.get(user, CreditTerms()), sampler)
    counts["accounts_in_debt"] = debts
    checked = counts["accounts_checked"] > 0 or debts > 0
    notes = []
    if counts["accounts_undecidable"]:
        notes.append(f"{counts['accounts_undecidable']} account(s) with refunds could not be "
                     "judged: no clawed-back figure, and they also tipped or paid calls")
    if not refunded and not debts:
        notes.append("no refund or dispute reached the service in this scenario")
    return conclude(sampler, counts, checked=checked, unknown_note="; ".join(notes) or None)


def _clawback_involved(model: IntentModel) -> bool:
    return (model.clawback_event_count > 0 or model.intent.refunded_cents > 0
            or model.intent.dispute_status is not None)


def _observed_clawback(inp: CheckInput, intents: Intents, ledger: Ledger, user: str,
                       account: AccountState) -> int | None:
    """Tokens taken back from ``user`` during the run, where that can be read or deduced."""
    before = inp.initial.accounts.get(user) if inp.initial is not None else None
    if account.clawed_back_tokens is not None:
        earlier = before.clawed_back_tokens if before is not None else None
        return account.clawed_back_tokens - (earlier or 0)
    if user in ledger.transfer_users:
        return None
    change = account.balance_tokens - account.debt_tokens - initial_net_tokens(inp.initial, user)
    if account.credited_tokens is not None:
        earlier = before.credited_tokens if before is not None else None
        return account.credited_tokens - (earlier or 0) - change
    gross = credit_terms(intents, gross=True).get(user, CreditTerms())
    if gross.options or gross.slack_tokens:
        return None  # the credits themselves are uncertain
    return gross.sure_tokens - change


def _allowed(models: list[IntentModel]) -> _Range:
    low = high = minted = 0
    for model in models:
        if model.credit == Credit.NONE:
            continue  # a refund before a success that never came takes nothing yet
        minted += model.minted_tokens
        high += model.clawback_max_tokens
        if model.credit == Credit.CREDITED:
            low += model.clawback_min_tokens
        if model.intent.dispute_status == "won":
            high += model.minted_tokens - model.intent.refund_clawback_tokens
    return _Range(low_tokens=low, high_tokens=min(high, minted), minted_tokens=minted,
                  models=tuple(m for m in models if _clawback_involved(m)))


def _check_clawback(user: str, taken: int, allowed: _Range, sampler: Sampler) -> None:
    if allowed.low_tokens <= taken <= allowed.high_tokens:
        return
    expected = (str(allowed.low_tokens) if allowed.low_tokens == allowed.high_tokens
                else f"{allowed.low_tokens}..{allowed.high_tokens}")
    subject = (f"Let A be {describe_intents(allowed.models)}" if allowed.models
               else f"Let U be {user}")
    if taken > allowed.minted_tokens:
        text = (f"{subject}. Then {taken} tokens were taken back from {user}, more than the "
                f"{allowed.minted_tokens} its purchases minted.")
        kind = "clawback_exceeds_minted"
    else:
        text = (f"{subject}. The provider's refunds and disputes allow taking back {expected} "
                f"tokens from {user}, but {taken} were taken back{_hint(taken, allowed)}.")
        kind = "wrong_clawback"
    sampler.add(Anomaly(kind=kind, event_indexes=tuple(i for m in allowed.models[:8]
                                                       for i in m.event_indexes),
                        expected=expected, observed=taken, explanation=text, user=user,
                        delivery_indexes=tuple(i for m in allowed.models[:8]
                                               for i in m.clawback_delivery_indexes)),
                badness=abs(taken - allowed.high_tokens))


def _hint(taken: int, allowed: _Range) -> str:
    """Name the event whose effect is the difference: the refund, the dispute, the bonus."""
    gap = allowed.low_tokens - taken if taken < allowed.low_tokens else (
        allowed.high_tokens - taken)  # tokens the account holds beyond what it should
    for model in allowed.models:
        text = explain_gap(model, gap)
        if text is not None:
            return ": " + text[0].lower() + text[1:].removesuffix(".")
    whole = sum(m.minted_tokens for m in allowed.models if m.intent.refunded_cents > 0)
    twice = bool(allowed.high_tokens) and taken == 2 * allowed.high_tokens
    redelivered = any(m.clawback_acknowledged_count > m.clawback_event_count
                      for m in allowed.models)
    if twice and (redelivered or taken != whole):
        return ": a refund was applied twice"
    if whole and taken == whole and allowed.high_tokens < whole:
        return ": a partial refund took back the whole purchase"
    if taken == 0:
        return f": {_events(allowed.models)} took nothing back"
    return ""


def _events(models: tuple[IntentModel, ...]) -> str:
    """``the refund and the dispute closed lost``: the clawback events the account had."""
    kinds: list[str] = []
    for model in models:
        if model.intent.refunded_cents > 0 and "the refund" not in kinds:
            kinds.append("the refund")
        status = model.intent.dispute_status
        if status is not None:
            name = {"won": "the dispute closed won", "lost": "the dispute closed lost"}.get(
                status, "the dispute opened")
            if name not in kinds:
                kinds.append(name)
    return " and ".join(kinds) or "the clawback"


def _check_debt(inp: CheckInput, user: str, account: AccountState, ledger: Ledger,
                term: CreditTerms, sampler: Sampler) -> None:
    in_debt = account.debt_tokens > 0
    if in_debt or term.options or term.slack_tokens:
        return
    if any(unknown.delta_for(user) for unknown in ledger.unknowns):
        return
    model_net = (initial_net_tokens(inp.initial, user) + ledger.sure_tokens.get(user, 0)
                 + term.sure_tokens)
    if model_net < 0:
        text = (f"{user}'s clawbacks exceeded what it held: its model net is {model_net} tokens"
                f" ({describe_intents(term.credited)}), yet it ended with balance "
                f"{account.balance_tokens} and no debt: the shortfall was not recorded.")
        sampler.add(Anomaly(kind="missing_debt", event_indexes=tuple(
            i for m in term.credited[:8] for i in m.event_indexes), user=user,
            expected=-model_net, observed=0, explanation=text), badness=-model_net)
