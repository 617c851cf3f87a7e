"""conservation: tokens are neither created nor destroyed, only minted and clawed back.

Tips and call charges move tokens between accounts, so over every account they cancel:
the change of ``Σ(balance − debt)`` during the run must equal what the scenario's
credited intents minted minus what their refunds and disputes took back, as the
provider's truth says (``intents.py``). Intents whose success webhook got no answer may or
may not have been credited: the check accepts any subset of them.

Where the observer reads the service's own totals (``Totals``), a second, independent
check runs on them: ``balances − debts == minted − clawed back`` inside the service, and,
when totals were also read before the run, the minted and clawed-back changes against the
provider's truth.
"""

from __future__ import annotations

from harness.checkers.base import (
    CheckInput,
    Sampler,
    conclude,
    initial_net_tokens,
    plural,
    reaches,
)
from harness.checkers.intents import (
    Credit,
    CreditTerms,
    IntentModel,
    Intents,
    credit_terms,
    describe_intents,
    explain_gap,
    pending_note,
)
from harness.checkers.ledger import account_model
from harness.model import Anomaly, Totals, Verdict

__all__ = ["check_conservation"]


def check_conservation(inp: CheckInput) -> Verdict:
    """Check that the accounts' net change equals minted minus clawed back.

    Anomaly kinds: ``tokens_created`` / ``tokens_destroyed`` (the observed accounts hold
    more / fewer tokens than the provider's truth allows), ``totals_inconsistent`` (the
    service's own totals do not add up), ``totals_disagree`` (the service's minted or
    clawed-back totals changed by other than what the provider's truth says).

    Count keys: ``accounts``, ``intents_credited``, ``intents_possible``,
    ``minted_tokens``, ``clawed_back_tokens``, ``net_change_tokens``.
    """
    sampler = Sampler()
    counts: dict[str, int] = {}
    intents, ledger = account_model(inp)
    notes: list[str] = []
    checked = False
    if inp.observation is None:
        return conclude(sampler, counts, checked=False,
                        unknown_note="no end state was observed")
    terms = credit_terms(intents) if intents is not None else {}
    if intents is not None:
        counts.update(_intent_counts(intents))
    if intents is None:
        notes.append("no provider truth: accounts were not compared with what was minted")
    else:
        involved = ledger.users | intents.users()
        missing = sorted(involved - set(inp.observation.accounts))
        if missing:
            notes.append(f"{plural(len(missing), 'account')} were not observed "
                         f"({', '.join(missing[:5])}): the sum over accounts is incomplete")
        elif None in terms:
            notes.append("some credited intent has no known owner")
        else:
            _check_accounts(inp, intents, terms, counts, sampler)
            checked = True
    pending = pending_note(inp.truth)
    if pending:
        notes.append(pending)
    totals = inp.observation.totals
    if totals is not None:
        before = inp.initial.totals if inp.initial is not None else None
        _check_totals(totals, before, intents, sampler)
        checked = True
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "; ".join(notes) or "nothing to compare",
                    note="; ".join(notes) if checked and notes else None)


def _intent_counts(intents: Intents) -> dict[str, int]:
    credited = [m for m in intents.models.values() if m.credit == Credit.CREDITED]
    return {
        "intents_credited": len(credited),
        "intents_possible": sum(1 for m in intents.models.values() if m.credit == Credit.POSSIBLE),
        "minted_tokens": sum(m.minted_tokens for m in credited),
        "clawed_back_tokens": sum(m.clawback_max_tokens for m in credited),
    }


