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

Before all of these comes one finding about the whole scenario: when intents succeeded
and their success webhooks were delivered, and no owner the observer can measure shows
any credit at all, the service never credits (``never_credited``, worded from
``NEVER_CREDITED``): a webhook endpoint, secret or metadata mapping that does not work,
stated first so it is not buried under the per-account anomalies it causes. When every
delivery was refused with a 4xx, nothing obliged a credit (the service refused the
events), so the finding makes the verdict "unknown" with its text as the note instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

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
    credit_terms,
    describe_intents,
    explain_clawback_gap,
    pending_note,
)
from harness.checkers.ledger import account_model
from harness.model import AccountState, Anomaly, Verdict

__all__ = ["NEVER_CREDITED", "check_exactly_once_credit", "never_credited_finding"]

NEVER_CREDITED = "No purchase was ever credited"


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

    Anomaly kinds: ``never_credited`` (first: nothing delivered was credited at all),
    ``duplicated_credit``, ``lost_credit``, ``phantom_credit``.

    Count keys: ``intents``, ``intents_credited``, ``intents_possible``,
    ``intents_not_credited``, ``users_checked``, ``users_undecidable``,
    ``users_off_by_a_clawback`` (measured by net change, off by exactly one refund's or
    dispute's effect: the refunds checker's to judge).
    """
    sampler = Sampler()
    intents, ledger = account_model(inp)
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
        "users_off_by_a_clawback": 0,
    }
    if inp.observation is None:
        return conclude(sampler, counts, checked=False, unknown_note="no end state was observed")
    if not models:
        return conclude(sampler, counts, checked=False,
                        unknown_note="no payment intent was part of this scenario")
    clawback_notes: list[str] = []
    finding = _never_credited(inp, models, ledger.transfer_users)
    refused_only = False
    if finding is not None:
        anomaly, refused_only = finding
        if not refused_only:
            sampler.add(anomaly)
    gross_terms = credit_terms(intents, gross=True)
    net_terms = credit_terms(intents)
    transfer_users = ledger.transfer_users
    for user in sorted(intents.users()):
        account = _measure(inp, user, inp.observation.accounts.get(user), transfer_users,
                           gross_terms.get(user, CreditTerms()),
                           net_terms.get(user, CreditTerms()), intents.of_user(user))
        if account is None:
            counts["users_undecidable"] += 1
            continue
        clawback = _clawback_matter(account)
        if clawback is not None:
            counts["users_off_by_a_clawback"] += 1
            clawback_notes.append(f"{user}: {clawback}")
            continue
        counts["users_checked"] += 1
        _check_account(account, sampler)
    notes = []
    if counts["users_undecidable"]:
        notes.append(f"{counts['users_undecidable']} account(s) could not be judged: the "
                     "observer reports no credited tokens and they also tipped or paid calls")
    if finding is not None and refused_only:
        notes.insert(0, finding[0].explanation)
    if clawback_notes:
        notes.append("an account's net is off by exactly a refund's or a dispute's effect, "
                     "which is the refunds checker's to judge, not its credits: "
                     + "; ".join(clawback_notes[:3]))
    if intents.unattributed_count:
        notes.append(f"{intents.unattributed_count} credited intent(s) have no known owner")
    return conclude(sampler, counts, checked=counts["users_checked"] > 0,
                    unknown_note="; ".join(notes) or None, note=pending_note(inp.truth))


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
    if _explained_by(account, 0):
        return
    kind, culprit = _classify(account)
    term = account.term
    observed = account.observed_tokens
    measure = "was credited" if account.gross else "gained"
    expected = _expected(account)
    involved: Sequence[IntentModel] = [culprit] if culprit is not None else account.intents
    if culprit is None and observed > term.sure_tokens:
        text = (f"Let U be {account.user}, whose intents ({describe_intents(account.intents)})"
                f" account for {expected} tokens. Then {account.user} {measure} {observed} "
                "tokens, more than its delivered success webhooks explain.")
    elif culprit is None:
        text = (f"Let U be {account.user}, whose intents ({describe_intents(account.intents)})"
                f" account for {expected} tokens. Then {account.user} {measure} {observed} "
                "tokens: acknowledged credit is missing.")
    else:
        status = (f", which the provider says is {culprit.intent.status}"
                  if kind == "phantom_credit" else "")
        verdict = {"duplicated_credit": "A was credited twice",
                   "lost_credit": "A was never credited",
                   "phantom_credit": "A was credited without a delivered success"}[kind]
        text = (f"Let A be {culprit.describe()}{status}, {culprit.describe_deliveries()}. "
                f"Then {account.user} {measure} {observed} tokens, not {expected}: {verdict}.")
    badness = max(observed - term.max_tokens, term.sure_tokens - observed, 1)
    sampler.add(_anomaly(kind, account, involved, text), badness=badness)


def never_credited_finding(verdict: Verdict) -> str | None:
    """The scenario-wide "never credited" sentence of an ``exactly_once_credit`` verdict."""
    for anomaly in verdict.anomalies:
        if anomaly.kind == "never_credited":
            return anomaly.explanation
    if verdict.note is not None and verdict.note.startswith(NEVER_CREDITED):
        return verdict.note.split("; ", 1)[0]
    return None


def _never_credited(inp: CheckInput, models: Sequence[IntentModel],
                    transfer_users: frozenset[str]) -> tuple[Anomaly, bool] | None:
    """(the finding, whether every delivery was refused with a 4xx), or ``None``."""
    observation = inp.observation
    truth = inp.truth
    if observation is None or truth is None or truth.pending_deliveries_count > 0:
        return None
    delivered = [m for m in models if m.intent.succeeded and m.success_delivery_indexes
                 and m.minted_tokens > 0 and m.user is not None]
    measured = 0
    for model in delivered:
        assert model.user is not None
        account = observation.accounts.get(model.user)
        shown = _credit_shown(inp, model.user, account, transfer_users)
        if shown is None:
            continue
        if account is not None and account.credited_tokens is None and (
                model.net_min_tokens <= 0):
            continue  # clawed back in full: a net change of zero says nothing
        if shown > 0:
            return None  # something was credited
        measured += 1
    if measured == 0:
        return None
    indexes = {i for m in delivered for i in m.success_delivery_indexes}
    statuses = Counter(d.status_code for d in truth.deliveries if d.index in indexes)
    if None in statuses:
        return None  # a delivery got no answer: the service may have been down, not wrong
    answered = ", ".join(
        f"{'no answer' if code is None else code} ({plural(count, 'time')})"
        for code, count in sorted(statuses.items(), key=lambda item: -item[1]))
    text = (f"{NEVER_CREDITED}: {plural(len(delivered), 'succeeded intent')}, their success "
            f"webhooks were delivered {plural(len(indexes), 'time')} and answered {answered}"
            " — the service never credits (check its webhook endpoint, secret and the "
            "profile's [metadata] keys).")
    refused_only = all(code is not None and 400 <= code < 500 for code in statuses)
    anomaly = Anomaly(kind="never_credited",
                      event_indexes=tuple(i for m in delivered[:8] for i in m.event_indexes),
                      expected=f">= {min(m.minted_tokens for m in delivered)}", observed=0,
                      explanation=text,
                      delivery_indexes=tuple(sorted(indexes))[:16])
    return anomaly, refused_only


def _credit_shown(inp: CheckInput, user: str, account: AccountState | None,
                  transfer_users: frozenset[str]) -> int | None:
    """Tokens ``user`` was credited during the run, where that can be read; else ``None``."""
    if account is None:
        return None
    if account.credited_tokens is not None:
        before = 0
        if inp.initial is not None and user in inp.initial.accounts:
            before = inp.initial.accounts[user].credited_tokens or 0
        return account.credited_tokens - before
    if user in transfer_users:
        return None
    return account.balance_tokens - account.debt_tokens - initial_net_tokens(inp.initial, user)


def _clawback_matter(account: _Account) -> str | None:
    """Why a net-measured account's gap is a clawback's, not a credit's, if it is.

    Measured by its net change, an account whose lost dispute was given back looks credited
    twice. When no success was acknowledged twice (a double credit needs a second
    delivery) and one refund or dispute of its intents is exactly the gap, the gap is that
    event's: the refunds, conservation and reconciliation checkers name it.
    """
    if account.gross or _explained_by(account, 0):
        return None
    if any(m.success_acknowledged_count >= 2 for m in account.intents):
        return None
    term = account.term
    observed = account.observed_tokens
    gap = observed - term.max_tokens if observed > term.max_tokens else observed - term.sure_tokens
    for model in account.intents:
        text = explain_clawback_gap(model, gap)
        if text is not None:
            return text
    return None


def _explained_by(account: _Account, shift_tokens: int) -> bool:
    """Whether the observed credit, less ``shift_tokens``, is one the model allows."""
    term = account.term
    residual = account.observed_tokens - term.sure_tokens - shift_tokens
    options = [d for d, _ in term.options]
    return reaches(options, residual - term.slack_tokens, residual) is not False


def _classify(account: _Account) -> tuple[str, IntentModel | None]:
    """The intent whose one extra or missing credit explains what was observed, if any."""
    credited = sorted((m for m in account.intents if m.credit == Credit.CREDITED),
                      key=lambda m: -m.success_acknowledged_count)
    never = [m for m in account.intents if m.credit == Credit.NONE]
    for model in credited:
        if model.success_acknowledged_count >= 2 and _explained_by(account, _worth(model,
                                                                                   account)):
            return "duplicated_credit", model
    for model in never:
        if _explained_by(account, model.minted_tokens):
            return "phantom_credit", model
    for model in credited:
        if _explained_by(account, _worth(model, account)):
            return "duplicated_credit", model
    for model in credited:
        if _explained_by(account, -_worth(model, account)):
            return "lost_credit", model
    if account.observed_tokens > account.term.sure_tokens:
        return ("duplicated_credit" if credited else "phantom_credit"), None
    return "lost_credit", None


def _worth(model: IntentModel, account: _Account) -> int:
    return model.minted_tokens if account.gross else model.net_min_tokens


def _expected(account: _Account) -> str:
    term = account.term
    high = term.max_tokens
    return str(term.sure_tokens) if high == term.sure_tokens else f"{term.sure_tokens}..{high}"


def _anomaly(kind: str, account: _Account, involved: Sequence[IntentModel],
             text: str) -> Anomaly:
    return Anomaly(kind=kind, event_indexes=tuple(i for m in involved[:8]
                                                  for i in m.event_indexes),
                   expected=_expected(account), observed=account.observed_tokens,
                   explanation=text, user=account.user,
                   delivery_indexes=tuple(i for m in involved[:8]
                                          for i in m.success_delivery_indexes))