def _check_accounts(inp: CheckInput, intents: Intents, terms: dict[str | None, CreditTerms],
                    counts: dict[str, int], sampler: Sampler) -> None:
    assert inp.observation is not None
    accounts = inp.observation.accounts
    change = sum(a.balance_tokens - a.debt_tokens - initial_net_tokens(inp.initial, user)
                 for user, a in accounts.items())
    counts["accounts"] = len(accounts)
    counts["net_change_tokens"] = change
    sure = sum(t.sure_tokens for t in terms.values())
    slack = sum(t.slack_tokens for t in terms.values())
    options = [d for t in terms.values() for d, _ in t.options]
    residual = change - sure
    if reaches(options, residual - slack, residual) is not False:
        return
    credited = [m for t in terms.values() for m in t.credited]
    possible = [m for t in terms.values() for m in t.possible]
    high = sure + slack + sum(max(d, 0) for d in options)
    created = change > high
    gap = change - high if created else change - sure
    expected = f"{sure}" if sure == high else f"{sure}..{high}"
    text = (f"Let M be the {plural(len(credited), 'credited purchase')}"
            f"{' (' + describe_intents(credited) + ')' if credited else ''}"
            f"{' and ' + plural(len(possible), 'possibly credited one') if possible else ''}: "
            f"the provider's truth leaves the accounts {expected} tokens above their start, "
            f"but they are {change} above: {abs(gap)} tokens were "
            f"{'created from nowhere' if created else 'destroyed'}.")
    hint = _hint(intents, gap)
    if hint:
        text += " " + hint
    sampler.add(Anomaly(kind="tokens_created" if created else "tokens_destroyed",
                        event_indexes=tuple(i for m in credited[:8] for i in m.event_indexes),
                        expected=expected, observed=change, explanation=text,
                        delivery_indexes=tuple(i for m in credited[:8]
                                               for i in m.success_delivery_indexes)),
                badness=abs(gap))


def _hint(intents: Intents, gap: int) -> str | None:
    """Name an intent whose credit or clawback is exactly the gap, with its deliveries."""
    models: list[IntentModel] = list(intents.models.values())
    for model in models:
        if model.credit == Credit.NONE and model.minted_tokens == gap:
            return (f"That is exactly {model.describe()}, {model.describe_deliveries()} "
                    f"(provider status {model.intent.status}): credited anyway?")
    for model in models:
        text = explain_gap(model, gap)
        if text is not None:
            return text
    return None


def _check_totals(totals: Totals, before: Totals | None, intents: Intents | None,
                  sampler: Sampler) -> None:
    base = before or Totals(minted_tokens=0, clawed_back_tokens=0, balances_tokens=0,
                            debts_tokens=0, drift_accounts_count=0)
    net = (totals.balances_tokens - totals.debts_tokens) - (base.balances_tokens
                                                            - base.debts_tokens)
    minted = totals.minted_tokens - base.minted_tokens
    clawed = totals.clawed_back_tokens - base.clawed_back_tokens
    span = "since the run began" if before is not None else "in total"
    if net != minted - clawed:
        text = (f"The service's own totals do not add up {span}: balances − debts moved by "
                f"{net} tokens, but it minted {minted} and clawed back {clawed} "
                f"({minted - clawed} net): {net - (minted - clawed)} tokens unaccounted for.")
        sampler.add(Anomaly(kind="totals_inconsistent", event_indexes=(),
                            expected=minted - clawed, observed=net, explanation=text),
                    badness=abs(net - minted + clawed))
    if before is None or intents is None:
        return  # totals of a deployment that served other runs cannot be set against our truth
    gross = credit_terms(intents, gross=True)
    sure = sum(t.sure_tokens for t in gross.values())
    options = [d for t in gross.values() for d, _ in t.options]
    if reaches(options, minted - sure, minted - sure) is False:
        high = sure + sum(options)
        text = (f"The service's minted total grew by {minted} tokens during the run, but the "
                f"provider's truth says {sure}{'..' + str(high) if high != sure else ''} were "
                "minted by acknowledged success webhooks.")
        sampler.add(Anomaly(kind="totals_disagree", event_indexes=(),
                            expected=sure, observed=minted, explanation=text),
                    badness=abs(minted - sure))
